"""The registry of policies by name, used by ``simulate``, ``compare``, ``experiment`` (and
the live ``run``).

==================  ======================================================================
name                caching + allocation
==================  ======================================================================
rcars               random models until C is full + the even split (Sec. 7.2)
schrs               the most popular models at gamma_1 + a genetic algorithm per slot
                    (Sec. 7.2)
optimal             the best cache per popularity state + the exact per-slot optimum
t2drl               a trained caching agent (factored or DDQN) + D3PG: a run folder of
                    ``testbed train`` (exploration off)
ddpg-t2drl          the same with the DDPG actor: ``testbed train --agent ddpg-t2drl``
CACHING+ALLOCATION  the caching of one name above + the allocation of another, e.g.
                    ``t2drl+optimal``: splits a gap between the frame and the slot timescale
==================  ======================================================================

The learned policies need the run folder (``checkpoint``); their agent must match the name.
The checkpoint ``@pretrained`` names the policy shipped with the package (``agents/pretrained``,
trained on the default scenario with the `best` preset).
A composite builds each part by its own name and keeps that part's role; a learned part
takes the checkpoint given for its own name (``checkpoint`` may map names to run folders,
as ``compare --checkpoint NAME=DIR`` does, or be one run folder for every learned part).
Each part keeps its own ``.name`` (so a run's ``caching_policy`` and ``allocation_policy``
say which policy made each decision); the composite's name is the ``policy`` of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.errors import TestbedError, UsageError
from testbed.core.protocols import AllocationPolicy, CachingPolicy
from testbed.runs.folder import RunFolder

PolicyPair = tuple[CachingPolicy, AllocationPolicy]
Checkpoints = str | Path | Mapping[str, str | Path] | None


def _rcars(config: ScenarioConfig, catalogue: ModelCatalogue) -> PolicyPair:
    from agents.rcars import EvenAllocation, RandomCaching

    return RandomCaching(config, catalogue), EvenAllocation(config, catalogue)


def _schrs(config: ScenarioConfig, catalogue: ModelCatalogue) -> PolicyPair:
    from agents.schrs import GeneticAllocation, StaticPopularCaching

    return StaticPopularCaching(config, catalogue), GeneticAllocation(config, catalogue)


def _optimal(config: ScenarioConfig, catalogue: ModelCatalogue) -> PolicyPair:
    from agents.optimal import OptimalAllocation, OptimalCaching
    from ue_emulator.world import sample_slots

    return OptimalCaching(config, catalogue, sample_slots), OptimalAllocation(config, catalogue)


BASELINES: dict[str, Callable[[ScenarioConfig, ModelCatalogue], PolicyPair]] = {
    "rcars": _rcars,
    "schrs": _schrs,
    "optimal": _optimal,
}
LEARNED = ("t2drl", "ddpg-t2drl")
POLICIES = (*BASELINES, *LEARNED)
COMPOSITE = "+"
"""Joins the caching part and the allocation part of a composite name: ``t2drl+optimal``."""
ROLES = ("caching", "allocation")


PRETRAINED_REF = "@pretrained"
"""A checkpoint given as this names the policy shipped in ``agents/pretrained/<name>``
(trained on the default scenario with the `best` preset)."""


class PolicyError(TestbedError):
    """A policy name, or its checkpoint, cannot be used."""


def policy_parts(name: str) -> tuple[str, ...]:
    """The registry names ``name`` is made of: ``(name,)``, or ``(caching, allocation)`` of a
    composite ``CACHING+ALLOCATION``; a bad name or part is a one-line :class:`PolicyError`."""
    if COMPOSITE not in name:
        if name not in POLICIES:
            raise PolicyError(
                f"unknown policy {name!r}; choose one of {list(POLICIES)} "
                f"or CACHING{COMPOSITE}ALLOCATION of two of them"
            )
        return (name,)
    parts = name.split(COMPOSITE)
    if len(parts) != len(ROLES):
        raise PolicyError(
            f"policy {name!r}: a composite is CACHING{COMPOSITE}ALLOCATION with exactly one "
            f"{COMPOSITE!r}, each part one of {list(POLICIES)}"
        )
    for role, part in zip(ROLES, parts, strict=True):
        if part not in POLICIES:
            what = f"empty {role} part" if not part else f"unknown {role} part {part!r}"
            raise PolicyError(f"policy {name!r}: {what}; choose each part from {list(POLICIES)}")
    return tuple(parts)


def unique_policies(names: list[str], flag: str = "--policies") -> list[str]:
    """``names`` once checked: each a policy (or composite) of the registry, none twice."""
    if len(set(names)) != len(names):
        twice = sorted({p for p in names if names.count(p) > 1})
        raise UsageError(f"{flag} names {twice} more than once: list each policy once")
    for name in names:
        policy_parts(name)
    return list(names)


def learned_parts(name: str) -> list[str]:
    """The learned policies ``name`` uses (itself, or its parts), each once, in order."""
    return list(dict.fromkeys(p for p in policy_parts(name) if p in LEARNED))


def make_policies(
    name: str,
    config: ScenarioConfig,
    catalogue: ModelCatalogue,
    checkpoint: Checkpoints = None,
) -> PolicyPair:
    """The (caching, allocation) policies of ``name``: a registry name, or a composite
    ``CACHING+ALLOCATION`` whose parts are each built by their own name. A learned policy
    (or part) loads its run folder: ``checkpoint`` itself, or ``checkpoint[part]`` when it
    is a mapping from policy names to run folders."""
    parts = policy_parts(name)
    built: dict[str, PolicyPair] = {}
    for part in dict.fromkeys(parts):  # a part named twice (rcars+rcars) is built once
        run_dir = checkpoint.get(part) if isinstance(checkpoint, Mapping) else checkpoint
        try:
            built[part] = _make_one(part, config, catalogue, run_dir)
        except TestbedError as exc:
            if len(parts) == 1:
                raise
            roles = " and ".join(r for r, p in zip(ROLES, parts, strict=True) if p == part)
            raise type(exc)(f"policy {name!r}, its {roles} part {part}: {exc}") from exc
    return built[parts[0]][0], built[parts[-1]][1]


def _make_one(
    name: str, config: ScenarioConfig, catalogue: ModelCatalogue, checkpoint: str | Path | None
) -> PolicyPair:
    """The (caching, allocation) policies of one registry name."""
    if name in BASELINES:
        try:
            return BASELINES[name](config, catalogue)
        except ValueError as exc:  # a scenario the policy cannot play, e.g. M = 50 for optimal
            raise PolicyError(f"policy {name}: {exc}") from exc
    if checkpoint is None:
        raise PolicyError(f"policy {name} needs a checkpoint: the run folder of `testbed train`")
    if str(checkpoint) == PRETRAINED_REF:
        from agents.t2drl import SHIPPED_POLICIES_DIR

        checkpoint = SHIPPED_POLICIES_DIR / name
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise PolicyError(f"checkpoint {run_dir}: no such run folder of `testbed train`")
    from agents.t2drl import LearnedAllocation, LearnedCaching

    folder = RunFolder(run_dir)
    try:
        trained = folder.read_train().agent
    except UsageError as exc:
        raise PolicyError(str(exc)) from exc
    if trained != name:
        raise PolicyError(f"{run_dir} holds a trained {trained!r} run, not {name!r}")
    agents, train = folder.load_acting(config)  # verified: kind, shape, checksums, finite
    allocation = LearnedAllocation(
        agents.allocator, config, catalogue, train.agent, train.steps_amender
    )
    return LearnedCaching(agents.caching, train.agent), allocation

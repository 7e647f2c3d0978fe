"""The registry of policies by name, used by ``simulate``, ``compare``, ``experiment`` (and
the live ``run``).

=============  ===========================================================================
name           caching + allocation
=============  ===========================================================================
rcars          random models until C is full + the even split (Sec. 7.2)
schrs          the most popular models at gamma_1 + a genetic algorithm per slot (Sec. 7.2)
optimal        the best cache per popularity state + the exact per-slot optimum
t2drl          a trained DDQN + D3PG run folder of ``testbed train`` (exploration off)
ddpg-t2drl     a trained DDQN + DDPG run folder of ``testbed train --agent ddpg-t2drl``
=============  ===========================================================================

The learned policies need the run folder (``checkpoint``); their agent must match the name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.errors import TestbedError
from testbed.core.protocols import AllocationPolicy, CachingPolicy

PolicyPair = tuple[CachingPolicy, AllocationPolicy]


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


class PolicyError(TestbedError):
    """A policy name, or its checkpoint, cannot be used."""


def make_policies(
    name: str,
    config: ScenarioConfig,
    catalogue: ModelCatalogue,
    checkpoint: str | Path | None = None,
) -> PolicyPair:
    """The (caching, allocation) policies of ``name``; learned ones from ``checkpoint``."""
    if name in BASELINES:
        return BASELINES[name](config, catalogue)
    if name not in LEARNED:
        raise PolicyError(f"unknown policy {name!r}; choose one of {list(POLICIES)}")
    if checkpoint is None:
        raise PolicyError(f"policy {name} needs a checkpoint: the run folder of `testbed train`")
    run_dir = Path(checkpoint)
    if not run_dir.is_dir():
        raise PolicyError(f"checkpoint {run_dir}: no such run folder of `testbed train`")
    import json

    from agents.t2drl import load_policies

    try:
        trained = json.loads((run_dir / "train.json").read_text()).get("agent")
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{run_dir}/train.json is missing or unreadable: {exc}") from exc
    if trained != name:
        raise PolicyError(f"{run_dir} holds a trained {trained!r} run, not {name!r}")
    return load_policies(run_dir, config, catalogue)

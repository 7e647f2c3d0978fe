"""The training budgets of the experiments, and the one place their training configs are built.

A :class:`Budget` says how long a learned run trains, on how many seeds and how long it is
evaluated; :func:`train_config` turns it into the ``TrainConfig`` of one learned run, so
every figure, sweep and timing trains with the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.t2drl import TrainConfig

SWEEP_POLICIES = ("t2drl", "ddpg-t2drl", "schrs", "rcars", "optimal")
"""The policies of the sweeps (Figs. 7 and 8), Sec. 7.2's plus the exact optimiser."""

CHECKPOINT_EVERY = 10_000
"""Episodes between the checkpoints of an experiment's runs: only the final one is kept."""


@dataclass(frozen=True)
class Budget:
    """What an experiment spends on each point: training episodes, seeds, evaluation."""

    episodes: int
    """H, training episodes per learned run."""
    seeds: int
    """Seeds per point (>= 3 for the intervals)."""
    eval_episodes: int
    """Evaluation episodes per run."""
    quick: bool = False
    """The `--quick` preset (also shrinks the L grid of fig6a and the timing of table3)."""
    eval_every: int = 5
    """Episodes between the deterministic evaluations during training."""
    allocator: tuple[tuple[str, float], ...] = ()
    """Overrides of the allocator's config (e.g. a shorter warm-up for short budgets)."""
    caching: tuple[tuple[str, float], ...] = ()
    """Overrides of the caching agent's config."""
    policies: tuple[str, ...] = SWEEP_POLICIES
    """The policies the sweeps (Figs. 7 and 8) compare."""
    preset: str = "default"
    """The training preset of the learned runs (``agents.t2drl.PRESETS``): `default`, the
    paper's agents as documented in docs/results.md, unless ``--preset`` says otherwise."""


BUDGETS = {
    # 400 training slots: warm-ups short enough that both agents do learn
    "quick": Budget(
        eval_every=1,
        episodes=4,
        seeds=3,
        eval_episodes=1,
        quick=True,
        allocator=(("warmup", 200),),
        caching=(("warmup", 16), ("batch_size", 16)),
    ),
    "full": Budget(episodes=500, seeds=3, eval_episodes=5),
}


def make_budget(
    quick: bool,
    seeds: int | None = None,
    episodes: int | None = None,
    preset: str | None = None,
    policies: Sequence[str] | None = None,
) -> Budget:
    """The quick or full budget with the caller's overrides (None keeps the budget's)."""
    budget = BUDGETS["quick" if quick else "full"]
    if seeds is not None or episodes is not None:
        budget = replace(budget, episodes=episodes or budget.episodes, seeds=seeds or budget.seeds)
    if preset is not None:
        budget = replace(budget, preset=preset)
    if policies is not None:
        unknown = sorted(set(policies) - set(SWEEP_POLICIES))
        if unknown:
            raise ValueError(f"policies {unknown}: allowed {list(SWEEP_POLICIES)}")
        budget = replace(budget, policies=tuple(policies))
    return budget


def train_config(
    budget: Budget,
    agent: str,
    seed: int,
    eval_every: int | None = None,
    allocator: dict[str, Any] | None = None,
) -> TrainConfig:
    """The checked ``TrainConfig`` of one learned run of ``budget``: ``agent`` trained on
    ``seed`` for ``budget.episodes`` episodes with the budget's preset and overrides, and
    ``allocator``'s on top; evaluated every ``eval_every`` episodes (default the budget's)."""
    from agents.t2drl import TrainConfig

    return TrainConfig.from_options(
        {
            "agent": agent,
            "preset": budget.preset,
            "episodes": budget.episodes,
            "seed": seed,
            "allocator": {**dict(budget.allocator), **(allocator or {})},
            "caching": dict(budget.caching),
            "checkpoint_every": CHECKPOINT_EVERY,
            "eval_every": budget.eval_every if eval_every is None else eval_every,
        }
    )

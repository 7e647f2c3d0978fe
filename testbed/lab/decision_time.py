"""Table 3: the decision time per slot of each allocation policy against the number of users.

Always sequential, in this process: it measures time, and runs sharing the CPU would
measure each other. The learned policies' time does not depend on training, so their
actors are timed untrained. Writes ``table3.csv`` (one row per U, policy and seed),
``table3_summary.csv``, ``table3.md`` (the means as a Markdown table) and ``table3.png``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.core.metrics import summarise
from testbed.core.records import SlotState
from testbed.core.seeding import Role, policy_seed
from testbed.core.system_model import popular_cache
from testbed.lab.budgets import Budget, train_config
from testbed.lab.plots import Axes, plot_lines
from testbed.lab.workers import IN_THIS_PROCESS, Workers
from testbed.sim.policies import LEARNED, make_policies

if TYPE_CHECKING:
    from ue_emulator.world import World

USERS = (10, 12, 14, 16, 18)
"""The numbers of users U of Table 3."""


def _samples(
    world: World, config: ScenarioConfig, catalogue: ModelCatalogue, seed: int, slots: int
) -> tuple[list[SlotState], np.ndarray]:
    """The first ``slots`` slots of seed ``seed``'s first frame (at most a frame's), and the
    cache of that frame's most popular models."""
    world.reset(seed)
    frame = world.begin_frame()
    cache = popular_cache(config, catalogue, frame.gamma)
    return [world.next_slot() for _ in range(min(slots, config.timing.slots_per_frame))], cache


def _allocators(
    config: ScenarioConfig, catalogue: ModelCatalogue, budget: Budget, seed: int
) -> dict[str, Any]:
    """The timed allocation policies: both learned actors (untrained), SCHRS and the
    exact optimiser."""
    from agents.t2drl import LearnedAllocation, T2DRLAgents

    policies = {
        name: LearnedAllocation(
            T2DRLAgents(config, train_config(budget, name, seed)).allocator, config, catalogue, name
        )
        for name in LEARNED
    }
    policies.update({n: make_policies(n, config, catalogue)[1] for n in ("schrs", "optimal")})
    return policies


def _ms_per_slot(
    policy: Any, samples: list[SlotState], cache: np.ndarray, slots: int, seed: int
) -> float:
    """The mean wall time of one ``allocate`` over ``slots`` calls (the samples repeated)."""
    policy.reset(policy_seed(seed, 0, Role.ALLOCATION))
    repeats = max(1, slots // len(samples))
    start = time.perf_counter()
    for _ in range(repeats):
        for slot in samples:
            policy.allocate(slot, cache)
    return (time.perf_counter() - start) / (repeats * len(samples)) * 1e3


def _write_table3(rows: pd.DataFrame, out: Path) -> None:
    rows.to_csv(out / "table3.csv", index=False)
    summary = summarise(rows, ["users", "policy"], ["decision_ms_per_slot"])
    summary.to_csv(out / "table3_summary.csv", index=False)
    wide = summary.pivot(index="policy", columns="users", values="decision_ms_per_slot")
    lines = [
        "| policy | " + " | ".join(f"U={u}" for u in wide.columns) + " |",
        "|---" * (len(wide.columns) + 1) + "|",
    ]
    lines += [
        f"| {p} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for p, row in wide.iterrows()
    ]
    (out / "table3.md").write_text("\n".join(lines) + "\n")
    summary["label"] = summary["policy"]
    axes = Axes(
        "users",
        "decision_ms_per_slot",
        "label",
        "number of users U",
        "decision time per slot (ms)",
        "table3",
    )
    plot_lines(summary, axes, out / "table3.png")


def table3(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = IN_THIS_PROCESS
) -> None:
    """Decision time per slot vs U (``workers`` is ignored: the timing runs alone)."""
    from ue_emulator.world import World

    slots = 10 if budget.quick else 200
    rows = []
    for users in USERS:
        config = ScenarioConfig().replace(**{"network.num_users": users})
        catalogue = build_catalogue(config.catalogue)
        world = World(config)
        for seed in range(budget.seeds):
            samples, cache = _samples(world, config, catalogue, seed, slots)
            for name, policy in _allocators(config, catalogue, budget, seed).items():
                ms = _ms_per_slot(policy, samples, cache, slots, seed)
                rows.append(
                    {"users": users, "policy": name, "seed": seed, "decision_ms_per_slot": ms}
                )
        log(f"table3 U={users} done")
    _write_table3(pd.DataFrame(rows), out)

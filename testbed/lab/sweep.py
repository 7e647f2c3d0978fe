"""A sweep: every policy of a budget at every value of one scenario key, the learned ones
trained first, ``budget.seeds`` seeds each. Figs. 7 and 8 are sweeps of the number of users
and of the edge storage; ``testbed sweep`` sweeps any key.

A sweep named NAME writes ``NAME.csv`` (one row per point, policy and seed, rewritten as
each run finishes), ``NAME_summary.csv`` (means and 95% intervals per point and policy),
``NAME_convergence.csv`` (the verdict of every learned run), ``NAMEa.png`` (hit ratio) and
``NAMEb.png`` (utility) against the key. Its runs live under ``work/<point>/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.core.config import ScenarioConfig
from testbed.core.metrics import summarise
from testbed.core.outputs import atomic_write_text
from testbed.lab.budgets import Budget, train_config
from testbed.lab.convergence import convergence, write_convergence
from testbed.lab.plots import Axes, plot_lines
from testbed.lab.tasks import RunTask, evaluation
from testbed.lab.workers import Workers, timed
from testbed.sim.policies import LEARNED

_log = logging.getLogger(__name__)

SWEEP_METRICS = (
    "utility",
    "hit_ratio",
    "violation_rate",
    "mean_slot_reward",
    "decision_ms_per_slot",
)


@dataclass(frozen=True)
class Sweep:
    """What a sweep varies, and the names of its files."""

    name: str
    """The prefix of its files (``fig7``, ``sweep``)."""
    key: str
    """The column of the swept value in its CSVs, and the prefix of its points' folders."""
    label: str
    """The x axis of its plots."""
    values: Sequence[float]
    configure: Callable[[float], ScenarioConfig]
    """The scenario of one value."""


def _point_folder(key: str, value: Any) -> str:
    """The work folder of one point of a sweep, e.g. ``users10`` or
    ``catalogue.cache_capacity_gb24.5`` (characters a path cannot hold become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{key}{value}")


def sweep_tasks(sweep: Sweep, budget: Budget, out: Path) -> tuple[list[RunTask], list[dict]]:
    """The sweep's tasks, point by point, policy by policy, seed by seed, and beside each
    the row that names it (``{key: value, "policy": ..., "seed": ...}``)."""
    # a quick budget evaluates once, at the end; the full one's curve shows convergence
    every = budget.episodes if budget.quick else budget.eval_every
    tasks, points = [], []
    for value in sweep.values:
        scenario = sweep.configure(value)
        point = _point_folder(sweep.key, value)
        for policy in budget.policies:
            for seed in range(budget.seeds):
                learned = policy in LEARNED  # trained, then evaluated on its own episodes
                tasks.append(
                    RunTask(
                        run_dir=str(out / "work" / point / f"{policy}_seed{seed}"),
                        scenario=scenario.replace(seed=seed).to_dict(),
                        policy=policy,
                        seed=seed,
                        train=train_config(budget, policy, seed, every) if learned else None,
                        eval_episodes=budget.eval_episodes,
                    )
                )
                points.append({sweep.key: value, "policy": policy, "seed": seed})
    return tasks, points


def run_sweep_tasks(
    sweep: Sweep, budget: Budget, out: Path, log: Callable[[str], None], workers: Workers
) -> None:
    """Run the sweep into ``out`` (finished runs there are skipped) and write its files."""
    tasks, points = sweep_tasks(sweep, budget, out)
    finished: dict[int, dict] = {}

    def done(index: int) -> None:
        result, point = evaluation(tasks[index]), points[index]
        finished[index] = {**point, **result}
        log(
            f"{sweep.name} {sweep.key}={point[sweep.key]} {point['policy']} seed "
            f"{point['seed']}: utility {result['utility']:.3f} hit {result['hit_ratio']:.3f} "
            f"({result['wall_s']:.1f} s)"
        )
        rows = [finished[i] for i in sorted(finished)]  # the tasks' order, whatever finished
        atomic_write_text(out / f"{sweep.name}.csv", pd.DataFrame(rows).to_csv(index=False))

    workers.run(sweep.name, tasks, done)
    rows = pd.DataFrame([finished[i] for i in range(len(tasks))])
    summary = summarise(rows, [sweep.key, "policy"], SWEEP_METRICS)
    summary.to_csv(out / f"{sweep.name}_summary.csv", index=False)
    pairs = zip(points, tasks, strict=True)
    learned = [(point, task) for point, task in pairs if task.train is not None]
    if learned:
        checks = [
            {**point, **convergence(pd.read_csv(Path(task.run_dir) / "metrics.csv"))}
            for point, task in learned
        ]
        write_convergence(sweep.name, pd.DataFrame(checks), out, log)
    _plot_sweep(sweep, budget, summary, out)


def _plot_sweep(sweep: Sweep, budget: Budget, summary: pd.DataFrame, out: Path) -> None:
    """``<name>a.png``, the hit ratio, and ``<name>b.png``, the utility, against the key."""
    note = f"H={budget.episodes}, {budget.seeds} seeds, 95% CI"
    panels = (
        ("a", "hit_ratio", "model hit ratio", "hit ratio"),
        ("b", "utility", "utility, eq. (11) (lower is better)", "utility"),
    )
    for panel, metric, ylabel, what in panels:
        title = f"{sweep.name}{panel}: {what} ({note})"
        axes = Axes(sweep.key, metric, "policy", sweep.label, ylabel, title)
        plot_lines(summary, axes, out / f"{sweep.name}{panel}.png")


def run_sweep(
    base: ScenarioConfig,
    key: str,
    values: Sequence[float],
    out: Path,
    budget: Budget,
    log: Callable[[str], None] = _log.info,
    workers: int = 1,
    progress: bool = False,
    ray: str = "",
) -> Path:
    """``testbed sweep``: every policy of ``budget`` at every value of the scenario key
    ``key`` (dotted, e.g. ``network.num_users``) over ``base``, ``budget.seeds`` seeds each,
    the learned ones trained first; the same tasks, folders, CSVs and plots as Figs. 7-8
    (``sweep.csv``, ``sweep_summary.csv``, ``sweepa.png`` hit ratio and ``sweepb.png``
    utility against the key), its ``timing.json`` beside them. Finished runs in ``out`` are
    skipped."""
    if workers < 1:
        raise ValueError(f"workers = {workers}: allowed >= 1")
    out.mkdir(parents=True, exist_ok=True)
    sweep = Sweep("sweep", key, key, values, lambda value: base.replace(**{key: value}))
    runner = Workers(workers, progress, ray)
    timed(out, runner, log, lambda: run_sweep_tasks(sweep, budget, out, log, runner))
    return out

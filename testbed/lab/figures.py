"""The paper's experiments (Sec. 7.3, listed in ``testbed.lab.experiments``), each a
function of a budget to the files it writes into an output folder, and their registry
:data:`EXPERIMENTS`.

Figs. 6a and 6b train learned runs and plot their curves (``NAME.csv`` stacks every run's
``metrics.csv``); Figs. 7 and 8 are sweeps (``testbed.lab.sweep``); Table 3 times the
allocation policies (``testbed.lab.decision_time``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.core.config import ScenarioConfig
from testbed.core.metrics import summarise
from testbed.core.outputs import atomic_write_text
from testbed.lab.budgets import Budget, train_config
from testbed.lab.convergence import convergence, write_convergence
from testbed.lab.decision_time import table3
from testbed.lab.plots import Axes, plot_lines
from testbed.lab.sweep import Sweep, run_sweep_tasks
from testbed.lab.tasks import RunTask
from testbed.lab.workers import IN_THIS_PROCESS, Workers

Experiment = Callable[[Budget, Path, Callable[[str], None], Workers], None]
"""An experiment: its budget, output folder, progress log and workers to its files."""


def train_for_curves(
    name: str,
    variants: dict[str, tuple[str, dict[str, Any]]],
    budget: Budget,
    out: Path,
    log: Callable[[str], None],
    workers: Workers,
) -> pd.DataFrame:
    """Train every variant (label -> agent and allocator overrides) on every seed of
    ``budget``, writing ``<name>.csv`` (their stacked ``metrics.csv`` rows, as each run
    finishes) and ``<name>_convergence.csv``; returns the stacked rows."""
    tasks, labels = [], []
    for label, (agent, allocator) in variants.items():
        for seed in range(budget.seeds):
            tasks.append(
                RunTask(
                    run_dir=str(out / "work" / f"{label}_seed{seed}"),
                    scenario=ScenarioConfig().replace(seed=seed).to_dict(),
                    policy=agent,
                    seed=seed,
                    train=train_config(budget, agent, seed, allocator=allocator),
                )
            )
            labels.append((label, seed))
    frames: dict[int, pd.DataFrame] = {}

    def done(index: int) -> None:
        label, seed = labels[index]
        metrics = pd.read_csv(Path(tasks[index].run_dir) / "metrics.csv")
        metrics.insert(0, "variant", label)
        metrics.insert(1, "seed", seed)
        frames[index] = metrics
        last = metrics["mean_slot_reward"].iloc[-1]
        log(f"{name} {label} seed {seed}: last mean slot reward {last:.3f}")
        stacked = pd.concat([frames[i] for i in sorted(frames)])  # the tasks' order
        atomic_write_text(out / f"{name}.csv", stacked.to_csv(index=False))

    workers.run(name, tasks, done)
    checks = [
        {"variant": label, "seed": seed, **convergence(frames[i], "eval_mean_slot_reward")}
        for i, (label, seed) in enumerate(labels)
    ]
    write_convergence(name, pd.DataFrame(checks), out, log)
    return pd.concat([frames[i] for i in range(len(tasks))])


def _smoothed_last(metrics: pd.DataFrame, fraction: float = 0.1) -> float:
    """The 'converged' reward: the deterministic evaluations (exploration off) over the last
    10% of training (at least the last one)."""
    evals = metrics.dropna(subset=["eval_mean_slot_reward"])
    tail = max(1, round(len(evals) * fraction))
    return float(evals["eval_mean_slot_reward"].iloc[-tail:].mean())


def fig6a(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = IN_THIS_PROCESS
) -> None:
    """The converged reward of T2DRL against the denoising steps L of its actor."""
    steps = [1, 3, 5] if budget.quick else [1, 2, 3, 5, 8, 10]
    variants = {f"L={s}": ("t2drl", {"denoising_steps": s}) for s in steps}
    rows = train_for_curves("fig6a", variants, budget, out, log, workers)
    converged = (
        rows.groupby(["variant", "seed"], sort=False)
        .apply(_smoothed_last, include_groups=False)
        .rename("converged_reward")
        .reset_index()
    )
    converged["L"] = converged["variant"].str.slice(2).astype(int)
    summary = summarise(converged, ["L"], ["converged_reward"])
    summary.to_csv(out / "fig6a_summary.csv", index=False)
    summary["agent"] = "t2drl"
    title = f"fig6a (H={budget.episodes}, {budget.seeds} seeds, 95% CI)"
    axes = Axes(
        "L",
        "converged_reward",
        "agent",
        "denoising steps L of the actor",
        "converged mean slot reward, eq. (23)",
        title,
    )
    plot_lines(summary, axes, out / "fig6a.png")


def fig6b(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = IN_THIS_PROCESS
) -> None:
    """The reward curves of T2DRL and DDPG-based T2DRL, while training (``fig6b.png``) and
    with exploration off on an unseen episode (``fig6b_eval.png``)."""
    variants = {"t2drl": ("t2drl", {}), "ddpg-t2drl": ("ddpg-t2drl", {})}
    rows = train_for_curves("fig6b", variants, budget, out, log, workers)
    summary = summarise(rows, ["variant", "episode"], ["mean_slot_reward", "episode_reward"])
    summary.to_csv(out / "fig6b_summary.csv", index=False)
    evals = rows.dropna(subset=["eval_mean_slot_reward"])
    eval_summary = summarise(evals, ["variant", "episode"], ["eval_mean_slot_reward"])
    eval_summary.to_csv(out / "fig6b_eval_summary.csv", index=False)
    run = f"H={budget.episodes}, {budget.seeds} seeds"
    plots = (
        (
            eval_summary,
            "fig6b_eval",
            "eval_mean_slot_reward",
            "mean slot reward, exploration off",
            f"fig6b, evaluation on an unseen episode ({run})",
        ),
        (
            summary,
            "fig6b",
            "mean_slot_reward",
            "mean slot reward, eq. (23)",
            f"fig6b ({run}, 95% CI)",
        ),
    )
    for table, png, metric, ylabel, title in plots:
        axes = Axes("episode", metric, "variant", "episode", ylabel, title)
        plot_lines(table, axes, out / f"{png}.png")


def _sweep_figure(
    name: str, column: str, label: str, values: list[float], key: str, cast: type
) -> Experiment:
    """A figure that sweeps the scenario key ``key`` (its values cast by ``cast``) over
    ``values`` with every policy of the budget (:mod:`testbed.lab.sweep`)."""

    def experiment(
        budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = IN_THIS_PROCESS
    ) -> None:
        base = ScenarioConfig()
        sweep = Sweep(name, column, label, values, lambda v: base.replace(**{key: cast(v)}))
        run_sweep_tasks(sweep, budget, out, log, workers)

    experiment.__name__ = experiment.__qualname__ = name
    experiment.__doc__ = f"{label} in {values}: hit ratio ({name}a) and utility ({name}b)."
    return experiment


fig7 = _sweep_figure(
    "fig7", "users", "number of users U", [10, 12, 14, 16, 18], "network.num_users", int
)
fig8 = _sweep_figure(
    "fig8",
    "capacity_gb",
    "edge storage C (GB)",
    [20, 22, 24, 26, 28, 30, 32],
    "catalogue.cache_capacity_gb",
    float,
)

EXPERIMENTS: dict[str, Experiment] = {
    "fig6a": fig6a,
    "fig6b": fig6b,
    "fig7": fig7,
    "fig8": fig8,
    "table3": table3,
}

"""The experiments' plots: a summary's means with their 95% intervals, and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Axes:
    """What a line plot of a summary shows: ``metric`` against ``x``, one line per value of
    ``group``, and the labels."""

    x: str
    metric: str
    group: str
    xlabel: str
    ylabel: str
    title: str


def plot_lines(summary: pd.DataFrame, axes: Axes, path: Path) -> None:
    """A summary (``testbed.core.metrics.summarise``): each group's means with their 95%
    interval bars (the ``<metric>_ci95`` column), into the PNG ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, part in summary.groupby(axes.group, sort=False):
        ax.errorbar(
            part[axes.x],
            part[axes.metric],
            yerr=part[f"{axes.metric}_ci95"],
            marker="o",
            capsize=3,
            label=str(name),
        )
    ax.set_xlabel(axes.xlabel)
    ax.set_ylabel(axes.ylabel)
    ax.set_title(axes.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training_curves(
    run_dirs: Sequence[Path], path: Path, metric: str = "mean_slot_reward", window: int = 10
) -> pd.DataFrame:
    """Overlay the ``metrics.csv`` curves of training runs (moving average over ``window``).

    Returns the plotted (smoothed) curves, one column per run.
    """
    plt = pyplot()
    curves = {}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for run_dir in run_dirs:
        metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
        if metric not in metrics:
            raise ValueError(f"{run_dir}/metrics.csv has no column {metric!r}")
        metrics = metrics.dropna(subset=[metric])  # eval_* columns: every eval_every episodes
        smooth = metrics[metric].rolling(window, min_periods=1).mean()
        curves[Path(run_dir).name] = smooth.to_numpy()
        ax.plot(metrics["episode"], smooth, label=Path(run_dir).name)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"{metric} (moving average of {window})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return pd.DataFrame({k: pd.Series(v) for k, v in curves.items()})

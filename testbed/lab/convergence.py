"""Whether a training run has converged: its deterministic evaluation curve over the last
share of training, judged flat when its least-squares line hardly moves; every experiment
writes the verdict of each of its learned runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.outputs import atomic_write_text

CONVERGENCE_TAIL = 0.2
"""The share of a training run's evaluation curve whose flatness says it has converged."""
FLAT_DRIFT = 0.01
"""A curve is flat when the least-squares line through its tail moves by at most this share
of the tail's mean over the tail."""


def convergence(
    metrics: pd.DataFrame, column: str = "eval_utility", tail: float = CONVERGENCE_TAIL
) -> dict[str, Any]:
    """Whether a training run (its ``metrics.csv``) has converged: its deterministic
    evaluations (exploration off, every ``eval_every`` episodes) over the last ``tail`` of
    training. ``drift`` is how far the least-squares line through them moves across that
    window, ``spread`` their max - min, both as shares of their mean |value|; ``flat`` is
    ``drift <= FLAT_DRIFT`` (a curve with fewer than 3 points in its tail is not judged)."""
    evals = metrics.dropna(subset=[column])
    episodes = evals["episode"].to_numpy(dtype=float)
    values = evals[column].to_numpy(dtype=float)
    start = metrics["episode"].max() + 1 - max(1, round(tail * len(metrics)))
    window = episodes >= start
    x, y = episodes[window], values[window]
    result: dict[str, Any] = {
        "eval_points": len(values),
        "tail_points": len(y),
        "tail_mean": float(y.mean()) if len(y) else float("nan"),
        "drift": float("nan"),
        "spread": float("nan"),
        "flat": False,
    }
    if len(y) >= 3:
        scale = max(abs(float(y.mean())), 1e-12)
        slope = float(np.polyfit(x, y, 1)[0])
        result["drift"] = abs(slope) * float(x[-1] - x[0]) / scale
        result["spread"] = float(y.max() - y.min()) / scale
        result["flat"] = bool(result["drift"] <= FLAT_DRIFT)
    return result


def write_convergence(
    name: str, checks: pd.DataFrame, out: Path, log: Callable[[str], None]
) -> None:
    """``<name>_convergence.csv``: :func:`convergence` of every learned run of an experiment
    (one row each, after the columns that name the run)."""
    atomic_write_text(out / f"{name}_convergence.csv", checks.to_csv(index=False))
    judged = checks[checks["tail_points"] >= 3]
    log(
        f"{name}: {int(judged['flat'].sum())} of {len(judged)} learned runs flat over the last "
        f"{CONVERGENCE_TAIL:.0%} of training (largest drift {judged['drift'].max():.2%})"
        if len(judged)
        else f"{name}: too few evaluations to judge convergence"
    )

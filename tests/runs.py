"""A test helper: what the experiment and sweep tests compare in their outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def numbers(path: Path) -> pd.DataFrame:
    """A results CSV without its timing columns (wall time, decision time)."""
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame if c.startswith(("wall_s", "decision_ms"))])


def mtimes(folder: Path) -> dict[Path, int]:
    """Every file under ``folder`` with its modification time (ns)."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def tiny_fig8(out: Path, policies: tuple[str, ...], **kwargs) -> None:
    """Fig. 8 at the quick budget with one seed and one training episode."""
    from testbed.lab.experiments import run_experiment

    run_experiment(
        "fig8",
        out,
        quick=True,
        log=lambda m: None,
        seeds=1,
        episodes=1,
        policies=policies,
        **kwargs,
    )

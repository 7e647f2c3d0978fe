"""The paper's experiments (Sec. 7.3): ``testbed experiment NAME [--quick]``.

=========  ==============================================================================
fig6a      converged reward of T2DRL vs the number of denoising steps L of the actor
fig6b      reward curves of T2DRL and DDPG-based T2DRL
fig7       hit ratio (7a) and utility (7b) vs U in {10, 12, 14, 16, 18}
fig8       hit ratio (8a) and utility (8b) vs C in {20, 22, ..., 32} GB
table3     decision time per slot vs U
=========  ==============================================================================

Figs. 7-8 compare T2DRL, DDPG-based T2DRL, SCHRS, RCARS and the exact optimiser. Every
point is the mean over seeds with a 95% Student-t interval; a learned policy is trained
with that seed and then evaluated, exploration off, on evaluation episodes that no policy
trained on, the same for every policy. Each experiment writes ``NAME.csv`` (one row per
run), ``NAME_summary.csv`` (means and intervals) and its PNG(s) into the output folder.
The ``--quick`` preset shrinks the training budget (and the L grid of fig6a) so that each
experiment finishes within ~10 minutes on a 2-core CPU; the figures of the full preset
take hours.

Every training run and every evaluation is a :class:`~testbed.lab.tasks.RunTask`, a seeded
function of its config to its folder under ``work/``, so that ``--workers N`` runs them in
N processes with the numbers of one (:class:`~testbed.lab.workers.Workers`), and a resumed
experiment skips every finished folder. table3 measures time and always runs alone.

The pieces live beside this entry point: budgets (``testbed.lab.budgets``), run tasks
(``tasks``), workers (``workers``), the figures and their registry (``figures``), sweeps
(``sweep``), convergence verdicts (``convergence``) and plots (``plots``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.lab.budgets import make_budget
from testbed.lab.figures import EXPERIMENTS
from testbed.lab.plots import plot_training_curves
from testbed.lab.sweep import run_sweep
from testbed.lab.workers import Workers, timed

__all__ = ["EXPERIMENTS", "make_budget", "plot_training_curves", "run_experiment", "run_sweep"]

_log = logging.getLogger(__name__)


def run_experiment(
    name: str,
    out: Path,
    quick: bool,
    log: Callable[[str], None] = _log.info,
    seeds: int | None = None,
    episodes: int | None = None,
    preset: str | None = None,
    workers: int = 1,
    progress: bool = False,
    policies: Sequence[str] | None = None,
    ray: str = "",
) -> Path:
    """Run experiment ``name`` into ``out``, its runs ``workers`` at a time in as many
    processes (1: one after the other in this process), with a progress bar over them if
    ``progress``; ``timing.json`` records the wall time. Finished runs already in ``out``
    (from an interrupted run of the same experiment) are kept and skipped. ``policies``
    narrows the sweeps' policies; ``ray`` sends the runs to Ray instead (:class:`Workers`)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    if workers < 1:
        raise ValueError(f"workers = {workers}: allowed >= 1")
    budget = make_budget(quick, seeds, episodes, preset, policies)
    out.mkdir(parents=True, exist_ok=True)
    runner = Workers(workers, progress, ray)
    timed(out, runner, log, lambda: EXPERIMENTS[name](budget, out, log, runner))
    return out

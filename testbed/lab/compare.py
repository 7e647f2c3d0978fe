"""Compare policies on the same worlds over several seeds, with 95% confidence intervals.

Every policy plays seeds ``seed0 .. seed0+n-1`` with the same episodes, hence the same
users, channels and requests (the world depends on the seed only). Trained T2DRL runs
join with their checkpoints, and a composite ``CACHING+ALLOCATION`` (``t2drl+optimal``)
splits a gap between the frame and the slot timescale. Writes
``compare.csv`` (one row per policy and seed), ``compare_summary.csv`` (mean and 95% CI
half-width per policy, Student t over seeds) and ``compare.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.metrics import summarise
from testbed.core.outputs import atomic_write_text
from testbed.lab.plots import pyplot
from testbed.sim.policies import make_policies, unique_policies
from testbed.sim.runner import run

METRICS = ("utility", "hit_ratio", "violation_rate", "mean_slot_reward", "decision_ms_per_slot")


def compare_policies(
    config: ScenarioConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
    progress: bool = False,
    checkpoints: Mapping[str, Path] | None = None,
    done: pd.DataFrame | None = None,
    on_row: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """One row per (policy, seed) with the run summary's metrics.

    A policy named in ``checkpoints`` (e.g. ``{"t2drl": run_dir}``) is a trained run of
    ``testbed train``, evaluated with exploration off; a composite ``CACHING+ALLOCATION``
    (e.g. ``t2drl+optimal``) takes the run of each learned part by the part's name. Rows of
    ``done`` (a previous, interrupted comparison) are kept and their runs skipped;
    ``on_row`` sees the table after each finished run, so a caller can keep it on disk.
    """
    unique_policies(list(policies))  # every name checked before the first run
    checkpoints = checkpoints or {}
    catalogue = build_catalogue(config.catalogue)
    rows = [] if done is None else done.to_dict("records")
    finished = {(row["policy"], int(row["seed"])) for row in rows}
    for policy in policies:
        for seed in seeds:
            if (policy, int(seed)) in finished:
                continue
            seeded = config.replace(seed=int(seed))
            caching, allocation = make_policies(policy, seeded, catalogue, checkpoints)
            summary, _ = run(
                seeded, caching, allocation, episodes, catalogue=catalogue, progress=progress
            )
            rows.append(
                {"policy": policy, "seed": int(seed), **{m: getattr(summary, m) for m in METRICS}}
            )
            if on_row is not None:
                on_row(pd.DataFrame(rows))
    order = {(p, int(s)): i for i, (p, s) in enumerate((p, s) for p in policies for s in seeds)}
    rows.sort(key=lambda row: order.get((row["policy"], int(row["seed"])), len(order)))
    return pd.DataFrame(rows)


def plot_summary(summary: pd.DataFrame, path: Path, title: str) -> None:
    """Bars of the mean utility, hit ratio and violation rate of each policy, with their
    95% intervals."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    panels = (
        ("utility", "utility, eq. (11) (lower is better)"),
        ("hit_ratio", "model hit ratio"),
        ("violation_rate", "(11h) violation rate"),
    )
    x = np.arange(len(summary))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        ax.bar(
            x,
            summary[metric],
            yerr=summary[f"{metric}_ci95"],
            capsize=4,
            color=["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"][: len(x)],
        )
        long = max(len(p) for p in summary["policy"]) > len("ddpg-t2drl")  # composites
        ax.set_xticks(
            x, summary["policy"], rotation=25 if long else 0, ha="right" if long else "center"
        )
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_comparison(
    config: ScenarioConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
    out: Path,
    progress: bool = False,
    checkpoints: Mapping[str, Path] | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Compare into ``out``: ``compare.csv`` is rewritten (atomically) after every finished
    run, so an interruption keeps them all and ``resume`` continues from them."""
    out.mkdir(parents=True, exist_ok=True)
    done = None
    if resume and (out / "compare.csv").is_file():
        done = pd.read_csv(out / "compare.csv")
        done = done[done["policy"].isin(policies) & done["seed"].isin(list(seeds))]

    def keep(rows: pd.DataFrame) -> None:
        atomic_write_text(out / "compare.csv", rows.to_csv(index=False))

    results = compare_policies(
        config, policies, seeds, episodes, progress, checkpoints, done, on_row=keep
    )
    keep(results)
    summary = summarise(results, ["policy"], METRICS)
    summary.to_csv(out / "compare_summary.csv", index=False)
    interval = "95% CI" if len(seeds) > 1 else "no interval from 1 seed"
    title = (
        f"U={config.network.num_users}, C={config.catalogue.cache_capacity_gb:g} GB, "
        f"{len(seeds)} seed(s) x {episodes} episode(s), {interval}"
    )
    plot_summary(summary, out / "compare.png", title)
    return summary

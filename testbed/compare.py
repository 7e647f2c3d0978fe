"""Compare policies on the same worlds over several seeds, with 95% confidence intervals.

Every policy plays seeds ``seed0 .. seed0+n-1`` with the same episodes, hence the same
users, channels and requests (the world depends on the seed only). Trained T2DRL runs
join with their checkpoints. Writes
``compare.csv`` (one row per policy and seed), ``compare_summary.csv`` (mean and 95% CI
half-width per policy, Student t over seeds) and ``compare.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.metrics import summarise
from testbed.policies import make_policies
from testbed.runner import run

METRICS = ("utility", "hit_ratio", "violation_rate", "mean_slot_reward", "decision_ms_per_slot")


def compare_policies(
    config: ScenarioConfig,
    policies: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
    progress: bool = False,
    checkpoints: Mapping[str, Path] | None = None,
) -> pd.DataFrame:
    """One row per (policy, seed) with the run summary's metrics.

    A policy named in ``checkpoints`` (e.g. ``{"t2drl": run_dir}``) is a trained run of
    ``testbed train``, evaluated with exploration off.
    """
    checkpoints = checkpoints or {}
    catalogue = build_catalogue(config.catalogue)
    rows = []
    for policy in policies:
        for seed in seeds:
            seeded = config.replace(seed=int(seed))
            caching, allocation = make_policies(policy, seeded, catalogue, checkpoints.get(policy))
            summary, _ = run(
                seeded, caching, allocation, episodes, catalogue=catalogue, progress=progress
            )
            rows.append(
                {"policy": policy, "seed": int(seed), **{m: getattr(summary, m) for m in METRICS}}
            )
    return pd.DataFrame(rows)


def plot_summary(summary: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.set_xticks(x, summary["policy"])
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
) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    results = compare_policies(config, policies, seeds, episodes, progress, checkpoints)
    results.to_csv(out / "compare.csv", index=False)
    summary = summarise(results, ["policy"], METRICS)
    summary.to_csv(out / "compare_summary.csv", index=False)
    title = (
        f"U={config.network.num_users}, C={config.catalogue.cache_capacity_gb:g} GB, "
        f"{len(seeds)} seeds x {episodes} episode(s), 95% CI"
    )
    plot_summary(summary, out / "compare.png", title)
    return summary

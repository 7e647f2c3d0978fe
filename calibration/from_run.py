"""Refit eqs. (7)-(8) from a live run: ``testbed calibrate --from-run DIR``.

A live run's trace (``testbed run``) holds, per user-slot served at the edge, the integer
steps the edge ran, the TV of what came back and the generation time the edge measured.
Those are calibration points taken under the live loop's own conditions (batches, other
users, the node's process): the profile refitted from them predicts the next live run
better than the offline sweep did, which the next run's report shows as its MAPE.

The generation time fitted is the measured generation minus the wait behind other users:
eq. (8) has no queue, and the wait is reported apart. A model with fewer distinct step
counts than a fit needs keeps the run's own profile entry (said in the output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from calibration.fit import LatencyFit, QualityFit
from calibration.sweep import ModelProfile, fit_model
from testbed.core.config import ConfigError, Profile, build_catalogue, load_config, load_profile
from testbed.core.errors import UsageError

LIVE_COLUMNS = (
    "service",
    "served_by",
    "failure",
    "steps_run",
    "measured_tv",
    "measured_D_gt_s",
    "measured_wait_s",
)


def live_measurements(run_dir: Path) -> tuple[pd.DataFrame, tuple[str, ...], Profile]:
    """The run's edge-served user-slots as calibration rows (model, steps, every quality
    measure the trace holds, latency_s, device), the catalogue's model names, and the run's
    profile."""
    trace_path, config_path = run_dir / "trace.parquet", run_dir / "config.toml"
    if not trace_path.exists() or not config_path.is_file():
        raise UsageError(
            f"--from-run {run_dir}: not a run folder of `testbed run` "
            "(expected trace.parquet and config.toml)"
        )
    try:
        trace = pd.read_parquet(trace_path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--from-run {run_dir}: trace.parquet is unreadable: {exc}") from exc
    if missing := [c for c in LIVE_COLUMNS if c not in trace.columns]:
        raise UsageError(
            f"--from-run {run_dir}: the trace lacks {missing}: a trace of `testbed simulate` "
            "has no measurements; give a run of `testbed run`"
        )
    config = load_config(config_path)
    if not config.catalogue.profile:
        raise ConfigError(f"--from-run {run_dir}: its scenario has no catalogue.profile")
    names = build_catalogue(config.catalogue).names
    edge = trace[(trace["served_by"] == "edge") & (trace["failure"] == "")]
    edge = edge[edge["steps_run"] >= 1]
    rows = pd.DataFrame(
        {
            "model": [names[s] for s in edge["service"]],
            "steps": edge["steps_run"].to_numpy(dtype=int),
            "tv": edge["measured_tv"].to_numpy(dtype=float),
            **(
                {"hole_mae": edge["measured_hole_mae"].to_numpy(dtype=float)}
                if "measured_hole_mae" in edge.columns
                else {}
            ),
            "latency_s": (edge["measured_D_gt_s"] - edge["measured_wait_s"]).to_numpy(float),
            "device": "live",
        }
    )
    return rows, names, load_profile(config.catalogue.profile)


def refit(
    rows: pd.DataFrame, names: tuple[str, ...], profile: Profile, min_step_counts: int
) -> tuple[list[ModelProfile], list[str]]:
    """A profile entry per catalogue model: refitted where the run measured at least
    ``min_step_counts`` distinct step counts, else the run's own entry (r2 unknown: NaN)."""
    profiles, kept = [], []
    for i, (name, entry) in enumerate(zip(names, profile.models, strict=True)):
        counts = rows.loc[rows["model"] == name, "steps"].nunique()
        if counts >= min_step_counts:
            try:
                profiles.append(fit_model(rows, name))
                continue
            except ValueError:
                pass  # e.g. latency that does not grow with steps: keep the offline fit
        kept.append(name)
        profiles.append(
            ModelProfile(
                name=name,
                quality={
                    metric: QualityFit(c[i]["A1"], c[i]["A2"], c[i]["A3"], c[i]["A4"], np.nan)
                    for metric, c in profile.curves.items()
                },
                latency=LatencyFit(entry["B1"], entry["B2"], np.nan, False),
            )
        )
    return profiles, kept

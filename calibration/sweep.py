"""Step sweeps of real RePaint runs, per-model fits of eqs. (7)-(8), profiles and figures.

Request images come from the users' side (`ue_emulator.requests`), are served by the edge's
executor without their ground truth, and are scored on the users' side (`ue_emulator.quality`)
with every quality measure; eq. (7) is fitted on each of them, eq. (8) once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from calibration.evaluation import mean_psnr_db, serve_and_score
from calibration.fit import LatencyFit, QualityFit, fit_latency, fit_quality
from edge_node.executor import RePaintExecutor
from testbed.core.config import QUALITY_METRICS, RepaintSettings, model_label
from ue_emulator.quality import QUALITY_MEASURES
from ue_emulator.requests import make_requests

DEFAULT_STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50)
MEASUREMENT_COLUMNS = (
    "model", "steps", "image", "latency_s", "unet_calls", *QUALITY_MEASURES, "psnr", "ssim",
    "device", "batch", "jump_length", "jump_n_sample",
)  # fmt: skip
MEASURE_LABELS = {"tv": "TV (piq)", "hole_mae": "hole MAE (% of range)"}
assert set(QUALITY_MEASURES) == set(QUALITY_METRICS) == set(MEASURE_LABELS)
NO_RESAMPLING = RepaintSettings()


@dataclass(frozen=True)
class ModelProfile:
    """Calibrated eq. (7), one fit per quality measure, and eq. (8) of one model."""

    name: str
    quality: dict[str, QualityFit]
    """measure (``QUALITY_METRICS``) -> its eq. (7) fit."""
    latency: LatencyFit


def sweep_model(
    executor: RePaintExecutor,
    model: str,
    steps_grid: Sequence[int],
    images: int,
    seed: int,
    batch: int = 1,
    progress: bool = True,
    source: str | None = None,
) -> pd.DataFrame:
    """Run `images` held-out requests of `source` (default: the model's own) at every step count.

    The same images (and request seeds) are used at every step count, as in the paper's Fig. 3.
    Jobs run in a seeded random order so slow drifts of the machine do not bias the slope, after
    one unrecorded warm-up call. Request images are made at the checkpoint's resolution.
    """
    from tqdm import tqdm

    size_px = int(executor.load(model).unet.config.sample_size)
    users = make_requests(source or model, images, seed, size_px=size_px)
    chunks = [list(range(start, min(start + batch, images))) for start in range(0, images, batch)]
    jobs = [(steps, chunk) for steps in steps_grid for chunk in chunks]
    order = np.random.default_rng(seed).permutation(len(jobs))
    executor.inpaint(model, [user.request for user in users[:batch]], 1)
    rows = []
    for job_index in tqdm(order, desc=f"sweep {model}", disable=not progress):
        steps, chunk = jobs[job_index]
        results, scores = serve_and_score(executor, model, [users[i] for i in chunk], steps)
        for k, (image_index, result) in enumerate(zip(chunk, results, strict=True)):
            rows.append(
                {
                    "model": model_label(model),
                    "steps": steps,
                    "image": image_index,
                    "latency_s": result.latency_s,
                    "unet_calls": result.unet_calls,
                    **{m: float(scores.measure(m)[k]) for m in QUALITY_MEASURES},
                    "psnr": float(scores.psnr_db[k]),
                    "ssim": float(scores.ssim[k]),
                    "device": result.device,
                    "batch": result.batch_size,
                    "jump_length": executor.jump_length,
                    "jump_n_sample": executor.jump_n_sample,
                }
            )
    frame = pd.DataFrame(rows, columns=list(MEASUREMENT_COLUMNS))
    return frame.sort_values(["steps", "image"], kind="stable").reset_index(drop=True)


def measured_repaint(measurements: pd.DataFrame) -> RepaintSettings:
    """The resampling schedule of a sweep's rows; rows written before the schedule was
    recorded were all measured without resampling (``jump_n_sample = 1``)."""
    if "jump_n_sample" not in measurements.columns:
        return RepaintSettings()
    schedules = measurements[["jump_length", "jump_n_sample"]].drop_duplicates()
    if len(schedules) != 1:
        raise ValueError(
            "the measurements mix resampling schedules "
            f"{schedules.to_dict('records')}; a profile holds one"
        )
    row = schedules.iloc[0]
    return RepaintSettings(int(row["jump_length"]), int(row["jump_n_sample"]))


def fit_model(measurements: pd.DataFrame, name: str) -> ModelProfile:
    """Fit eq. (7) on every quality measure the rows hold (a column with a value in every row;
    measurements written before a measure existed lack its column) and eq. (8) to one model's
    rows. 0 steps returns the masked input, which is not on the eq. (7) curve (its flat grey
    hole has a low TV), so only rows with steps >= 1 are used."""
    rows = measurements[(measurements["model"] == name) & (measurements["steps"] >= 1)]
    steps = rows["steps"].to_numpy(dtype=float)
    quality = {
        metric: fit_quality(steps, rows[metric].to_numpy(dtype=float))
        for metric in QUALITY_MEASURES
        if metric in rows.columns and rows[metric].notna().all()
    }
    if not quality:
        raise ValueError(f"{name}: the measurements hold no quality measure {QUALITY_MEASURES}")
    return ModelProfile(
        name=name,
        quality=quality,
        latency=fit_latency(steps, rows["latency_s"].to_numpy(dtype=float)),
    )


def profile_toml(
    profiles: Sequence[ModelProfile],
    device: str,
    created: datetime,
    from_run: str = "",
    repaint: RepaintSettings = NO_RESAMPLING,
) -> str:
    """The calibration profile in the format the simulator's config loads (``from_run``: the
    live run it was refitted from, recorded so that the next run's report can compare;
    ``repaint``: the resampling schedule the measurements were made with, which the edge and
    the cloud then run)."""
    lines = [
        "[meta]",
        f'device = "{device}"',
        f'created = "{created.isoformat(timespec="seconds")}"',
        'source = "testbed calibrate"',
        *([f"from_run = {json.dumps(from_run)}"] if from_run else []),
        "[repaint]",
        f"jump_length = {repaint.jump_length}",
        f"jump_n_sample = {repaint.jump_n_sample}",
    ]
    for p in profiles:
        lines += [
            "[[model]]",
            f'name = "{p.name}"',
            f"B1 = {_toml_float(p.latency.b1)}",
            f"B2 = {_toml_float(p.latency.b2)}",
            f"r2_latency = {_toml_float(p.latency.r2)}",
        ]
        for metric, q in p.quality.items():
            lines += [
                f"[model.quality.{metric}]",
                f"A1 = {_toml_float(q.a1)}",
                f"A2 = {_toml_float(q.a2)}",
                f"A3 = {_toml_float(q.a3)}",
                f"A4 = {_toml_float(q.a4)}",
                f"r2 = {_toml_float(q.r2)}",
            ]
    return "\n".join(lines) + "\n"


def _toml_float(value: float) -> str:
    """4 significant digits, always a TOML float (repr keeps the '.0' that '%g' drops)."""
    return repr(float(f"{value:.4g}"))


def write_profile(
    path: Path,
    profiles: Sequence[ModelProfile],
    device: str,
    from_run: str = "",
    repaint: RepaintSettings = NO_RESAMPLING,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_toml(profiles, device, datetime.now(UTC), from_run, repaint))


def plot_model(measurements: pd.DataFrame, profile: ModelProfile, path: Path) -> None:
    """Fig. 3-style figure: (A) each quality measure vs steps, (B) latency vs steps; fitted
    curves in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = measurements[measurements["model"] == profile.name]
    grid = np.linspace(0.0, float(rows["steps"].max()), 400)
    panels = len(profile.quality) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5))
    for ax, (metric, q) in zip(axes, profile.quality.items(), strict=False):
        ax.scatter(rows["steps"], rows[metric], s=8, alpha=0.5, label="measured")
        ax.plot(grid, q.predict(grid), color="red", label=f"eq. (7), R$^2$={q.r2:.3f}")
        ax.set(xlabel="denoising steps", ylabel=MEASURE_LABELS[metric])
        ax.set_title(f"(A) {profile.name}: quality, {metric}")
        ax.legend()
    ax_latency = axes[-1]
    ax_latency.scatter(rows["steps"], rows["latency_s"], s=8, alpha=0.5, label="measured")
    b = profile.latency
    ax_latency.plot(grid, b.predict(grid), color="red", label=f"eq. (8), R$^2$={b.r2:.3f}")
    ax_latency.set(xlabel="denoising steps", ylabel="latency (s)", title="(B) generation delay")
    ax_latency.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def mismatch_matrix(
    executor: RePaintExecutor,
    models: Sequence[str],
    images: int,
    steps: int,
    seed: int,
    progress: bool = True,
) -> pd.DataFrame:
    """Mean PSNR (dB) of model n (column) on held-out requests of source m (row)."""
    from tqdm import tqdm

    table = pd.DataFrame(index=list(models), columns=list(models), dtype=float)
    table.index.name = "request_source"
    pairs = [(source, model) for source in models for model in models]
    for source, model in tqdm(pairs, desc="mismatch", disable=not progress):
        table.loc[source, model] = mean_psnr_db(executor, model, source, images, steps, seed)
    return table


def plot_mismatch(table: pd.DataFrame, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis")
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=60, ha="right")
    ax.set_yticks(range(len(table.index)), table.index)
    ax.set(xlabel="serving model n", ylabel="request source m")
    ax.set_title(f"PSNR (dB) of model n on requests of type m, {steps} steps")
    for (row, col), value in np.ndenumerate(table.to_numpy(dtype=float)):
        ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax, label="PSNR (dB)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""Step sweeps of real RePaint runs, per-model fits of eqs. (7)-(8), profiles and figures.

Request images come from the users' side (`ue_emulator.requests`), are served by the edge's
executor without their ground truth, and are scored on the users' side (`ue_emulator.quality`).
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
from ue_emulator.requests import make_requests

DEFAULT_STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50)
MEASUREMENT_COLUMNS = (
    "model", "steps", "image", "latency_s", "unet_calls", "tv", "psnr", "ssim", "device", "batch"
)  # fmt: skip


@dataclass(frozen=True)
class ModelProfile:
    """Calibrated eq. (7) and eq. (8) of one model."""

    name: str
    quality: QualityFit
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
                    "tv": float(scores.tv[k]),
                    "psnr": float(scores.psnr_db[k]),
                    "ssim": float(scores.ssim[k]),
                    "device": result.device,
                    "batch": result.batch_size,
                }
            )
    frame = pd.DataFrame(rows, columns=list(MEASUREMENT_COLUMNS))
    return frame.sort_values(["steps", "image"], kind="stable").reset_index(drop=True)


def model_label(model: str) -> str:
    """The profile name of a zoo model (its name) or of a checkpoint folder (its basename)."""
    return Path(model).name


def fit_model(measurements: pd.DataFrame, name: str) -> ModelProfile:
    """Fit eqs. (7)-(8) to one model's rows. 0 steps returns the masked input, which is not on
    the eq. (7) curve (its flat grey hole has a low TV), so only rows with steps >= 1 are used."""
    rows = measurements[(measurements["model"] == name) & (measurements["steps"] >= 1)]
    steps = rows["steps"].to_numpy(dtype=float)
    return ModelProfile(
        name=name,
        quality=fit_quality(steps, rows["tv"].to_numpy(dtype=float)),
        latency=fit_latency(steps, rows["latency_s"].to_numpy(dtype=float)),
    )


def profile_toml(
    profiles: Sequence[ModelProfile], device: str, created: datetime, from_run: str = ""
) -> str:
    """The calibration profile in the format the simulator's config loads (``from_run``: the
    live run it was refitted from, recorded so that the next run's report can compare)."""
    lines = [
        "[meta]",
        f'device = "{device}"',
        f'created = "{created.isoformat(timespec="seconds")}"',
        'source = "testbed calibrate"',
        *([f"from_run = {json.dumps(from_run)}"] if from_run else []),
    ]
    for p in profiles:
        lines += [
            "[[model]]",
            f'name = "{p.name}"',
            f"A1 = {_toml_float(p.quality.a1)}",
            f"A2 = {_toml_float(p.quality.a2)}",
            f"A3 = {_toml_float(p.quality.a3)}",
            f"A4 = {_toml_float(p.quality.a4)}",
            f"B1 = {_toml_float(p.latency.b1)}",
            f"B2 = {_toml_float(p.latency.b2)}",
            f"r2_tv = {_toml_float(p.quality.r2)}",
            f"r2_latency = {_toml_float(p.latency.r2)}",
        ]
    return "\n".join(lines) + "\n"


def _toml_float(value: float) -> str:
    """4 significant digits, always a TOML float (repr keeps the '.0' that '%g' drops)."""
    return repr(float(f"{value:.4g}"))


def write_profile(
    path: Path, profiles: Sequence[ModelProfile], device: str, from_run: str = ""
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_toml(profiles, device, datetime.now(UTC), from_run))


def plot_model(measurements: pd.DataFrame, profile: ModelProfile, path: Path) -> None:
    """Fig. 3-style figure: (A) TV vs steps, (B) latency vs steps; fitted curves in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = measurements[measurements["model"] == profile.name]
    grid = np.linspace(0.0, float(rows["steps"].max()), 400)
    fig, (ax_tv, ax_latency) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_tv.scatter(rows["steps"], rows["tv"], s=8, alpha=0.5, label="measured")
    q = profile.quality
    ax_tv.plot(grid, q.predict(grid), color="red", label=f"eq. (7), R$^2$={q.r2:.3f}")
    ax_tv.set(xlabel="denoising steps", ylabel="TV (piq)", title=f"(A) {profile.name}: quality")
    ax_tv.legend()
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

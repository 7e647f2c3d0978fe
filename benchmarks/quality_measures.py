"""Evidence for eq. (7)'s quality measure: which candidate keeps improving with the step count.

Every zoo model serves the same held-out requests of its own source
(``make_requests(model, N, seed)``) with RePaint (resampling jump_length x jump_n_sample) at
each step count, as one batch per (model, step count), on the CPU. Each output is scored with
every candidate measure, all lower-is-better:

* ``tv``: total variation of the output alone (piq, l2 norm; the paper's);
* ``hole_mae``: 100 x mean |output - ground truth| over the hole, % of the pixel range;
* ``hole_rmse``: 100 x RMSE over the hole, % of the pixel range;
* ``tv_gap``: |TV(output) - TV(ground truth)| (piq, l2 norm);
* ``ssim_loss``: 100 x (1 - SSIM), whole image;
* ``gmsd``: 100 x GMSD (piq.gmsd), whole image;
* ``mdsi``: MDSI (piq.mdsi), whole image;
* ``haarpsi_loss``: 100 x (1 - HaarPSI) (piq.haarpsi), whole image.

A measure that fails at the zoo's 32x32 is skipped, and the run says so. Outputs: one CSV row
per (model, image, steps) with every measure, the batch's UNet calls and wall latency; the
Spearman rank correlation of each measure with the step count per model and its mean over
models (negative = improves with steps), over all step counts and over steps >= --flat-from
(where TV is already flat); a figure of two requests at every step count with the measures
written under each image.

    python benchmarks/quality_measures.py [--images 8] [--steps 1,2,3,5,10,20,50]
        [--jump-length 5] [--jump-n-sample 5] [--figure-models brick,faces]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from edge_node.executor import RePaintExecutor
from edge_node.zoo import zoo_names
from ue_emulator.quality import DEFAULT_TV_NORM, score_outputs
from ue_emulator.requests import UserRequest, make_requests

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STEPS = (1, 2, 3, 5, 10, 20, 50)
MEASURES = ("tv", "hole_mae", "hole_rmse", "tv_gap", "ssim_loss", "gmsd", "mdsi", "haarpsi_loss")
"""Candidate measures in column order; all lower-is-better."""
LABELS = {
    "tv": "TV",
    "hole_mae": "MAE% ",
    "hole_rmse": "RMSE%",
    "tv_gap": "|dTV|",
    "ssim_loss": "1-SSIM",
    "gmsd": "GMSD",
    "mdsi": "MDSI",
    "haarpsi_loss": "1-HaarPSI",
}
"""How the figure names each measure (x100 where the list above says so)."""
FIGURE_KEY = (
    "\n\nall: lower = better\nMAE%, RMSE%: hole only\n1-SSIM, GMSD, 1-HaarPSI:\n"
    "  x100, whole image\n|dTV| = |TV - TV(truth)|"
)


def _nchw(images: np.ndarray) -> torch.Tensor:
    """NHWC numpy in [0, 1] -> NCHW float32 tensor, clamped to [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return tensor.permute(0, 3, 1, 2).clamp(0.0, 1.0)


def hole_rmse(outputs: np.ndarray, ground_truth: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, 100 x sqrt(mean (output - ground truth)^2) over the hole's pixels and
    channels (% of the pixel range; outputs clamped to [0, 1]; masks 1 = keep); 0 without a
    hole, like ``ue_emulator.quality.hole_mae``."""
    x = np.clip(np.asarray(outputs, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(ground_truth, dtype=np.float64)
    hole = 1.0 - np.asarray(masks, dtype=np.float64)[..., None]
    squared = ((x - y) ** 2 * hole).sum(axis=(1, 2, 3))
    count = hole.sum(axis=(1, 2, 3)) * x.shape[3]
    return np.where(count > 0, 100.0 * np.sqrt(squared / np.maximum(count, 1.0)), 0.0)


def _full_reference(
    fn: Callable[..., torch.Tensor], scale: float, complement: bool
) -> Callable[[torch.Tensor, torch.Tensor], np.ndarray]:
    """A piq full-reference measure as lower-is-better numpy: scale x (1 - s) when `complement`
    (similarities in [0, 1]), scale x s otherwise (distances)."""

    def measure(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        value = fn(x, y, data_range=1.0, reduction="none")
        return (scale * (1.0 - value) if complement else scale * value).numpy()

    return measure


def _piq_measures() -> dict[str, Callable[[torch.Tensor, torch.Tensor], np.ndarray]]:
    import piq

    return {
        "ssim_loss": _full_reference(piq.ssim, 100.0, complement=True),
        "gmsd": _full_reference(piq.gmsd, 100.0, complement=False),
        "mdsi": _full_reference(piq.mdsi, 1.0, complement=False),
        "haarpsi_loss": _full_reference(piq.haarpsi, 100.0, complement=True),
    }


def candidate_measures(
    outputs: np.ndarray, ground_truth: np.ndarray, masks: np.ndarray, skipped: dict[str, str]
) -> dict[str, np.ndarray]:
    """Every candidate measure (``MEASURES``) of NHWC [0, 1] outputs, per image.

    Beside them, for reference: PSNR (dB, whole image) and the TV of the ground truth.
    tv and hole_mae come from ``ue_emulator.quality.score_outputs`` (the users' node's own
    scoring); a piq measure that raises on these images is left out and its reason recorded
    in `skipped` (measure -> message).
    """
    import piq

    scores = score_outputs(outputs, ground_truth, masks)
    x, y = _nchw(outputs), _nchw(ground_truth)
    with torch.no_grad():
        tv_truth = piq.total_variation(y, reduction="none", norm_type=DEFAULT_TV_NORM).numpy()
        values = {
            "tv": scores.tv,
            "hole_mae": scores.hole_mae,
            "hole_rmse": hole_rmse(outputs, ground_truth, masks),
            "tv_gap": np.abs(scores.tv - tv_truth),
        }
        for name, measure in _piq_measures().items():
            if name in skipped:
                continue
            try:
                values[name] = measure(x, y)
            except (ValueError, RuntimeError) as exc:
                skipped[name] = str(exc)
    values["psnr_db"] = scores.psnr_db
    values["tv_ground_truth"] = tv_truth
    return values


def serve(
    executor: RePaintExecutor, model: str, users: Sequence[UserRequest], steps: int
) -> tuple[np.ndarray, int, float]:
    """Outputs (NHWC in [0, 1]) of `users` served by `model` as one batch of `steps`, the
    batch's UNet calls and its wall latency in s."""
    results = executor.inpaint(model, [user.request for user in users], steps)
    return np.stack([r.image for r in results]), results[0].unet_calls, results[0].latency_s


def measure_zoo(
    executor: RePaintExecutor,
    models: Sequence[str],
    images: int,
    seed: int,
    steps_list: Sequence[int],
) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray], dict[str, str]]:
    """One row per (model, image, steps) with every measure; the outputs by (model, steps),
    kept for the figure; the skipped measures with their reasons."""
    rows: list[dict[str, object]] = []
    outputs_by_key: dict[tuple[str, int], np.ndarray] = {}
    skipped: dict[str, str] = {}
    for model in models:
        users = make_requests(model, images, seed)
        ground_truth = np.stack([u.ground_truth for u in users]).astype(np.float32)
        masks = np.stack([u.request.mask for u in users])
        model_start_s = time.perf_counter()
        for steps in steps_list:
            outputs, unet_calls, latency_s = serve(executor, model, users, steps)
            outputs_by_key[(model, steps)] = outputs
            values = candidate_measures(outputs, ground_truth, masks, skipped)
            for image in range(len(users)):
                rows.append(
                    {
                        "model": model,
                        "image": image,
                        "steps": steps,
                        "hole_fraction": users[image].request.hole_fraction,
                        **{name: float(v[image]) for name, v in values.items()},
                        "unet_calls": unet_calls,
                        "batch_latency_s": latency_s,
                        "batch_size": len(users),
                    }
                )
        print(f"  {model}: {time.perf_counter() - model_start_s:.1f} s", flush=True)
    return pd.DataFrame(rows), outputs_by_key, skipped


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (nan for a constant input, which scipy warns about)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def spearman_table(frame: pd.DataFrame, measures: Sequence[str], min_steps: int) -> pd.DataFrame:
    """Per model and measure: rho of the measure with the step count over all (image, steps)
    rows (pooled), and the mean over images of each image's own rho; over all step counts and
    over steps >= `min_steps`. Rows "mean" average the models. Negative = improves."""
    rows: list[dict[str, object]] = []
    for model, group in frame.groupby("model", sort=False):
        flat = group[group["steps"] >= min_steps]
        for measure in measures:
            row: dict[str, object] = {"model": model, "measure": measure}
            for suffix, part in (("all", group), (f"ge{min_steps}", flat)):
                row[f"rho_pooled_{suffix}"] = _spearman(part["steps"], part[measure])
                row[f"rho_per_image_{suffix}"] = float(
                    np.nanmean(
                        [_spearman(g["steps"], g[measure]) for _, g in part.groupby("image")]
                    )
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    means = table.groupby("measure", sort=False).mean(numeric_only=True).reset_index()
    means.insert(0, "model", "mean")
    return pd.concat([table, means], ignore_index=True)


def _label(values: dict[str, float], measures: Sequence[str]) -> str:
    """The measures of one output, one per line, as the figure writes them."""
    return "\n".join(f"{LABELS[m]:<9}{values[m]:6.2f}" for m in measures if m in values)


def draw_figure(
    frame: pd.DataFrame,
    outputs_by_key: dict[tuple[str, int], np.ndarray],
    picks: Sequence[tuple[str, int]],
    steps_list: Sequence[int],
    measures: Sequence[str],
    images: int,
    seed: int,
    path: Path,
) -> None:
    """Rows of (upload, ground truth, output at each step count) for each (model, image) in
    `picks`, each output with its measures written under it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_in, text_in, title_in, gap_in = 1.2, 0.95, 0.34, 0.06
    columns = 2 + len(steps_list)
    row_in = title_in + image_in + text_in
    width_in, height_in = columns * (image_in + gap_in) + gap_in, len(picks) * row_in + 0.05
    fig = plt.figure(figsize=(width_in, height_in))
    for row, (model, image) in enumerate(picks):
        user = make_requests(model, images, seed)[image]
        truth = frame[(frame["model"] == model) & (frame["image"] == image)].iloc[0]
        panels: list[tuple[np.ndarray, str, str]] = [
            (
                user.request.masked_image,
                f"{model} #{image}: upload",
                f"hole {100 * user.request.hole_fraction:.0f}%" + (FIGURE_KEY if row == 0 else ""),
            ),
            (
                user.ground_truth,
                "ground truth",
                f"{LABELS['tv']:<9}{truth['tv_ground_truth']:6.2f}",
            ),
        ]
        for steps in steps_list:
            record = frame[
                (frame["model"] == model) & (frame["image"] == image) & (frame["steps"] == steps)
            ].iloc[0]
            title = (
                f"{steps} step{'s' if steps != 1 else ''}\n{int(record['unet_calls'])} UNet calls"
            )
            panels.append(
                (outputs_by_key[(model, steps)][image], title, _label(record.to_dict(), measures))
            )
        bottom_in = height_in - (row + 1) * row_in + text_in
        for col, (picture, title, label) in enumerate(panels):
            left_in = gap_in + col * (image_in + gap_in)
            ax = fig.add_axes(
                (
                    left_in / width_in,
                    bottom_in / height_in,
                    image_in / width_in,
                    image_in / height_in,
                )
            )
            ax.imshow(np.clip(picture, 0.0, 1.0), interpolation="nearest")
            ax.set_title(title, fontsize=6.5, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(
                0.0,
                -0.03,
                label,
                transform=ax.transAxes,
                fontsize=5.4,
                va="top",
                family="monospace",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated zoo names (default: the whole zoo)")
    parser.add_argument("--images", type=int, default=8, help="held-out requests per model")
    parser.add_argument("--seed", type=int, default=12345, help="make_requests seed")
    parser.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)))
    parser.add_argument("--jump-length", type=int, default=5)
    parser.add_argument("--jump-n-sample", type=int, default=5)
    parser.add_argument("--flat-from", type=int, default=3, help="restricted range: steps >= this")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--figure-models", default="brick,faces")
    parser.add_argument("--figure-image", type=int, default=0, help="request index in the figure")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/data/quality_measures.csv")
    parser.add_argument(
        "--spearman-csv", type=Path, default=ROOT / "docs/data/quality_measures_spearman.csv"
    )
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/img/quality_measures.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",") if args.models else zoo_names()
    steps_list = [int(s) for s in args.steps.split(",")]
    executor = RePaintExecutor(
        device="cpu", jump_length=args.jump_length, jump_n_sample=args.jump_n_sample
    )
    print(
        f"{len(models)} models x {args.images} requests (seed {args.seed}) x steps {steps_list}, "
        f"jump {args.jump_length}x{args.jump_n_sample}, cpu, {torch.get_num_threads()} thread(s)"
    )
    start_s = time.perf_counter()
    frame, outputs_by_key, skipped = measure_zoo(
        executor, models, args.images, args.seed, steps_list
    )
    serve_s = time.perf_counter() - start_s
    for name, reason in skipped.items():
        print(f"skipped {name} (fails at 32x32): {reason}")
    measures = [m for m in MEASURES if m in frame.columns and m not in skipped]
    frame = frame.drop(columns=[m for m in skipped if m in frame.columns])
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.csv, index=False, float_format="%.5g")
    table = spearman_table(frame, measures, args.flat_from)
    table.to_csv(args.spearman_csv, index=False, float_format="%.4f")
    picks = [(m, args.figure_image) for m in args.figure_models.split(",") if m in models]
    if picks:
        draw_figure(
            frame,
            outputs_by_key,
            picks,
            steps_list,
            measures,
            args.images,
            args.seed,
            args.figure,
        )
    mean = table[table["model"] == "mean"].set_index("measure")
    ge = f"ge{args.flat_from}"
    print(
        f"\nSpearman rho with the step count, mean over {len(models)} models (negative = improves)"
    )
    print(
        f"| measure | pooled, all steps | pooled, steps >= {args.flat_from} | per image, all "
        f"| per image, steps >= {args.flat_from} |"
    )
    print("|---|---|---|---|---|")
    for measure in measures:
        r = mean.loc[measure]
        print(
            f"| {measure} | {r['rho_pooled_all']:+.3f} | {r[f'rho_pooled_{ge}']:+.3f} "
            f"| {r['rho_per_image_all']:+.3f} | {r[f'rho_per_image_{ge}']:+.3f} |"
        )
    total_s = time.perf_counter() - start_s
    print(
        f"\nserving and scoring {serve_s:.1f} s, total {total_s:.1f} s; wrote {args.csv}, "
        f"{args.spearman_csv}" + (f", {args.figure}" if picks else "")
    )


if __name__ == "__main__":
    main()

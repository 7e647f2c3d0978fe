"""The zoo's quality floor against a classical reference: RePaint vs biharmonic inpainting.

For each zoo model, held-out requests of its own source (``make_requests(model, N, seed)``,
seed 54321 by default, apart from calibration's) are served by the model with RePaint at the
cloud's full-quality step count(s) (resampling jump_length x jump_n_sample), in batches, on
the CPU; the same uploads are inpainted by scikit-image's ``inpaint_biharmonic`` (per channel,
the hole = mask 0). Both are scored by the users' node's own ``ue_emulator.quality
.score_outputs``: hole MAE (100 x mean |x - y| over the hole, % of the pixel range, lower is
better) and PSNR (dB, whole image, higher is better). Prints one markdown table per step
count and writes one CSV row per (model, steps), plus a "mean" row over models.

    python benchmarks/zoo_floor.py [--steps 10,20,50] [--images 16] [--jump-length 5]
        [--jump-n-sample 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from calibration.evaluation import serve_and_score
from edge_node.executor import RePaintExecutor
from edge_node.zoo import zoo_names
from ue_emulator.quality import QualityScores, score_outputs
from ue_emulator.requests import UserRequest, make_requests

ROOT = Path(__file__).resolve().parents[1]


def biharmonic(users: Sequence[UserRequest]) -> QualityScores:
    """Scores of ``skimage.restoration.inpaint_biharmonic`` on the users' uploads (each
    channel solved on its own, the hole = mask 0), clipped to [0, 1]."""
    from skimage.restoration import inpaint_biharmonic

    outputs = np.stack(
        [
            inpaint_biharmonic(u.request.masked_image, u.request.mask == 0, channel_axis=-1)
            for u in users
        ]
    ).astype(np.float32)
    ground_truth = np.stack([u.ground_truth for u in users]).astype(np.float32)
    masks = np.stack([u.request.mask for u in users])
    return score_outputs(np.clip(outputs, 0.0, 1.0), ground_truth, masks)


def zoo_scores(
    executor: RePaintExecutor, model: str, users: Sequence[UserRequest], steps: int, batch: int
) -> tuple[QualityScores, int, float]:
    """Per-image scores of `model` on `users` in batches of `batch`; the UNet calls of one
    full batch and the total wall latency in s."""
    parts: list[QualityScores] = []
    unet_calls, latency_s = 0, 0.0
    for start in range(0, len(users), batch):
        results, scores = serve_and_score(executor, model, users[start : start + batch], steps)
        parts.append(scores)
        unet_calls = max(unet_calls, results[0].unet_calls)
        latency_s += results[0].latency_s
    merged = QualityScores(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(parts[0])}
    )
    return merged, unet_calls, latency_s


def floor_table(
    executor: RePaintExecutor,
    models: Sequence[str],
    images: int,
    seed: int,
    steps_list: Sequence[int],
    batch: int,
) -> pd.DataFrame:
    """One row per (model, steps): means over the requests of the zoo model's and the
    biharmonic's hole MAE (%) and PSNR (dB), and how many requests the zoo model wins on hole
    MAE; then a "mean" row per step count over the models."""
    rows: list[dict[str, object]] = []
    for model in models:
        users = make_requests(model, images, seed)
        reference = biharmonic(users)
        for steps in steps_list:
            scores, unet_calls, latency_s = zoo_scores(executor, model, users, steps, batch)
            rows.append(
                {
                    "model": model,
                    "steps": steps,
                    "images": len(users),
                    "zoo_hole_mae": float(scores.hole_mae.mean()),
                    "biharmonic_hole_mae": float(reference.hole_mae.mean()),
                    "zoo_psnr_db": float(scores.psnr_db.mean()),
                    "biharmonic_psnr_db": float(reference.psnr_db.mean()),
                    "zoo_hole_mae_wins": int((scores.hole_mae < reference.hole_mae).sum()),
                    "unet_calls_per_batch": unet_calls,
                    "zoo_latency_s": latency_s,
                }
            )
            print(
                f"  {model} @ {steps} steps: {latency_s:.1f} s, hole MAE "
                f"{rows[-1]['zoo_hole_mae']:.2f} vs {rows[-1]['biharmonic_hole_mae']:.2f}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    means = table.drop(columns="model").groupby("steps", sort=False).mean().reset_index()
    means.insert(0, "model", "mean")
    return pd.concat([table, means], ignore_index=True)


def print_markdown(table: pd.DataFrame, steps: int, jump: str) -> None:
    part = table[table["steps"] == steps]
    images = int(part["images"].iloc[0])
    print(f"\n{steps} steps, jump {jump}, {images} held-out requests per model:")
    print(
        "| model | zoo hole_mae | biharmonic hole_mae | zoo PSNR | biharmonic PSNR "
        "| zoo wins (hole_mae) |"
    )
    print("|---|---|---|---|---|---|")
    for _, r in part.iterrows():
        print(
            f"| {r['model']} | {r['zoo_hole_mae']:.2f} | {r['biharmonic_hole_mae']:.2f} "
            f"| {r['zoo_psnr_db']:.2f} | {r['biharmonic_psnr_db']:.2f} "
            f"| {r['zoo_hole_mae_wins']:.3g}/{images} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated zoo names (default: the whole zoo)")
    parser.add_argument("--images", type=int, default=16, help="held-out requests per model")
    parser.add_argument("--seed", type=int, default=54321, help="make_requests seed")
    parser.add_argument("--steps", default="20", help="comma-separated denoising step counts")
    parser.add_argument("--jump-length", type=int, default=5)
    parser.add_argument("--jump-n-sample", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="requests per RePaint batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/data/zoo_floor.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",") if args.models else zoo_names()
    steps_list = [int(s) for s in args.steps.split(",")]
    executor = RePaintExecutor(
        device="cpu", jump_length=args.jump_length, jump_n_sample=args.jump_n_sample
    )
    jump = f"{args.jump_length}x{args.jump_n_sample}"
    print(
        f"{len(models)} models x {args.images} requests (seed {args.seed}) x steps {steps_list}, "
        f"jump {jump}, batch {args.batch}, cpu, {torch.get_num_threads()} thread(s)"
    )
    start_s = time.perf_counter()
    table = floor_table(executor, models, args.images, args.seed, steps_list, args.batch)
    for steps in steps_list:
        print_markdown(table, steps, jump)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False, float_format="%.6g")
    print(f"\ntotal {time.perf_counter() - start_s:.1f} s; wrote {args.csv}")


if __name__ == "__main__":
    main()

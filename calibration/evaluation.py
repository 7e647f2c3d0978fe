"""Serve the users' requests through the edge executor and score the outputs on the users' side.

Calibration plays the users: it uploads requests without their ground truth
(`ue_emulator.requests`), the executor serves them, and the ground truth the users kept scores
what comes back (`ue_emulator.quality`). Held-out quality of a model is the mean PSNR on
requests it has never seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_node.executor import InpaintResult, RePaintExecutor
from ue_emulator.quality import QualityScores, score_outputs
from ue_emulator.requests import UserRequest, make_requests


def serve_and_score(
    executor: RePaintExecutor, model: str | Path, users: Sequence[UserRequest], steps: int
) -> tuple[list[InpaintResult], QualityScores]:
    """Serve the users' uploads with `model` as one batch of `steps` denoising steps, then
    score each output against the ground truth and mask its user kept (every quality measure,
    PSNR in dB, SSIM)."""
    results = executor.inpaint(model, [user.request for user in users], steps)
    outputs = np.stack([result.image for result in results])
    ground_truth = np.stack([user.ground_truth for user in users]).astype(np.float32)
    masks = np.stack([user.request.mask for user in users])
    return results, score_outputs(outputs, ground_truth, masks)


def mean_psnr_db(
    executor: RePaintExecutor,
    model: str | Path,
    source: str,
    images: int,
    steps: int,
    seed: int,
    batch: int = 8,
) -> float:
    """Mean PSNR (dB, whole image) of `model` inpainting `images` held-out requests of `source`.

    With model trained on `source` this is the manifest's held-out PSNR; with another model it
    is one cell of the mismatch matrix (a request of type m served by model n).
    """
    users = make_requests(source, images, seed)
    psnr_db: list[float] = []
    for start in range(0, len(users), batch):
        _, scores = serve_and_score(executor, model, users[start : start + batch], steps)
        psnr_db += scores.psnr_db.tolist()
    return float(np.mean(psnr_db))

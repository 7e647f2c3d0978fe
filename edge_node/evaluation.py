"""Held-out quality of a model: mean PSNR of RePaint on requests it has never seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_node.executor import RePaintExecutor
from edge_node.requests import make_requests


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
    requests = make_requests(source, images, seed)
    psnr_db = [
        result.psnr_db
        for start in range(0, len(requests), batch)
        for result in executor.inpaint(model, requests[start : start + batch], steps)
    ]
    return float(np.mean(psnr_db))

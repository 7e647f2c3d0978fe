"""Quality of generated images, scored by whoever holds the ground truth (the users' side).

The edge serves without ever seeing the ground truth; the users (and calibration, which plays
them) score what comes back: total variation (TV, the paper's quality metric of eq. (7), via
`piq.total_variation`) and PSNR/SSIM against the ground truth as reference metrics. torch and
piq are imported inside the function, so importing this module stays torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_TV_NORM = "l2"
"""piq's default norm, on which the paper's A2 = 110, A4 = 28 are plausible for 256x256."""


@dataclass(frozen=True)
class QualityScores:
    """Per-image scores of a batch of outputs, each an array of shape (N,)."""

    tv: np.ndarray
    """Total variation of the output alone (no reference), on [0, 1] pixel values, eq. (7)."""
    psnr_db: np.ndarray
    """PSNR against the ground truth in dB (data range 1), whole image."""
    ssim: np.ndarray
    """SSIM against the ground truth, in [-1, 1] (1 = identical)."""


def score_outputs(
    outputs: np.ndarray, ground_truth: np.ndarray, tv_norm: str = DEFAULT_TV_NORM
) -> QualityScores:
    """Per-image TV, PSNR (dB) and SSIM of NHWC [0, 1] outputs, computed on the CPU.

    `outputs` are clamped to [0, 1] first; `ground_truth` is taken as it is. `tv_norm` is
    piq's `norm_type`: "l1", "l2" or "l2_squared". piq's PSNR of identical images is finite
    (it adds 1e-8 to the MSE): 80 dB at data range 1.
    """
    import piq
    import torch

    if outputs.ndim != 4 or outputs.shape != ground_truth.shape:
        raise ValueError(
            f"outputs {outputs.shape} and ground truth {ground_truth.shape} must be equal NHWC"
        )
    x = torch.from_numpy(np.ascontiguousarray(outputs)).permute(0, 3, 1, 2).clamp(0.0, 1.0)
    y = torch.from_numpy(np.ascontiguousarray(ground_truth)).permute(0, 3, 1, 2)
    with torch.no_grad():
        tv = piq.total_variation(x, reduction="none", norm_type=tv_norm)
        psnr_db = piq.psnr(x, y, data_range=1.0, reduction="none")
        ssim = piq.ssim(x, y, data_range=1.0, reduction="none")
    return QualityScores(tv=tv.numpy(), psnr_db=psnr_db.numpy(), ssim=ssim.numpy())

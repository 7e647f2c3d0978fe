"""Quality of generated images, scored by whoever holds the ground truth (the users' side).

The edge serves without ever seeing the ground truth; the users (and calibration, which plays
them) score what comes back with every quality measure eq. (7) can use
(``testbed.core.config.QUALITY_METRICS``, all lower-is-better):

* ``tv``: total variation of the output alone (the paper's, via ``piq.total_variation``). It
  stops improving once the hole is smooth, a few steps in, while visible noise remains;
* ``hole_mae``: the mean absolute error of the inpainted pixels against the ground truth, in %
  of the pixel range, 100 x sum(|x - y| (1 - mask)) / (C sum(1 - mask)); it keeps falling as
  long as the fill gets closer to what was there (docs/zoo.md, "Choosing the quality measure").

PSNR and SSIM against the ground truth (whole image) are kept as reference metrics. torch and
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
    hole_mae: np.ndarray
    """Mean absolute error of the inpainted pixels (mask 0) in % of the pixel range [0, 1];
    0 for an image without a hole."""

    def measure(self, metric: str) -> np.ndarray:
        """The per-image values of the quality measure ``metric`` ("tv" or "hole_mae")."""
        if metric not in QUALITY_MEASURES:
            raise ValueError(
                f"unknown quality measure {metric!r}; allowed {list(QUALITY_MEASURES)}"
            )
        return getattr(self, metric)


QUALITY_MEASURES = ("tv", "hole_mae")
"""The fields of :class:`QualityScores` that are eq. (7) measures (``QUALITY_METRICS``)."""


def hole_mae(outputs: np.ndarray, ground_truth: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, 100 x the mean |output - ground truth| over the hole's pixels and channels.

    ``outputs`` and ``ground_truth`` are NHWC in [0, 1] (outputs clamped first), ``masks`` NHW
    with 1 = keep, 0 = inpainted. An image whose mask has no hole scores 0.
    """
    x = np.clip(np.asarray(outputs, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(ground_truth, dtype=np.float64)
    hole = 1.0 - np.asarray(masks, dtype=np.float64)[..., None]
    if x.shape != y.shape or hole.shape[:3] != x.shape[:3]:
        raise ValueError(f"outputs {x.shape}, ground truth {y.shape} and masks must match")
    error = (np.abs(x - y) * hole).sum(axis=(1, 2, 3))
    count = hole.sum(axis=(1, 2, 3)) * x.shape[3]
    return np.where(count > 0, 100.0 * error / np.maximum(count, 1.0), 0.0)


def score_outputs(
    outputs: np.ndarray,
    ground_truth: np.ndarray,
    masks: np.ndarray,
    tv_norm: str = DEFAULT_TV_NORM,
) -> QualityScores:
    """Per-image TV, hole MAE, PSNR (dB) and SSIM of NHWC [0, 1] outputs, on the CPU;
    ``masks`` (NHW, 1 = keep, 0 = inpainted) say where the hole was.

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
    return QualityScores(
        tv=tv.numpy(),
        psnr_db=psnr_db.numpy(),
        ssim=ssim.numpy(),
        hole_mae=hole_mae(outputs, ground_truth, masks),
    )

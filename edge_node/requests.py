"""Request images: held-out patches of a source with seeded random masks.

A request of service type m carries a patch of source m's held-out region (never trained on)
and a mask; the ground truth stays with the request so the executor can score the output.
Mismatch mode is the pairing, not the image: a request of type m is served by model n != m.
Mask convention (diffusers RePaint): 1 = keep, 0 = inpaint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_node.sources import PATCH_SIZE_PX, load_source, sample_patches

MaskKind = Literal["box", "stroke", "mixed"]


@dataclass(frozen=True)
class InpaintRequest:
    """One inpainting job. Images HWC float32 in [0, 1]; mask HW float32 in {0, 1}."""

    ground_truth: np.ndarray
    mask: np.ndarray
    seed: int
    """Seed of this request's torch.Generator (initial noise of RePaint)."""
    source: str = ""
    """Service type: the source the image comes from (empty for user images)."""

    @property
    def masked_image(self) -> np.ndarray:
        """The corrupted input the user uploads: holes set to mid-grey (0 in [-1, 1])."""
        return self.ground_truth * self.mask[:, :, None] + 0.5 * (1.0 - self.mask[:, :, None])

    @property
    def hole_fraction(self) -> float:
        return float(1.0 - self.mask.mean())


def box_mask(rng: np.random.Generator, size_px: int = PATCH_SIZE_PX) -> np.ndarray:
    """One rectangular hole covering roughly 10-40% of the image."""
    mask = np.ones((size_px, size_px), dtype=np.float32)
    height_px = int(rng.integers(size_px // 4, size_px * 5 // 8 + 1))
    width_px = int(rng.integers(size_px // 4, size_px * 5 // 8 + 1))
    top = int(rng.integers(0, size_px - height_px + 1))
    left = int(rng.integers(0, size_px - width_px + 1))
    mask[top : top + height_px, left : left + width_px] = 0.0
    return mask


def stroke_mask(rng: np.random.Generator, size_px: int = PATCH_SIZE_PX) -> np.ndarray:
    """Free-form strokes: 2-4 random walks of thick line segments."""
    mask = np.ones((size_px, size_px), dtype=np.float32)
    rows, cols = np.mgrid[0:size_px, 0:size_px]
    scale = size_px / PATCH_SIZE_PX  # stroke widths and lengths are set at 32x32
    for _ in range(int(rng.integers(2, 5))):
        y, x = rng.uniform(0, size_px, size=2)
        radius_px = rng.uniform(1.0, 2.0) * scale
        for _ in range(int(rng.integers(2, 6))):
            angle = rng.uniform(0, 2 * np.pi)
            length_px = rng.uniform(4 * scale, size_px / 3)
            for frac in np.linspace(0.0, 1.0, 8):
                cy = y + frac * length_px * np.sin(angle)
                cx = x + frac * length_px * np.cos(angle)
                mask[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius_px**2] = 0.0
            y = float(np.clip(y + length_px * np.sin(angle), 0, size_px - 1))
            x = float(np.clip(x + length_px * np.cos(angle), 0, size_px - 1))
    return mask


def random_mask(
    rng: np.random.Generator, kind: MaskKind, size_px: int = PATCH_SIZE_PX
) -> np.ndarray:
    if kind == "mixed":
        kind = "box" if rng.random() < 0.5 else "stroke"
    return box_mask(rng, size_px) if kind == "box" else stroke_mask(rng, size_px)


def make_requests(
    source: str,
    count: int,
    seed: int,
    mask_kind: MaskKind = "mixed",
    size_px: int = PATCH_SIZE_PX,
) -> list[InpaintRequest]:
    """`count` requests of service type `source`: held-out 32x32 patches with seeded masks.

    `size_px` other than 32 resizes the patches (bilinear), for checkpoints of another
    resolution, e.g. a user's 256x256 DDPM; masks are drawn at that size.
    """
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    patches = sample_patches(load_source(source).heldout_images, count, rng)
    if size_px != PATCH_SIZE_PX:
        shape = (count, size_px, size_px, 3)
        patches = resize(patches, shape, order=1, anti_aliasing=False).astype(np.float32)
    request_seeds = rng.integers(0, 2**31 - 1, size=count)
    return [
        InpaintRequest(
            ground_truth=patch,
            mask=random_mask(rng, mask_kind, size_px),
            seed=int(request_seed),
            source=source,
        )
        for patch, request_seed in zip(patches, request_seeds, strict=True)
    ]

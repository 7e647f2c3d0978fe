"""Request images: held-out patches of a source with seeded random masks.

A user of service type m holds a patch of source m's held-out region (never trained on) and a
mask. What it uploads is an `InpaintRequest`: the corrupted image (holes at mid-grey), the mask
and a seed, never the ground truth. The ground truth stays on the users' side in the
`UserRequest` beside it, so that whoever holds it can score the output
(`ue_emulator.quality`). Mismatch mode is the pairing, not the image: a request of type m is
served by model n != m. Mask convention (diffusers RePaint): 1 = keep, 0 = inpaint.

`InpaintRequest` satisfies the edge executor's `ServeRequest` protocol (attributes
`masked_image`, `mask`, `seed`); neither side imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ue_emulator.sources import PATCH_SIZE_PX, load_source, sample_patches

MaskKind = Literal["box", "stroke", "mixed"]

HOLE_FILL = 0.5
"""Value of inpainted pixels in the upload, in [0, 1]: mid-grey, 0 in RePaint's [-1, 1]."""


@dataclass(frozen=True)
class InpaintRequest:
    """What a user uploads: the corrupted image, its mask and a seed; no ground truth.

    Image HWC float32 in [0, 1]; mask HW float32 in {0, 1}, 1 = keep, 0 = inpaint.
    """

    masked_image: np.ndarray
    """The corrupted image: kept pixels exact, holes at `HOLE_FILL`."""
    mask: np.ndarray
    seed: int
    """Seed of this request's torch.Generator (initial noise of RePaint)."""
    source: str = ""
    """Service type: the source the image comes from (empty for user images)."""

    @property
    def hole_fraction(self) -> float:
        """Fraction of the pixels to inpaint, in [0, 1]."""
        return float(1.0 - self.mask.mean())


@dataclass(frozen=True)
class UserRequest:
    """A request as the user holds it: the upload and the ground truth kept beside it."""

    request: InpaintRequest
    ground_truth: np.ndarray
    """The uncorrupted image, HWC float32 in [0, 1]; never leaves the users' side."""

    @classmethod
    def from_image(
        cls, ground_truth: np.ndarray, mask: np.ndarray, seed: int, source: str = ""
    ) -> UserRequest:
        """Corrupt `ground_truth` with `mask` (holes to `HOLE_FILL`) into an upload."""
        keep = mask[:, :, None]
        masked_image = ground_truth * keep + HOLE_FILL * (1.0 - keep)
        return cls(InpaintRequest(masked_image, mask, seed, source), ground_truth)


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
    """A box or stroke mask; "mixed" picks one of the two with probability 1/2."""
    if kind == "mixed":
        kind = "box" if rng.random() < 0.5 else "stroke"
    return box_mask(rng, size_px) if kind == "box" else stroke_mask(rng, size_px)


def checkpoint_size_px(model_dir: str | Path) -> int:
    """The side in px of the images a diffusers DDPM checkpoint folder inpaints: its UNet
    config's ``sample_size`` (``unet/config.json`` in the pipeline layout, ``config.json``
    in the single-folder one), read without torch, so that the users make requests at it.
    Raises ValueError (naming ``catalogue.models``) for a config that is missing or not a
    square RGB UNet (requests are square RGB patches); the users' side imports nothing of
    the core."""
    folder = Path(model_dir).expanduser()
    path = folder / "unet" / "config.json"
    path = path if path.is_file() else folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"catalogue.models: {folder} has no readable UNet config: {exc}") from None
    size = config.get("sample_size") if isinstance(config, dict) else None
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    channels = config.get("in_channels", 3) if isinstance(config, dict) else None
    if not (isinstance(size, int) and size > 0 and channels == 3):
        raise ValueError(
            f"catalogue.models: {path}: sample_size {size!r}, in_channels {channels!r}; "
            "allowed a square sample_size > 0 and 3 channels (requests are RGB squares)"
        )
    return size


def make_requests(
    source: str,
    count: int,
    seed: int,
    mask_kind: MaskKind = "mixed",
    size_px: int = PATCH_SIZE_PX,
) -> list[UserRequest]:
    """`count` requests of service type `source`: held-out 32x32 patches with seeded masks.

    `size_px` other than 32 resizes the patches (bilinear), for checkpoints of another
    resolution, e.g. a user's 256x256 DDPM; masks are drawn at that size. The draws, in order:
    the patches, then every request's seed, then the masks one request after another.
    """
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    patches = sample_patches(load_source(source).heldout_images, count, rng)
    if size_px != PATCH_SIZE_PX:
        shape = (count, size_px, size_px, 3)
        patches = resize(patches, shape, order=1, anti_aliasing=False).astype(np.float32)
    request_seeds = rng.integers(0, 2**31 - 1, size=count)
    return [
        UserRequest.from_image(
            ground_truth=patch,
            mask=random_mask(rng, mask_kind, size_px),
            seed=int(request_seed),
            source=source,
        )
        for patch, request_seed in zip(patches, request_seeds, strict=True)
    ]

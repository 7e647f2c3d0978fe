"""Image sources shipped inside packages, split into a training region and a held-out region.

The users' content: service type m is source m. Every source is an RGB float32 image (or a
stack of them) in [0, 1], HWC. Training patches (for the offline zoo training in
`calibration.zoo_training`) are cropped from the training region only; request images are
cropped from the held-out region, so the zoo never sees a request image during training.
Grey-level sources are replicated to RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

PATCH_SIZE_PX = 32
HELDOUT_FRACTION = 0.25
"""Right-most quarter of each image (or last quarter of a stack) is held out for requests."""


@dataclass(frozen=True)
class SourceSplit:
    """Training and held-out images of one source, each HWC float32 RGB in [0, 1]."""

    name: str
    train_images: tuple[np.ndarray, ...]
    heldout_images: tuple[np.ndarray, ...]


def _as_rgb_unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    unit = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    if unit.ndim == 2:
        unit = np.repeat(unit[:, :, None], 3, axis=2)
    return np.clip(unit, 0.0, 1.0)


def _downscale(image: np.ndarray, factor: int) -> np.ndarray:
    from skimage.transform import rescale

    if factor == 1:
        return image
    small = rescale(image, 1.0 / factor, channel_axis=2, anti_aliasing=True, preserve_range=True)
    return small.astype(np.float32)


def _split_columns(name: str, image: np.ndarray) -> SourceSplit:
    """Cut one image into a training part (left) and a held-out part (right), no overlap."""
    width_px = image.shape[1]
    cut_px = round(width_px * (1.0 - HELDOUT_FRACTION))
    if width_px - cut_px < PATCH_SIZE_PX:
        raise ValueError(f"source {name}: held-out region narrower than {PATCH_SIZE_PX} px")
    return SourceSplit(name, (image[:, :cut_px].copy(),), (image[:, cut_px:].copy(),))


def _skimage_single(attr: str, downscale: int) -> Callable[[], SourceSplit]:
    def load() -> SourceSplit:
        from skimage import data

        image = _downscale(_as_rgb_unit(getattr(data, attr)()), downscale)
        return _split_columns(attr, image)

    return load


def _lfw_faces() -> SourceSplit:
    """The 100 face crops of scikit-image's LFW subset (25x25 grey), resized to 32x32."""
    from skimage import data
    from skimage.transform import resize

    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    shape = (PATCH_SIZE_PX, PATCH_SIZE_PX)
    images = [_as_rgb_unit(resize(face, shape, anti_aliasing=True)) for face in faces]
    cut = round(len(images) * (1.0 - HELDOUT_FRACTION))
    return SourceSplit("faces", tuple(images[:cut]), tuple(images[cut:]))


SOURCE_LOADERS: dict[str, Callable[[], SourceSplit]] = {
    "brick": _skimage_single("brick", 2),
    "grass": _skimage_single("grass", 2),
    "gravel": _skimage_single("gravel", 2),
    "text": _skimage_single("text", 1),
    "coins": _skimage_single("coins", 2),
    "chelsea": _skimage_single("chelsea", 2),
    "coffee": _skimage_single("coffee", 2),
    "immunohistochemistry": _skimage_single("immunohistochemistry", 2),
    "hubble_deep_field": _skimage_single("hubble_deep_field", 2),
    "faces": _lfw_faces,
}
"""The zoo's M = 10 sources, in zoo order (model index m is the position here, 0-based)."""

SOURCE_DESCRIPTIONS: dict[str, str] = {
    "brick": "skimage.data.brick (grey texture, 1/2 scale)",
    "grass": "skimage.data.grass (grey texture, 1/2 scale)",
    "gravel": "skimage.data.gravel (grey texture, 1/2 scale)",
    "text": "skimage.data.text (grey printed text, full scale)",
    "coins": "skimage.data.coins (grey photo, 1/2 scale)",
    "chelsea": "skimage.data.chelsea (RGB cat photo, 1/2 scale)",
    "coffee": "skimage.data.coffee (RGB photo, 1/2 scale)",
    "immunohistochemistry": "skimage.data.immunohistochemistry (RGB microscopy, 1/2 scale)",
    "hubble_deep_field": "skimage.data.hubble_deep_field (RGB astronomy, 1/2 scale)",
    "faces": "skimage.data.lfw_subset, 100 faces 25x25 grey resized to 32x32",
}


@cache
def load_source(name: str) -> SourceSplit:
    """The train/held-out split of a named source (cached; the arrays must not be mutated)."""
    if name not in SOURCE_LOADERS:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCE_LOADERS)}")
    return SOURCE_LOADERS[name]()


def sample_patches(
    images: tuple[np.ndarray, ...], count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` random 32x32 crops, NHWC float32 in [0, 1], each from a random image."""
    patches = np.empty((count, PATCH_SIZE_PX, PATCH_SIZE_PX, 3), dtype=np.float32)
    picks = rng.integers(0, len(images), size=count)
    for i, pick in enumerate(picks):
        image = images[pick]
        top = rng.integers(0, image.shape[0] - PATCH_SIZE_PX + 1)
        left = rng.integers(0, image.shape[1] - PATCH_SIZE_PX + 1)
        patches[i] = image[top : top + PATCH_SIZE_PX, left : left + PATCH_SIZE_PX]
    return patches

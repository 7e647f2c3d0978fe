"""The model zoo as the edge node loads it: M = 10 small DDPM UNets and their manifest.

Each model is a diffusers `DDPMPipeline.save_pretrained` folder (``unet/`` with safetensors
weights, ``scheduler/`` with the `DDPMScheduler` config, ``model_index.json``), so any local
diffusers DDPM checkpoint (e.g. a user's 256x256 CelebA-HQ DDPM) loads the same way by path.
The manifest records measured facts about each file; the catalogue cache size c_m in GB of
eq. (11d) is a simulator parameter and is NOT the size on disk. Training the zoo and writing
the manifest is an offline tool: `calibration.zoo_training`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import UNet2DModel

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MODELS_DIR = ZOO_DIR / "models"
MANIFEST_PATH = ZOO_DIR / "manifest.json"
REFERENCE_STEPS = 25
"""Denoising steps at which the manifest's held-out PSNR is measured."""


@dataclass(frozen=True)
class ZooEntry:
    """One model of the manifest: measured facts about its training and its files."""

    name: str
    source: str
    """Description of the image source the model learnt."""
    resolution_px: int
    parameters: int
    training_steps: int
    training_time_s: float
    final_loss: float
    """Mean noise-prediction MSE of the last 50 training steps."""
    size_on_disk_bytes: int
    seed: int
    heldout_psnr_db: float | None = None
    """Mean whole-image PSNR (dB) on held-out requests at `reference_steps`; None until measured."""
    reference_steps: int = REFERENCE_STEPS


def read_manifest(path: Path = MANIFEST_PATH) -> list[ZooEntry]:
    """Manifest entries in zoo order; empty when no model has been trained yet."""
    if not path.exists():
        return []
    return [ZooEntry(**entry) for entry in json.loads(path.read_text())["models"]]


def zoo_names(path: Path = MANIFEST_PATH) -> list[str]:
    """Names of the trained zoo models, in zoo order."""
    return [entry.name for entry in read_manifest(path)]


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A zoo model name, or the path of any local diffusers DDPM checkpoint folder."""
    candidate = MODELS_DIR / str(name_or_path)
    if isinstance(name_or_path, str) and candidate.is_dir():
        return candidate
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name_or_path!r} is neither a zoo model nor a folder")
    return path


def load_unet_and_scheduler_config(
    name_or_path: str | Path,
) -> tuple[UNet2DModel, dict[str, Any]]:
    """Load a DDPM checkpoint: pipeline layout (``unet/``, ``scheduler/``) or flat layout."""
    from diffusers import DDPMScheduler, UNet2DModel

    model_dir = resolve_model_dir(name_or_path)
    nested = (model_dir / "unet").is_dir()
    unet = UNet2DModel.from_pretrained(model_dir, subfolder="unet" if nested else None)
    scheduler_dir = model_dir / "scheduler" if (model_dir / "scheduler").is_dir() else model_dir
    scheduler_config = DDPMScheduler.load_config(scheduler_dir)
    unet.eval()
    return unet, dict(scheduler_config)

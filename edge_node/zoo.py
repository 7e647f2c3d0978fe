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
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.core.config import is_model_path
from testbed.core.errors import CheckpointError

if TYPE_CHECKING:
    from diffusers import UNet2DModel

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MODELS_DIR = ZOO_DIR / "models"
MANIFEST_PATH = ZOO_DIR / "manifest.json"
REFERENCE_STEPS = 25
"""Denoising steps at which the manifest's held-out PSNR is measured."""
UNET_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
"""Weight files `UNet2DModel.from_pretrained` loads (one suffices; sharded ones via the index)."""
DEFAULT_TRAIN_TIMESTEPS = 1000
"""`DDPMScheduler`'s default, for a scheduler config that does not say."""
TRANSFER_SUFFIXES = (".safetensors", ".json")
"""The files of a model folder that travel in a cache fill: safetensors weights and JSON
configs. Never pickles (``.bin``, ``.pt``): loading one runs whatever code it holds."""


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
    """Manifest entries in zoo order; empty when no model has been trained yet.

    A manifest that is not strict JSON (NaN and Infinity included) or whose entries have other
    keys than `ZooEntry` is refused with a `CheckpointError`, never half-read.
    """
    if not path.exists():
        return []
    try:
        payload = json.loads(path.read_text(), parse_constant=_refuse_constant)
        return [ZooEntry(**entry) for entry in payload["models"]]
    except (ValueError, KeyError, TypeError) as exc:
        keys = ", ".join(f.name for f in fields(ZooEntry))
        raise CheckpointError(
            f"zoo manifest {path} is unreadable ({exc}); expected strict JSON "
            f'{{"models": [{{{keys}}}, ...]}}'
        ) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


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


def check_checkpoint(name_or_path: str | Path) -> Path:
    """The folder of a zoo name or checkpoint path, verified to hold what
    `load_unet_and_scheduler_config` loads (UNet config and weights, scheduler config), without
    importing torch. Raises `CheckpointError` naming the first thing missing or broken."""
    try:
        model_dir = resolve_model_dir(name_or_path)
    except FileNotFoundError:
        zoo = ", ".join(zoo_names()) or "none trained"
        raise CheckpointError(
            f"{name_or_path} is neither a zoo model ({zoo}) nor a checkpoint folder"
        ) from None
    unet_dir = model_dir / "unet" if (model_dir / "unet").is_dir() else model_dir
    not_ddpm = f"{model_dir} is not a diffusers DDPM checkpoint folder"
    config = _json_file(unet_dir / "config.json", not_ddpm)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"{not_ddpm}: its UNet config is a {config['_class_name']}")
    weights = [unet_dir / name for name in UNET_WEIGHT_FILES if (unet_dir / name).is_file()]
    if not weights:
        raise CheckpointError(f"{not_ddpm}: no {UNET_WEIGHT_FILES[0]} (or .bin) in {unet_dir}")
    if weights[0].suffix == ".safetensors":
        _check_safetensors(weights[0])
    _json_file(_scheduler_dir(model_dir) / "scheduler_config.json", not_ddpm)
    return model_dir


def zoo_model_dirs(names: Sequence[str]) -> dict[str, Path]:
    """The checked folder of each zoo model in ``names`` (a catalogue's names), by name.

    A name is looked up in the manifest, never used as a path of its own, so ``../x`` or
    ``/abs`` cannot reach outside the zoo. Raises `CheckpointError` naming the first name that
    is not a trained zoo model, or whose folder `check_checkpoint` refuses.
    """
    known = zoo_names()
    dirs: dict[str, Path] = {}
    for name in names:
        if name not in known:
            raise CheckpointError(
                f"{name!r} is not a zoo model; the zoo holds: {', '.join(known) or 'none'}"
            )
        dirs[name] = check_checkpoint(name)
    return dirs


def catalogue_model_dirs(names: Sequence[str], entries: Sequence[str]) -> dict[str, Path]:
    """The checked folder of each catalogue model, by its name: ``entries[m]`` (a scenario's
    ``catalogue.models``, or its names) is a zoo name (looked up as `zoo_model_dirs` does,
    never used as a path) or, if `testbed.core.config.is_model_path`, the path of a local
    checkpoint folder the scenario's operator named. Raises `CheckpointError` naming the first
    entry that is neither, or whose folder `check_checkpoint` refuses."""
    dirs: dict[str, Path] = {}
    for name, entry in zip(names, entries, strict=True):
        if is_model_path(entry):
            dirs[name] = check_checkpoint(Path(entry).expanduser())
        else:
            dirs[name] = zoo_model_dirs([entry])[entry]
    return dirs


def image_shape(model_dir: Path) -> tuple[int, int, int]:
    """(height_px, width_px, channels) of the images a checked checkpoint inpaints, from its
    UNet config (``sample_size`` is one side or [height, width]), without importing torch."""
    unet_dir = model_dir / "unet" if (model_dir / "unet").is_dir() else model_dir
    config = _json_file(unet_dir / "config.json", f"{model_dir} is not a DDPM checkpoint")
    size = config.get("sample_size")
    if isinstance(size, int):
        height, width = size, size
    elif isinstance(size, list) and len(size) == 2:
        height, width = size
    else:
        height = width = 0
    channels = config.get("in_channels", 3)
    if not all(isinstance(n, int) and n > 0 for n in (height, width, channels)):
        raise CheckpointError(
            f"{unet_dir / 'config.json'}: sample_size {size!r} and in_channels {channels!r} "
            "must be positive integers"
        )
    return height, width, channels


def transfer_files(model_dir: Path) -> list[Path]:
    """The files of a model folder a cache fill sends, as paths relative to the folder (sorted):
    every regular file with a `TRANSFER_SUFFIXES` suffix that lies inside the folder once
    symbolic links are resolved (a link could point anywhere on the host)."""
    root = model_dir.resolve()
    files = [
        path.relative_to(model_dir)
        for path in model_dir.rglob("*")
        if path.suffix in TRANSFER_SUFFIXES
        and path.is_file()
        and path.resolve().is_relative_to(root)
    ]
    return sorted(files, key=Path.as_posix)


def transfer_bytes(model_dir: Path) -> int:
    """Bytes a cache fill of the model folder sends: its `transfer_files` in all."""
    return sum((model_dir / path).stat().st_size for path in transfer_files(model_dir))


def num_train_timesteps(model_dir: Path) -> int:
    """Training timesteps of a checked checkpoint's scheduler: the most denoising steps RePaint
    runs (diffusers silently caps `num_inference_steps` there)."""
    config = json.loads((_scheduler_dir(model_dir) / "scheduler_config.json").read_text())
    return int(config.get("num_train_timesteps", DEFAULT_TRAIN_TIMESTEPS))


def _scheduler_dir(model_dir: Path) -> Path:
    """``scheduler/`` in the pipeline layout, the folder itself in the flat one."""
    return model_dir / "scheduler" if (model_dir / "scheduler").is_dir() else model_dir


def _json_file(path: Path, context: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{context}: {path.name} missing in {path.parent}")
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{context}: {path} is not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{context}: {path} is not a JSON object")
    return content


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes:
    refuse a file whose header does not parse or whose tensors end elsewhere than the file
    (truncated, padded, or a Git LFS pointer in place of the weights)."""
    size_bytes = path.stat().st_size
    broken = f"weights file {path} is truncated or corrupted"
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise CheckpointError(broken)
        (header_bytes,) = struct.unpack("<Q", prefix)
        if header_bytes > size_bytes - 8:
            raise CheckpointError(broken)
        try:
            header = json.loads(fh.read(header_bytes))
        except (ValueError, UnicodeDecodeError):
            raise CheckpointError(broken) from None
    if not isinstance(header, dict):
        raise CheckpointError(broken)
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    if 8 + header_bytes + max(ends, default=0) != size_bytes:
        raise CheckpointError(broken)


def load_unet_and_scheduler_config(
    name_or_path: str | Path,
) -> tuple[UNet2DModel, dict[str, Any]]:
    """Load a DDPM checkpoint: pipeline layout (``unet/``, ``scheduler/``) or flat layout."""
    from diffusers import DDPMScheduler, UNet2DModel

    model_dir = resolve_model_dir(name_or_path)
    nested = (model_dir / "unet").is_dir()
    unet = UNet2DModel.from_pretrained(model_dir, subfolder="unet" if nested else None)
    scheduler_config = DDPMScheduler.load_config(_scheduler_dir(model_dir))
    unet.eval()
    return unet, dict(scheduler_config)

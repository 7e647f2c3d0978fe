"""Offline tool: train the model zoo (M = 10 small DDPM UNets, one per shipped image source)
and write its manifest. The edge node only loads what this writes (`edge_node.zoo`).

Each model is saved as a diffusers `DDPMPipeline.save_pretrained` folder (``unet/`` with
safetensors weights, ``scheduler/``, ``model_index.json``) under ``<zoo>/models/<source>/``.
torch and diffusers are imported inside the functions, so importing this module is torch-free.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_node.zoo import MANIFEST_PATH, ZooEntry, read_manifest
from testbed.core.errors import CheckpointError
from testbed.core.outputs import atomic_write_text
from ue_emulator.sources import (
    PATCH_SIZE_PX,
    SOURCE_DESCRIPTIONS,
    SOURCE_LOADERS,
    load_source,
    sample_patches,
)

if TYPE_CHECKING:
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class ZooTrainConfig:
    """Hyperparameters of one zoo model's training run."""

    source: str
    """Image source the model learns (a key of `ue_emulator.sources.SOURCE_LOADERS`)."""
    seed: int = 0
    """Seed of the patch sampler, the weight init, the noise and the timesteps."""
    max_steps: int | None = None
    """Optimiser steps; training stops at whichever of max_steps / max_minutes comes first."""
    max_minutes: float | None = None
    """Wall-clock budget in minutes."""
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-4

    def validate(self) -> None:
        """ValueError unless a budget is given: max_steps >= 1 or max_minutes > 0 (or both)."""
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("give max_steps or max_minutes")
        if (self.max_steps is not None and self.max_steps < 1) or (
            self.max_minutes is not None and self.max_minutes <= 0
        ):
            raise ValueError("max_steps must be >= 1 and max_minutes > 0")


def build_unet(sample_size_px: int = PATCH_SIZE_PX) -> UNet2DModel:
    """The zoo's architecture: ~1.06 M parameters, 3 resolution levels, no attention."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=sample_size_px,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def build_scheduler() -> DDPMScheduler:
    """The training noise schedule: DDPM, 1000 timesteps, linear betas."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS)


def folder_size_bytes(path: Path) -> int:
    """Total size in bytes of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def train_model(config: ZooTrainConfig, out_dir: Path, progress: bool = True) -> ZooEntry:
    """Train one DDPM on random 32x32 patches of the source's training region; save it.

    Loss: the DDPM noise-prediction MSE, || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1-abar_t)
    eps, t) ||^2 with t uniform over the 1000 training timesteps.
    """
    import torch
    from diffusers import DDPMPipeline
    from tqdm import tqdm

    config.validate()
    with torch.random.fork_rng(devices=[]):
        # UNet2DModel's weight init draws from the global generator: seed it without leaking
        torch.manual_seed(config.seed)
        unet = build_unet()
    scheduler = build_scheduler()
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_images = load_source(config.source).train_images
    optimiser = torch.optim.AdamW(
        unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / config.warmup_steps)
    )
    deadline_s = math.inf if config.max_minutes is None else 60.0 * config.max_minutes
    max_steps = config.max_steps if config.max_steps is not None else math.inf
    recent_losses: list[float] = []
    unet.train()
    start_s = time.perf_counter()
    step = 0
    bar = tqdm(desc=f"train {config.source}", disable=not progress, unit="step")
    while step < max_steps and time.perf_counter() - start_s < deadline_s:
        patches = sample_patches(train_images, config.batch_size, rng)
        loss = _noise_prediction_loss(unet, scheduler, patches, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        warmup.step()
        recent_losses = [*recent_losses[-49:], loss.item()]
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(recent_losses):.4f}", refresh=False)
    bar.close()
    training_time_s = time.perf_counter() - start_s
    unet.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(out_dir, safe_serialization=True)
    return ZooEntry(
        name=config.source,
        source=SOURCE_DESCRIPTIONS[config.source],
        resolution_px=PATCH_SIZE_PX,
        parameters=sum(p.numel() for p in unet.parameters()),
        training_steps=step,
        training_time_s=round(training_time_s, 1),
        final_loss=round(float(np.mean(recent_losses)), 5),
        size_on_disk_bytes=folder_size_bytes(out_dir),
        seed=config.seed,
    )


def _noise_prediction_loss(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    patches: np.ndarray,
    generator: torch.Generator,
) -> torch.Tensor:
    """The DDPM loss of a batch of NHWC patches in [0, 1]: the noise, then the timesteps,
    drawn from ``generator``."""
    import torch

    clean = torch.from_numpy(patches).permute(0, 3, 1, 2) * 2.0 - 1.0  # NCHW in [-1, 1]
    noise = torch.randn(clean.shape, generator=generator)
    timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (clean.shape[0],), generator=generator)
    noisy = scheduler.add_noise(clean, noise, timesteps)
    return torch.nn.functional.mse_loss(unet(noisy, timesteps).sample, noise)


def check_finite(entry: ZooEntry) -> None:
    """Refuse an entry with a NaN or infinite number (a diverged training, an empty evaluation):
    JSON has no such numbers, and a manifest holding one would mislead every reader."""
    for key, value in asdict(entry).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(
                f"zoo model {entry.name}: {key} is {value}; a manifest holds finite numbers only"
            )


def write_zoo_manifest(entries: list[ZooEntry], path: Path = MANIFEST_PATH) -> None:
    """Write entries sorted in zoo order (the order of `SOURCE_LOADERS`), atomically: a reader
    sees the old manifest or the new one, never a half-written or non-finite one."""
    for entry in entries:
        check_finite(entry)
    order = {name: i for i, name in enumerate(SOURCE_LOADERS)}
    ranked = sorted(entries, key=lambda e: order.get(e.name, len(order)))
    payload: dict[str, Any] = {"models": [asdict(entry) for entry in ranked]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def upsert_zoo_manifest(entry: ZooEntry, path: Path = MANIFEST_PATH) -> None:
    """Add `entry` to the manifest, replacing the entry of the same name if there is one."""
    entries = [e for e in read_manifest(path) if e.name != entry.name]
    write_zoo_manifest([*entries, entry], path)

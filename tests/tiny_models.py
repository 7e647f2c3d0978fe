"""A tiny random-weight DDPM checkpoint, as ``save_pretrained`` writes it, for tests that
need a real diffusers model without the zoo's (imported as ``from tiny_models import ...``)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_ddpm(
    path: Path,
    channels: tuple[int, int] = (16, 16),
    num_train_timesteps: int = 1000,
    seed: int = 0,
) -> Path:
    """A 32 px RGB ``UNet2DModel`` (two plain blocks of ``channels``, one layer each) with a
    ``DDPMScheduler`` of ``num_train_timesteps``, saved in the pipeline layout at ``path``."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps)
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path)
    return path

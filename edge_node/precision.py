"""A UNet that computes in half precision inside a float32 RePaint pipeline.

diffusers' `RePaintPipeline` runs its whole loop (the initial noise, the scheduler's steps,
the known/unknown blend) in its UNet's dtype and ends with ``tensor.numpy()``, which numpy
cannot do for bfloat16. `LowPrecisionUNet` keeps the loop in float32 and only the UNet in the
lower dtype: it reports float32 to the pipeline, casts each call's input sample to its own
dtype and its predicted noise back to float32. The noise the pipeline draws is therefore the
float32 run's, and outputs differ from it by the UNet's rounding only.

Imported by `edge_node.executor` when a pipeline in float16/bfloat16 is loaded (it needs torch).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel
from diffusers.models.unets.unet_2d import UNet2DOutput


class LowPrecisionUNet(torch.nn.Module):
    """``unet`` converted (in place) to ``dtype`` (float16 or bfloat16), called with and
    answering float32 tensors."""

    def __init__(self, unet: UNet2DModel, dtype: torch.dtype) -> None:
        super().__init__()
        # nn.Module's casts, not diffusers' `to(dtype)`, which logs a spurious warning about
        # modules to keep in float32 (UNet2DModel has none)
        if dtype == torch.float16:
            self.inner = unet.half()
        elif dtype == torch.bfloat16:
            self.inner = unet.bfloat16()
        else:
            raise ValueError(f"dtype {dtype}: allowed torch.float16, torch.bfloat16")
        self.compute_dtype = dtype

    @property
    def config(self) -> Any:
        """The wrapped UNet's config (``sample_size``, ``in_channels``, ...)."""
        return self.inner.config

    @property
    def dtype(self) -> torch.dtype:
        """float32: what the pipeline casts its images, masks and noise to."""
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, **kwargs: Any
    ) -> UNet2DOutput:
        """The predicted noise of ``sample`` (NCHW, any float dtype) at ``timestep``, float32."""
        output = self.inner(sample.to(self.compute_dtype), timestep, **kwargs).sample
        return UNet2DOutput(sample=output.float())

"""RePaint inference executor: runs diffusers' `RePaintPipeline` with an allocated step count.

The edge node serves a request of type m with `steps` = xi * L denoising steps (eqs. (7)-(8));
this module measures what that costs: device-synchronised latency and the number of UNet calls
(counted by a forward hook, not inferred). It serves only: a request carries the corrupted
upload, never the ground truth, so the quality of an output is scored by whoever holds the
ground truth (the users' side, `ue_emulator.quality`), not here.

Requests are duck-typed (`ServeRequest`): any object with `masked_image`, `mask` and `seed`,
such as the users' `ue_emulator.requests.InpaintRequest`, so the edge imports nothing of the
users' side and the users nothing of the edge.

Boundary conventions: requests and outputs are HWC float32 in [0, 1] (numpy); inside, images
are NCHW in [-1, 1] and masks N1HW with 1 = keep, 0 = inpaint (diffusers' RePaint convention).
The UNet runs in the executor's ``dtype`` (`DTYPES`); the pipeline's loop stays float32.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_node.zoo import load_unet_and_scheduler_config

if TYPE_CHECKING:
    import torch
    from diffusers import RePaintPipeline

DTYPES = ("float32", "float16", "bfloat16")
"""Precisions the UNet can run in (torch dtype names); float32 is the reference."""


def unet_calls(
    steps: int, jump_length: int, jump_n_sample: int, num_train_timesteps: int | None = None
) -> int:
    """UNet calls of one `RePaintPipeline` call of ``steps`` denoising steps (diffusers 0.42).

    `RePaintScheduler.set_timesteps` walks t from n - 1 down to 0 (n = ``steps``, clamped to
    ``num_train_timesteps`` when given); at each jump point j = 0, L, 2L, ... < n - L (L =
    ``jump_length``) it goes back up L steps and down again, ``jump_n_sample - 1`` times. The
    pipeline calls the UNet on every downward move only (upward moves are noise, no UNet),
    so the calls are n + (ceil(n / L) - 1) * (jump_n_sample - 1) * L for n > L, n otherwise;
    0 steps make 0 calls. ValueError for steps < 0 or a jump_length / jump_n_sample < 1.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError(
            f"jump_length = {jump_length}, jump_n_sample = {jump_n_sample}: allowed integers >= 1"
        )
    n = steps if num_train_timesteps is None else min(steps, num_train_timesteps)
    jump_points = len(range(0, n - jump_length, jump_length))
    return n + jump_points * (jump_n_sample - 1) * jump_length


class ServeRequest(Protocol):
    """What the edge needs of an uploaded request (read-only; no ground truth)."""

    @property
    def masked_image(self) -> np.ndarray:
        """The corrupted upload, HWC float32 in [0, 1]; RePaint ignores its hole pixels."""
        ...

    @property
    def mask(self) -> np.ndarray:
        """HW float32 in {0, 1}: 1 = keep, 0 = inpaint."""
        ...

    @property
    def seed(self) -> int:
        """Seed of the request's CPU torch.Generator (RePaint's initial noise)."""
        ...


@dataclass(frozen=True)
class InpaintResult:
    """The output of one request. `latency_s` and `unet_calls` are those of its whole batch."""

    image: np.ndarray
    """Inpainted image, HWC float32 in [0, 1]."""
    model: str
    steps: int
    """Denoising steps allocated (0 returns the masked input)."""
    unet_calls: int
    latency_s: float
    """Wall time of the batch's pipeline call in s, synchronised to the device."""
    batch_size: int
    device: str
    """torch device type that ran it: "cuda" or "cpu"."""


@dataclass(frozen=True)
class ServeJob:
    """A request routed to a model with an allocated number of denoising steps."""

    model: str
    request: ServeRequest
    steps: int


class RePaintExecutor:
    """Loads zoo models (or local DDPM checkpoints) once and runs batched RePaint on them.

    jump_length / jump_n_sample are RePaint's resampling schedule; the default jump_n_sample=1
    makes one UNet call per denoising step, so latency is linear in steps (eq. (8)). With
    jump_n_sample > 1 the cost is linear in UNet calls (`unet_calls`), which
    `InpaintResult.unet_calls` reports as counted.

    ``dtype`` (one of `DTYPES`) is the precision the UNet computes in; the pipeline's loop
    (noise, scheduler steps, blending) stays float32 and outputs are float32 in [0, 1] whatever
    it is. float32 runs diffusers' pipeline unchanged. float16 is refused on CPU (ValueError):
    use bfloat16 there, which CPU convolutions support.
    """

    def __init__(
        self,
        device: str | None = None,
        jump_length: int = 10,
        jump_n_sample: int = 1,
        eta: float = 0.0,
        show_progress: bool = False,
        dtype: str = "float32",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype, self.device)
        self.jump_length = jump_length
        self.jump_n_sample = jump_n_sample
        self.eta = eta
        self.show_progress = show_progress
        self._pipelines: dict[str, RePaintPipeline] = {}
        self._unet_calls: dict[str, int] = {}

    def load(self, model: str | Path) -> RePaintPipeline:
        """The RePaint pipeline of a zoo model name or checkpoint path (loaded on first use)."""
        from diffusers import RePaintPipeline, RePaintScheduler

        key = str(model)
        if key not in self._pipelines:
            unet, scheduler_config = load_unet_and_scheduler_config(model)
            scheduler = RePaintScheduler.from_config(scheduler_config)
            if self.dtype != "float32":
                import torch

                from edge_node.precision import LowPrecisionUNet

                unet = LowPrecisionUNet(unet, getattr(torch, self.dtype))
            pipeline = RePaintPipeline(unet=unet, scheduler=scheduler).to(self.device)
            pipeline.set_progress_bar_config(disable=not self.show_progress)
            self._unet_calls[key] = 0

            def count_call(*_: object) -> None:
                self._unet_calls[key] += 1

            pipeline.unet.register_forward_hook(count_call)
            self._pipelines[key] = pipeline
        return self._pipelines[key]

    def loaded_models(self) -> list[str]:
        return list(self._pipelines)

    def unload(self, model: str | Path) -> None:
        self._pipelines.pop(str(model), None)
        self._unet_calls.pop(str(model), None)

    def inpaint(
        self, model: str | Path, requests: Sequence[ServeRequest], steps: int
    ) -> list[InpaintResult]:
        """Serve `requests` with `model` as ONE batch of `steps` denoising steps.

        Each request seeds its own CPU `torch.Generator` (the initial noise); RePaint's
        per-step noise comes from the batch's first generator (diffusers), so a request's
        output depends on its batch, and the same batch gives the same output.
        """
        import torch

        if not requests:
            return []
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        key = str(model)
        pipeline = self.load(model)
        masks = np.stack([r.mask for r in requests]).astype(np.float32)
        if steps == 0:
            start_s = time.perf_counter()
            outputs = np.stack([r.masked_image for r in requests]).astype(np.float32)
            latency_s = time.perf_counter() - start_s
            unet_calls = 0
        else:
            corrupted = np.stack([r.masked_image for r in requests]).astype(np.float32)
            images = to_device_tensor(corrupted, self.device)
            mask_tensor = torch.from_numpy(masks)[:, None].to(self.device)
            generators = [torch.Generator().manual_seed(r.seed) for r in requests]
            calls_before = self._unet_calls[key]
            self._synchronize()
            outputs, latency_s = self.run_pipeline(pipeline, images, mask_tensor, steps, generators)
            unet_calls = self._unet_calls[key] - calls_before
        return [
            InpaintResult(
                image=outputs[i],
                model=key,
                steps=steps,
                unet_calls=unet_calls,
                latency_s=latency_s,
                batch_size=len(requests),
                device=self.device.type,
            )
            for i in range(len(requests))
        ]

    def run_pipeline(
        self,
        pipeline: RePaintPipeline,
        images: torch.Tensor,
        masks: torch.Tensor,
        steps: int,
        generators: list[torch.Generator],
    ) -> tuple[np.ndarray, float]:
        """One call of ``pipeline`` with this executor's resampling schedule (eta, jumps) on
        ``images`` (NCHW in [-1, 1]) and ``masks`` (N1HW) on the device: the outputs, NHWC in
        [0, 1] on the host (which synchronises the device), and the call's wall seconds."""
        with warnings.catch_warnings():
            # RePaintPipeline always calls its deprecated PIL preprocess helper, which
            # returns our tensors untouched but warns on every call
            warnings.filterwarnings("ignore", "The preprocess method", FutureWarning)
            start_s = time.perf_counter()
            outputs = pipeline(
                image=images,
                mask_image=masks,
                num_inference_steps=steps,
                eta=self.eta,
                jump_length=self.jump_length,
                jump_n_sample=self.jump_n_sample,
                generator=generators,
                output_type="np",
            ).images
            return outputs, time.perf_counter() - start_s

    def serve(self, jobs: Sequence[ServeJob], max_batch: int = 8) -> list[InpaintResult]:
        """Serve jobs, batching those with the same model and step count; results in job order."""
        groups: dict[tuple[str, int], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault((job.model, job.steps), []).append(index)
        results: list[InpaintResult | None] = [None] * len(jobs)
        for (model, steps), indices in groups.items():
            for start in range(0, len(indices), max_batch):
                chunk = indices[start : start + max_batch]
                outputs = self.inpaint(model, [jobs[i].request for i in chunk], steps)
                for index, output in zip(chunk, outputs, strict=True):
                    results[index] = output
        return [r for r in results if r is not None]

    def _synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_device(device: str | None = None) -> torch.device:
    """The torch device named `device` ("cpu", "cuda", "cuda:N" or "mps"; default: cuda when
    torch sees one, else cpu). ValueError, saying what is allowed, if torch cannot run there."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allowed = "cpu, cuda, cuda:N or mps"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"not a torch device; allowed: {allowed}") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError("torch sees no CUDA device on this machine; use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"torch sees {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("torch sees no MPS device on this machine; use cpu")
    elif resolved.type != "cpu":
        raise ValueError(f"not a device this executor runs on; allowed: {allowed}")
    return resolved


def check_dtype(dtype: str, device: torch.device) -> str:
    """``dtype`` if the executor's UNet can run in it on ``device``; ValueError saying what is
    allowed otherwise (float16 is refused on CPU, where bfloat16 is the half precision)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype}: allowed {', '.join(DTYPES)}")
    if dtype == "float16" and device.type == "cpu":
        raise ValueError("dtype float16 on cpu: not run there; use bfloat16 or float32 on cpu")
    return dtype


def to_device_tensor(images_hwc: np.ndarray, device: torch.device) -> torch.Tensor:
    """NHWC [0, 1] numpy -> NCHW [-1, 1] tensor on `device` (the executor's input boundary)."""
    import torch

    return (torch.from_numpy(images_hwc).permute(0, 3, 1, 2) * 2.0 - 1.0).to(device)

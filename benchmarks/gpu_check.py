"""GPU check of RePaint's cost per dtype: the zoo, a 256 px CelebA-HQ-sized UNet, a live run.

Three parts, each printing its figures as it goes (about 8 minutes on an H200 in all):

* ``zoo``: a `testbed calibrate`-style sweep (`calibration.sweep.sweep_model`) of every zoo
  model in each UNet dtype (float32, float16, bfloat16) with RePaint's resampling at
  jump_length 5, jump_n_sample 5, on a short step grid; prints eq. (8)'s B1 (s/step, fitted
  by `calibration.fit.fit_latency`) and the seconds per UNet call per model and dtype;
* ``celebahq``: a randomly initialised `UNet2DModel` with the architecture of
  google/ddpm-celebahq-256 (256 px, 6 levels of 128-512 channels, attention at 16 px), saved
  with a DDPMScheduler and timed with the executor at a few step counts in each dtype; prints
  its fitted B1 beside the paper's 0.18 s/step;
* ``live``: the default live scenario once (``testbed run --device cuda``) and its summary line.

On a machine without CUDA it prints one line and exits 0; ``--allow-cpu`` runs it on the CPU
anyway (float16 is skipped there, the executor refuses it), and ``--quick`` shrinks every
part (fewer models, steps and images, a 64 px stand-in for the 256 px UNet, a 1 x 2 live
run) for a dry run.

    python benchmarks/gpu_check.py [--quick] [--allow-cpu] [--parts zoo,celebahq,live]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

JUMP_LENGTH = 5
JUMP_N_SAMPLE = 5
"""The resampling schedule every part runs (RePaint's default for the paper's figures)."""
PAPER_B1_S = 0.18
"""The paper's B1 for RePaint at 256 px, in s/step."""
PARTS = ("zoo", "celebahq", "live")
CELEBAHQ_256 = {
    # google/ddpm-celebahq-256's unet/config.json (diffusers' conversion of Ho et al.'s model)
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "down_block_types": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
        "UpBlock2D",
    ),
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "act_fn": "silu",
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
}
QUICK_CELEBAHQ = {"sample_size": 64, "block_out_channels": (32, 32, 64, 64, 128, 128)}
"""The --quick stand-in: the same blocks at 64 px and a quarter of the channels."""
CELEBAHQ_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "variance_type": "fixed_small",
    "clip_sample": True,
}


def dtypes_on(device: str) -> list[str]:
    """The UNet dtypes to time on ``device`` (the executor refuses float16 on cpu)."""
    from edge_node.executor import DTYPES

    return [dtype for dtype in DTYPES if not (device == "cpu" and dtype == "float16")]


def seconds_per_call(unet_calls: np.ndarray, latency_s: np.ndarray) -> float:
    """Slope of latency against UNet calls (s/call), least squares."""
    return float(np.polyfit(unet_calls.astype(float), latency_s, deg=1)[0])


def zoo_part(device: str, quick: bool) -> None:
    """Sweep the zoo in each dtype; one line per model and dtype."""
    from calibration.fit import fit_latency
    from calibration.sweep import sweep_model
    from edge_node.executor import RePaintExecutor
    from edge_node.zoo import zoo_names

    models = zoo_names()[:2] if quick else zoo_names()
    grid = (1, 2, 3) if quick else (1, 2, 4, 6, 8, 10, 15)
    images = 1 if quick else 2
    print(
        f"[zoo] {len(models)} models, steps {grid}, {images} image(s), "
        f"jump_length {JUMP_LENGTH}, jump_n_sample {JUMP_N_SAMPLE}, on {device}"
    )
    for dtype in dtypes_on(device):
        executor = RePaintExecutor(device, JUMP_LENGTH, JUMP_N_SAMPLE, dtype=dtype)
        start_s = time.perf_counter()
        for model in models:
            rows = sweep_model(executor, model, grid, images, seed=0, progress=False)
            steps = rows["steps"].to_numpy(dtype=float)
            latency_s = rows["latency_s"].to_numpy(dtype=float)
            fit = fit_latency(steps, latency_s)
            per_call = seconds_per_call(rows["unet_calls"].to_numpy(), latency_s)
            print(
                f"[zoo] {dtype:8s} {model:22s} B1 = {fit.b1 * 1e3:8.2f} ms/step "
                f"(R2 {fit.r2:.3f}), {per_call * 1e3:7.2f} ms/UNet call, "
                f"mean TV {rows['tv'].mean():.4g}"
            )
            executor.unload(model)
        print(f"[zoo] {dtype}: {time.perf_counter() - start_s:.0f} s")


def save_celebahq_like(folder: Path, quick: bool) -> Path:
    """A random UNet of google/ddpm-celebahq-256's architecture (the --quick stand-in with
    ``quick``) with its DDPMScheduler, saved as a pipeline checkpoint under ``folder``."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    config = {**CELEBAHQ_256, **(QUICK_CELEBAHQ if quick else {})}
    torch.manual_seed(0)
    unet = UNet2DModel(**config)
    path = folder / "celebahq_256_random"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**CELEBAHQ_SCHEDULER)).save_pretrained(path)
    parameters = sum(p.numel() for p in unet.parameters())
    print(f"[celebahq] {config['sample_size']} px UNet, {parameters / 1e6:.1f} M parameters")
    return path


def celebahq_part(device: str, quick: bool, folder: Path) -> None:
    """Time RePaint on the 256 px UNet in each dtype; B1 beside the paper's."""
    from calibration.fit import fit_latency
    from edge_node.executor import RePaintExecutor, unet_calls
    from ue_emulator.requests import make_requests

    path = save_celebahq_like(folder, quick)
    size_px = QUICK_CELEBAHQ["sample_size"] if quick else CELEBAHQ_256["sample_size"]
    request = make_requests("faces", 1, seed=0, size_px=size_px)[0].request
    grid = (2, 4) if quick else (5, 10, 15, 20)
    repeats = 1 if quick else 2
    calls = [unet_calls(steps, JUMP_LENGTH, JUMP_N_SAMPLE) for steps in grid]
    print(f"[celebahq] steps {grid} = UNet calls {calls}, {repeats} repeat(s), batch 1")
    for dtype in dtypes_on(device):
        executor = RePaintExecutor(device, JUMP_LENGTH, JUMP_N_SAMPLE, dtype=dtype)
        executor.inpaint(path, [request], 1)  # warm-up: load, kernels, allocator
        steps_run, latency_s, counted = [], [], []
        finite = True
        for _ in range(repeats):
            for steps in grid:
                (result,) = executor.inpaint(path, [request], steps)
                steps_run.append(steps)
                latency_s.append(result.latency_s)
                counted.append(result.unet_calls)
                finite &= bool(np.isfinite(result.image).all())
        fit = fit_latency(np.array(steps_run), np.array(latency_s))
        per_call = seconds_per_call(np.array(counted), np.array(latency_s))
        print(
            f"[celebahq] {dtype:8s} B1 = {fit.b1:.4f} s/step (R2 {fit.r2:.3f}; paper "
            f"{PAPER_B1_S} s/step), {per_call * 1e3:.2f} ms/UNet call, "
            f"longest {max(latency_s):.2f} s, outputs finite: {finite}"
        )
        executor.unload(path)
        del executor


def live_part(device: str, quick: bool, folder: Path) -> None:
    """One `testbed run` of the default live scenario on ``device``; its summary line."""
    out = folder / "live"
    command = [sys.executable, "-m", "testbed.cli", "run", "--out", str(out), "--overwrite"]
    command += ["--device", device, "--quiet"]
    if quick:
        command += ["--frames", "1", "--slots", "2"]
    print(f"[live] {' '.join(command[2:])}")
    start_s = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=150 if quick else 300
        )
    except subprocess.TimeoutExpired:
        print(f"[live] did not finish within {150 if quick else 300} s")
        return
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    summary = lines[-1] if lines else "(no output)"
    print(f"[live] exit {done.returncode} after {time.perf_counter() - start_s:.0f} s: {summary}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shrink every part (dry run)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU if no CUDA")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated parts (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each figure as it is measured
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if unknown := [part for part in parts if part not in PARTS]:
        parser.error(f"--parts {args.parts}: {unknown[0]} is not a part; allowed: {PARTS}")

    import torch

    if torch.cuda.is_available():
        device = "cuda"
    elif args.allow_cpu:
        device = "cpu"
    else:
        print("gpu_check: torch sees no CUDA device; nothing checked (--allow-cpu runs on cpu)")
        return 0
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # no "accelerate not found" on every model load
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"gpu_check on {name}: torch {torch.__version__}, parts {', '.join(parts)}")
    start_s = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for part in parts:
            part_start_s = time.perf_counter()
            if part == "zoo":
                zoo_part(device, args.quick)
            elif part == "celebahq":
                celebahq_part(device, args.quick, Path(tmp))
            else:
                live_part(device, args.quick, Path(tmp))
            print(f"[{part}] done in {time.perf_counter() - part_start_s:.0f} s", flush=True)
    print(f"gpu_check: total {time.perf_counter() - start_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

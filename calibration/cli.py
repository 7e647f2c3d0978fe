"""`testbed calibrate`: sweep steps x models x images with real RePaint, fit eqs. (7)-(8),
write measurements.csv, profile.toml, one Fig. 3-style PNG per model, and optionally the
mismatch matrix; and `testbed zoo ...` (train, list, evaluate the zoo: `calibration.zoo_cli`).
Handlers import torch lazily.

Hook: `register(subparsers)` adds the `calibrate` and `zoo` commands; each leaf parser sets
`handler`, a callable taking the parsed `argparse.Namespace` and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from calibration.sweep import DEFAULT_STEPS
from calibration.zoo_cli import add_zoo_command

MISMATCH_STEPS = 25


def _int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `calibrate` and `zoo` to a parent parser's subparsers."""
    calibrate = subparsers.add_parser(
        "calibrate", help="measure TV/latency vs denoising steps and fit eqs. (7)-(8)"
    )
    calibrate.add_argument(
        "--models", help="comma-separated zoo names or checkpoint folders (default: whole zoo)"
    )
    calibrate.add_argument(
        "--source", help="request images for every model from this source (default: its own)"
    )
    calibrate.add_argument(
        "--steps",
        type=_int_list,
        default=list(DEFAULT_STEPS),
        help="comma-separated step counts (default: %(default)s)",
    )
    calibrate.add_argument("--images", type=int, default=10, help="request images per model")
    calibrate.add_argument("--batch", type=int, default=1, help="requests per RePaint call")
    calibrate.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    calibrate.add_argument("--jump-length", type=int, default=10)
    calibrate.add_argument("--jump-n-sample", type=int, default=1)
    calibrate.add_argument(
        "--mismatch",
        action="store_true",
        help="also measure the PSNR of every model on every source",
    )
    calibrate.add_argument("--mismatch-steps", type=int, default=MISMATCH_STEPS)
    calibrate.add_argument(
        "--measurements", type=Path, help="refit this measurements.csv instead of sweeping"
    )
    calibrate.add_argument("--out", type=Path, required=True, help="output folder")
    calibrate.set_defaults(handler=_calibrate)
    add_zoo_command(subparsers)


def _calibrate(args: argparse.Namespace) -> int:
    import time

    import pandas as pd
    import torch

    from calibration.sweep import (
        fit_model,
        mismatch_matrix,
        model_label,
        plot_mismatch,
        plot_model,
        sweep_model,
        write_profile,
    )
    from edge_node.executor import RePaintExecutor
    from edge_node.zoo import zoo_names

    if args.threads:
        torch.set_num_threads(args.threads)
    executor = RePaintExecutor(
        device=args.device, jump_length=args.jump_length, jump_n_sample=args.jump_n_sample
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start_s = time.perf_counter()
    if args.measurements:
        measurements = pd.read_csv(args.measurements)
        labels = args.models.split(",") if args.models else list(measurements["model"].unique())
        models = labels
        device = str(measurements["device"].iloc[0])
    else:
        models = args.models.split(",") if args.models else zoo_names()
        if not models:
            print("no model to calibrate: train the zoo first (`testbed zoo train`)")
            return 1
        frames = [
            sweep_model(
                executor, model, args.steps, args.images, args.seed, args.batch, source=args.source
            )
            for model in models
        ]
        measurements = pd.concat(frames, ignore_index=True)
        measurements.to_csv(out / "measurements.csv", index=False)
        labels = [model_label(model) for model in models]
        device = executor.device.type
    profiles = [fit_model(measurements, label) for label in labels]
    write_profile(out / "profile.toml", profiles, device)
    for profile in profiles:
        plot_model(measurements, profile, out / f"fig3_{profile.name}.png")
        q, b = profile.quality, profile.latency
        clamp_note = " (B2 < 0 clamped to 0, B1 refit through the origin)" if b.b2_clamped else ""
        print(
            f"{profile.name}: A1={q.a1:.3g} A2={q.a2:.4g} A3={q.a3:.3g} A4={q.a4:.4g} "
            f"R2={q.r2:.3f} | B1={b.b1:.4g} s/step B2={b.b2:.4g} s R2={b.r2:.4f}{clamp_note}"
        )
    print(f"sweep + fit: {time.perf_counter() - start_s:.0f} s on {device}")
    if args.mismatch:
        from ue_emulator.sources import SOURCE_LOADERS

        if unknown := [model for model in models if model not in SOURCE_LOADERS]:
            print(f"--mismatch needs zoo models (their sources are the rows): {unknown}")
            return 1
        table = mismatch_matrix(executor, models, args.images, args.mismatch_steps, args.seed)
        table.round(2).to_csv(out / "mismatch_psnr.csv")
        plot_mismatch(table, out / "mismatch_psnr.png", args.mismatch_steps)
    print(f"total: {time.perf_counter() - start_s:.0f} s; wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m calibration.cli {calibrate,zoo} ...`."""
    parser = argparse.ArgumentParser(prog="python -m calibration.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

"""`testbed calibrate`: sweep steps x models x images with real RePaint, fit eqs. (7)-(8),
write measurements.csv, profile.toml, one Fig. 3-style PNG per model, and optionally the
mismatch matrix; and `testbed zoo ...` (train, list, evaluate the zoo: `calibration.zoo_cli`).
Handlers import torch lazily. Every flag, model folder and input file is checked before --out
is created; an existing non-empty --out is refused unless --overwrite (which replaces it whole).
Bad input raises a `TestbedError` whose one-line message names the flag and what is allowed.

Hook: `register(subparsers)` adds the `calibrate` and `zoo` commands; each leaf parser sets
`handler`, a callable taking the parsed `argparse.Namespace` and returning an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from calibration.sweep import (
    DEFAULT_STEPS,
    ModelProfile,
    fit_model,
    measured_repaint,
    mismatch_matrix,
    plot_mismatch,
    plot_model,
    sweep_model,
    write_profile,
)
from calibration.zoo_cli import add_zoo_command, check_device, check_source, require_at_least
from edge_node.executor import DTYPES
from testbed.core.config import model_label
from testbed.core.errors import CheckpointError, TestbedError, UsageError
from testbed.core.outputs import check_out_dir, claim_out_dir
from ue_emulator.quality import QUALITY_MEASURES

if TYPE_CHECKING:
    from edge_node.executor import RePaintExecutor

MISMATCH_STEPS = 25
MIN_FIT_STEP_COUNTS = 3
"""Distinct step counts >= 1 the fits need: eq. (7) joins two levels by a slope, so its two
breakpoints need three (`fit_quality` needs >= 3 points, `fit_latency` >= 2 distinct counts)."""
REFIT_COLUMNS = ("model", "steps", "tv", "latency_s", "device")
"""Columns of a measurements.csv that a refit reads."""


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
        default=",".join(str(steps) for steps in DEFAULT_STEPS),
        help="comma-separated step counts (default: %(default)s)",
    )
    calibrate.add_argument("--images", type=int, default=10, help="request images per model")
    calibrate.add_argument("--batch", type=int, default=1, help="requests per RePaint call")
    calibrate.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    calibrate.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="precision of the UNet (default: %(default)s; float16 not on cpu)",
    )
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
    calibrate.add_argument(
        "--from-run",
        type=Path,
        help="refit eqs. (7)-(8) from a live run's measurements (`testbed run` folder)",
    )
    calibrate.add_argument("--out", type=Path, required=True, help="output folder")
    calibrate.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder whole"
    )
    calibrate.set_defaults(handler=_calibrate_stating_what_it_kept)
    add_zoo_command(subparsers)


def _calibrate_stating_what_it_kept(args: argparse.Namespace) -> int:
    """`calibrate`, its interrupt carrying what it kept (``kept``, which the CLI prints)."""
    try:
        return _calibrate(args)
    except KeyboardInterrupt as exc:
        if getattr(args, "kept", None) is not None and getattr(exc, "kept", None) is None:
            exc.kept = args.kept()
        raise


def _from_run(args: argparse.Namespace) -> int:
    from calibration.from_run import live_measurements, refit

    if args.measurements or args.models or args.mismatch:
        raise UsageError("--from-run refits a live run: drop --measurements/--models/--mismatch")
    rows, names, entries = live_measurements(args.from_run)
    out = check_out_dir(args.out, overwrite=args.overwrite)
    profiles, kept = refit(rows, names, entries, MIN_FIT_STEP_COUNTS)
    claim_out_dir(out, args.overwrite)
    rows.to_csv(out / "measurements.csv", index=False)
    write_profile(
        out / "profile.toml", profiles, "live", str(args.from_run.resolve()), entries.repaint
    )
    for profile in profiles:
        if profile.name not in kept:
            plot_model(rows, profile, out / f"fig3_{profile.name}.png")
    refitted = [p.name for p in profiles if p.name not in kept]
    print(
        f"refitted from {len(rows)} edge-served user-slots of {args.from_run}: "
        f"{', '.join(refitted) or 'none'}; kept the run's profile for {', '.join(kept) or 'none'}"
        f" (fewer than {MIN_FIT_STEP_COUNTS} distinct step counts) -> {out / 'profile.toml'}"
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import time

    if args.from_run:
        return _from_run(args)

    steps = parse_steps(args.steps)
    models, measurements = _check_inputs(args, steps)
    out: Path = args.out
    start_s = time.perf_counter()
    executor: RePaintExecutor | None = None
    if measurements is not None:
        profiles = _fit(measurements, models, f"in --measurements {args.measurements}")
        device = str(measurements["device"].iloc[0])
        claim_out_dir(out, args.overwrite)
    else:
        claim_out_dir(out, args.overwrite)
        args.kept = lambda: f"the finished models' measurements are in {out / 'measurements.csv'}"
        executor = _executor(args)
        frames: list[pd.DataFrame] = []
        try:
            for model in models:
                sweep = sweep_model(
                    executor, model, steps, args.images, args.seed, args.batch, source=args.source
                )
                frames.append(sweep)
        finally:  # an interrupted sweep keeps the models it finished, to refit later
            if frames:
                measurements = pd.concat(frames, ignore_index=True)
                measurements.to_csv(out / "measurements.csv", index=False)
        labels = [model_label(model) for model in models]
        kept = f"the sweep is kept in {out / 'measurements.csv'}"
        profiles = _fit(measurements, labels, kept)
        device = executor.device.type
    try:
        repaint = measured_repaint(measurements)
    except ValueError as exc:
        raise TestbedError(f"{exc}; {out / 'measurements.csv'}") from None
    write_profile(out / "profile.toml", profiles, device, repaint=repaint)
    for profile in profiles:
        plot_model(measurements, profile, out / f"fig3_{profile.name}.png")
        b = profile.latency
        clamp_note = " (B2 < 0 clamped to 0, B1 refit through the origin)" if b.b2_clamped else ""
        fits = "; ".join(
            f"{metric} A1={q.a1:.3g} A2={q.a2:.4g} A3={q.a3:.3g} A4={q.a4:.4g} R2={q.r2:.3f}"
            for metric, q in profile.quality.items()
        )
        print(
            f"{profile.name}: {fits} | B1={b.b1:.4g} s/step B2={b.b2:.4g} s R2={b.r2:.4f}"
            f"{clamp_note}"
        )
    print(f"sweep + fit: {time.perf_counter() - start_s:.0f} s on {device}")
    if args.mismatch:
        executor = executor or _executor(args)
        table = mismatch_matrix(executor, models, args.images, args.mismatch_steps, args.seed)
        table.round(2).to_csv(out / "mismatch_psnr.csv")
        plot_mismatch(table, out / "mismatch_psnr.png", args.mismatch_steps)
    print(f"total: {time.perf_counter() - start_s:.0f} s; wrote {out}")
    return 0


def parse_steps(text: str) -> list[int]:
    """The `--steps` grid: distinct whole numbers >= 0 (0 returns the masked input)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        steps = [int(item) for item in items]
    except ValueError:
        raise UsageError(
            f"--steps {text}: expected comma-separated whole step counts >= 0, e.g. 1,2,5,10"
        ) from None
    if negative := [count for count in steps if count < 0]:
        raise UsageError(f"--steps {text}: step counts must be >= 0, got {negative[0]}")
    if len(set(steps)) < len(steps):
        repeated = next(count for count in steps if steps.count(count) > 1)
        raise UsageError(f"--steps {text}: {repeated} is listed twice; list each count once")
    return steps


def _check_inputs(
    args: argparse.Namespace, steps: Sequence[int]
) -> tuple[list[str], pd.DataFrame | None]:
    """Check every flag and input file before anything is written; returns the models to
    calibrate (zoo names or folders; profile labels with --measurements) and the measurements
    to refit (None: sweep)."""
    from edge_node.zoo import resolve_model_dir, zoo_names
    from ue_emulator.sources import SOURCE_LOADERS

    for flag, value, minimum in (
        ("--images", args.images, 1),
        ("--batch", args.batch, 1),
        ("--seed", args.seed, 0),
        ("--threads", args.threads, 1),
        ("--jump-length", args.jump_length, 1),
        ("--jump-n-sample", args.jump_n_sample, 1),
        ("--mismatch-steps", args.mismatch_steps, 1),
    ):
        require_at_least(value, minimum, flag)
    check_source(args.source, list(SOURCE_LOADERS))
    check_device(args.device)
    if args.dtype != "float32":
        from edge_node.executor import check_dtype, resolve_device

        try:
            check_dtype(args.dtype, resolve_device(args.device))
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None  # "--dtype float16 on cpu: ..."
    requested = _model_list(args.models)
    measurements = None
    if args.measurements is not None:
        measurements = read_measurements(args.measurements)
        models = requested or list(measurements["model"].unique())
        _check_refit_models(measurements, models, args.measurements)
    else:
        models = requested or zoo_names()
        if not models:
            raise UsageError(
                "--models not given and the zoo has no trained model: "
                "train it first (`testbed zoo train`) or name checkpoint folders"
            )
        _check_fit_steps(steps)
        _check_labels(models)
        for model in models:
            _check_model(model, steps)
    if args.mismatch:
        if not_zoo := [model for model in models if model not in SOURCE_LOADERS]:
            raise UsageError(
                f"--mismatch needs zoo models (their sources are the rows), not "
                f"{', '.join(not_zoo)}; allowed: {', '.join(SOURCE_LOADERS)}"
            )
        for model in models:
            _check_model(model, [args.mismatch_steps], flag="--mismatch-steps")
    if args.overwrite:
        inputs: list[Path] = []
        if measurements is None or args.mismatch:
            inputs += [resolve_model_dir(model) for model in models]
        if args.measurements is not None:
            inputs.append(args.measurements)
        if inside := [path for path in inputs if _is_within(path, args.out)]:
            raise UsageError(
                f"--out {args.out} holds the input {inside[0]}: --overwrite would delete it; "
                "write to another folder"
            )
    check_out_dir(args.out, overwrite=args.overwrite)
    return models, measurements


def _model_list(text: str | None) -> list[str]:
    models = [item.strip() for item in (text or "").split(",") if item.strip()]
    if len(set(models)) < len(models):
        repeated = next(model for model in models if models.count(model) > 1)
        raise UsageError(f"--models {text}: {repeated} is listed twice; list each model once")
    return models


def _check_fit_steps(steps: Sequence[int]) -> None:
    fitted = sorted({count for count in steps if count >= 1})
    if len(fitted) < MIN_FIT_STEP_COUNTS:
        raise UsageError(
            f"--steps {','.join(map(str, steps))}: eqs. (7)-(8) need at least "
            f"{MIN_FIT_STEP_COUNTS} distinct step counts >= 1, got {len(fitted)}"
        )


def _check_labels(models: Sequence[str]) -> None:
    """Each model's profile is named after it (a folder after its basename): names must differ."""
    seen: dict[str, str] = {}
    for model in models:
        label = model_label(model)
        if not label:
            raise UsageError(f"--models {model}: give the folder by a path ending in its name")
        if label in seen:
            raise UsageError(
                f"--models: {seen[label]} and {model} would both be profiled as {label!r}; "
                "give each model a distinct folder name"
            )
        seen[label] = model


def _check_model(model: str, steps: Sequence[int], flag: str = "--steps") -> None:
    """A zoo name or checkpoint folder that loads, and step counts its scheduler can run."""
    from edge_node.zoo import check_checkpoint, num_train_timesteps

    try:
        model_dir = check_checkpoint(model)
    except CheckpointError as exc:
        raise CheckpointError(f"--models {model}: {exc}") from None
    limit = num_train_timesteps(model_dir)
    if steps and max(steps) > limit:
        raise UsageError(
            f"{flag} {max(steps)}: model {model} was trained with {limit} timesteps, "
            f"so RePaint runs at most {limit} steps on it"
        )


def read_measurements(path: Path) -> pd.DataFrame:
    """A measurements.csv to refit, checked: it parses, has the columns a refit reads, and its
    step counts, quality measures and latencies are finite numbers (step counts whole and
    >= 0). Files written before the hole MAE existed have TV only, and refit on it alone."""
    flag = f"--measurements {path}"
    if not path.is_file():
        raise UsageError(f"{flag} does not exist (or is not a file)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag} is not a CSV table ({' '.join(str(exc).split())})") from None
    if missing := [column for column in REFIT_COLUMNS if column not in frame.columns]:
        raise UsageError(
            f"{flag} lacks column(s) {', '.join(missing)}; a refit reads "
            f"{', '.join(REFIT_COLUMNS)} (as `testbed calibrate` writes them)"
        )
    if frame.empty:
        raise UsageError(f"{flag} has no rows")
    optional = [m for m in QUALITY_MEASURES if m in frame.columns and m not in REFIT_COLUMNS]
    for column in ("steps", "tv", "latency_s", *optional):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if column == "steps":
            bad |= (values < 0) | (values % 1 != 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise UsageError(
                f"{flag}: {column} is '{frame[column].iloc[row]}' on line {row + 2}; "
                f"expected a finite number{' (whole, >= 0)' if column == 'steps' else ''}"
            )
    frame["model"] = frame["model"].astype(str)
    return frame


def _check_refit_models(measurements: pd.DataFrame, models: Sequence[str], path: Path) -> None:
    known = list(measurements["model"].unique())
    if unknown := [model for model in models if model not in known]:
        raise UsageError(
            f"--models {', '.join(unknown)}: not in --measurements {path}; "
            f"it has {', '.join(known)}"
        )
    for model in models:
        steps = measurements.loc[measurements["model"] == model, "steps"]
        fitted = steps[steps >= 1].nunique()
        if fitted < MIN_FIT_STEP_COUNTS:
            raise UsageError(
                f"--measurements {path}: model {model} has {fitted} distinct step count(s) "
                f">= 1; eqs. (7)-(8) need at least {MIN_FIT_STEP_COUNTS}"
            )


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _fit(measurements: pd.DataFrame, labels: Sequence[str], context: str) -> list[ModelProfile]:
    """Fit eqs. (7)-(8) per model; a model whose data admit no fit (latency that does not grow
    with steps) is one line naming it, and `context` says where the data are."""
    profiles = []
    for label in labels:
        try:
            profiles.append(fit_model(measurements, label))
        except ValueError as exc:
            raise TestbedError(f"model {label}: {exc}; {context}") from None
    return profiles


def _executor(args: argparse.Namespace) -> RePaintExecutor:
    import torch

    from edge_node.executor import RePaintExecutor

    if args.threads:
        torch.set_num_threads(args.threads)
    return RePaintExecutor(
        device=args.device,
        jump_length=args.jump_length,
        jump_n_sample=args.jump_n_sample,
        dtype=args.dtype,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: `python -m calibration.cli {calibrate,zoo} ...`."""
    parser = argparse.ArgumentParser(prog="python -m calibration.cli")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except TestbedError as exc:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

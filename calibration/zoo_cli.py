"""`testbed zoo ...`: train, list and evaluate the model zoo (offline tools). Handlers import
torch lazily, so importing this module (and building the `testbed` parser) stays torch-free.

`calibration.cli.register` adds the `zoo` command through `add_zoo_command`; each leaf parser
sets `handler`, a callable taking the parsed `argparse.Namespace` and returning an exit code.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.core.errors import CheckpointError, UsageError
from testbed.core.outputs import check_out_dir, check_out_file

if TYPE_CHECKING:
    from edge_node.zoo import ZooEntry

DEFAULT_TRAIN_MINUTES = 4.3
HELDOUT_IMAGES = 16
HELDOUT_SEED = 12345


def add_zoo_command(subparsers: argparse._SubParsersAction) -> None:
    """Add `zoo {train,list,evaluate}` to a parent parser's subparsers."""
    from edge_node.zoo import ZOO_DIR

    zoo = subparsers.add_parser("zoo", help="the RePaint model zoo (train, list, evaluate)")
    zoo.add_argument(
        "--zoo-dir", type=Path, default=ZOO_DIR, help="zoo folder (manifest.json, models/)"
    )
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)

    train = zoo_commands.add_parser("train", help="train zoo models on their shipped sources")
    train.add_argument("--source", help="train only this source (default: all 10)")
    train.add_argument(
        "--minutes",
        type=float,
        help=f"wall-clock budget per model (default: {DEFAULT_TRAIN_MINUTES:g} unless --steps)",
    )
    train.add_argument(
        "--steps",
        type=int,
        help="optimiser steps per model (no time budget unless --minutes is given too; with "
        "both, whichever ends first)",
    )
    train.add_argument("--seed", type=int, default=0, help="model i (zoo order) uses seed S + i")
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    train.add_argument(
        "--eval-images", type=int, default=HELDOUT_IMAGES, help="held-out requests for PSNR"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="retrain models the zoo already holds, replacing their folders and manifest entries",
    )
    train.set_defaults(handler=_train)

    listing = zoo_commands.add_parser("list", help="print the zoo manifest as a table")
    listing.set_defaults(handler=_list)

    evaluate = zoo_commands.add_parser(
        "evaluate", help="measure held-out PSNR of zoo models and store it in the manifest"
    )
    evaluate.add_argument("--source", help="evaluate only this model (default: all trained)")
    evaluate.add_argument("--images", type=int, default=HELDOUT_IMAGES)
    evaluate.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    evaluate.set_defaults(handler=_evaluate)


def require_at_least(value: float | None, minimum: float, flag: str) -> None:
    """Refuse a numeric flag below `minimum` (None: the flag was not given)."""
    if value is not None and not value >= minimum:
        raise UsageError(f"{flag} = {value:g}: allowed >= {minimum:g}")


def check_source(name: str | None, allowed: Sequence[str], flag: str = "--source") -> None:
    """Refuse a source or model name that is not one of `allowed` (None: not given)."""
    if name is not None and name not in allowed:
        raise UsageError(f"{flag} {name}: unknown; allowed: {', '.join(allowed) or 'none'}")


def check_device(device: str | None, flag: str = "--device") -> None:
    """Refuse a device torch cannot parse or does not see (imports torch only when given)."""
    if device is None:
        return
    from edge_node.executor import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise UsageError(f"{flag} {device}: {exc}") from None


def check_zoo_checkpoint(zoo_dir: Path, name: str) -> None:
    """Refuse a manifest entry whose model folder is missing or not a loadable checkpoint."""
    from edge_node.zoo import check_checkpoint

    model_dir = zoo_dir / "models" / name
    if not model_dir.is_dir():
        raise CheckpointError(f"--zoo-dir {zoo_dir}: model {name} has no folder {model_dir}")
    try:
        check_checkpoint(model_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"--zoo-dir {zoo_dir}: model {name}: {exc}") from None


def _zoo_manifest(zoo_dir: Path) -> list[ZooEntry]:
    """The entries of `zoo_dir`'s manifest (empty if it has none); refuses a file as the zoo."""
    from edge_node.zoo import read_manifest

    if zoo_dir.exists() and not zoo_dir.is_dir():
        raise UsageError(f"--zoo-dir {zoo_dir} is a file, not a folder")
    return read_manifest(zoo_dir / "manifest.json")


def _train(args: argparse.Namespace) -> int:
    from ue_emulator.sources import SOURCE_LOADERS

    zoo_dir: Path = args.zoo_dir
    entries = _zoo_manifest(zoo_dir)
    check_out_dir(zoo_dir, flag="--zoo-dir", resume=True)
    check_source(args.source, list(SOURCE_LOADERS))
    if args.minutes is None and args.steps is None:
        args.minutes = DEFAULT_TRAIN_MINUTES
    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise UsageError(f"--minutes = {args.minutes:g}: allowed a finite number > 0")
    require_at_least(args.steps, 1, "--steps")
    require_at_least(args.seed, 0, "--seed")
    require_at_least(args.threads, 1, "--threads")
    require_at_least(args.eval_images, 1, "--eval-images")
    names = [args.source] if args.source else list(SOURCE_LOADERS)
    trained = {entry.name for entry in entries}
    models_dir = zoo_dir / "models"
    existing = [n for n in names if n in trained or _non_empty(models_dir / n)]
    if existing and not args.overwrite:
        raise UsageError(
            f"--zoo-dir {zoo_dir} already holds trained model(s) {', '.join(existing)}: "
            "pass --overwrite to retrain and replace them"
        )
    _train_names(args, zoo_dir, names)
    return 0


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _train_names(args: argparse.Namespace, zoo_dir: Path, names: Sequence[str]) -> None:
    """Train each model into a staging folder, then swap it in whole and update the manifest:
    an interrupted or diverged training leaves the previous model and its entry untouched."""
    import shutil

    import torch

    from calibration.zoo_training import (
        ZooTrainConfig,
        check_finite,
        train_model,
        upsert_zoo_manifest,
    )
    from ue_emulator.sources import SOURCE_LOADERS

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in names:
        index = list(SOURCE_LOADERS).index(name)
        config = ZooTrainConfig(
            source=name, seed=args.seed + index, max_steps=args.steps, max_minutes=args.minutes
        )
        model_dir = zoo_dir / "models" / name
        staging = model_dir.with_name(f".{name}.training-{os.getpid()}")
        try:
            entry = train_model(config, staging)
            check_finite(entry)
            _swap_in(staging, model_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        upsert_zoo_manifest(entry, zoo_dir / "manifest.json")
        print(f"{name}: {entry.training_steps} steps, loss {entry.final_loss:.4f}")
        _evaluate_names(zoo_dir, [name], args.eval_images, device=None)


def _swap_in(staging: Path, model_dir: Path) -> None:
    """Put the folder `staging` at `model_dir`, replacing whatever was there whole."""
    import shutil

    if not model_dir.exists():
        staging.rename(model_dir)
        return
    retired = model_dir.with_name(f".{model_dir.name}.replaced-{os.getpid()}")
    model_dir.rename(retired)
    staging.rename(model_dir)
    if retired.is_dir():
        shutil.rmtree(retired)
    else:
        retired.unlink()


def _evaluate(args: argparse.Namespace) -> int:
    zoo_dir: Path = args.zoo_dir
    entries = _zoo_manifest(zoo_dir)
    if not entries:
        raise UsageError(
            f"--zoo-dir {zoo_dir} has no trained model (no manifest entry): "
            "run `testbed zoo train` first"
        )
    check_source(args.source, [entry.name for entry in entries])
    require_at_least(args.images, 1, "--images")
    check_device(args.device)
    names = [args.source] if args.source else [entry.name for entry in entries]
    for name in names:
        check_zoo_checkpoint(zoo_dir, name)
    check_out_file(zoo_dir / "manifest.json", flag="--zoo-dir", overwrite=True)
    _evaluate_names(zoo_dir, names, args.images, args.device)
    return 0


def _evaluate_names(zoo_dir: Path, names: Sequence[str], images: int, device: str | None) -> None:
    from dataclasses import replace

    from calibration.evaluation import mean_psnr_db
    from calibration.zoo_training import upsert_zoo_manifest
    from edge_node.executor import RePaintExecutor
    from edge_node.zoo import REFERENCE_STEPS, read_manifest

    manifest_path = zoo_dir / "manifest.json"
    executor = RePaintExecutor(device=device)
    entries = {entry.name: entry for entry in read_manifest(manifest_path)}
    for name in names:
        model_dir = zoo_dir / "models" / name
        psnr_db = mean_psnr_db(executor, model_dir, name, images, REFERENCE_STEPS, HELDOUT_SEED)
        entry = replace(entries[name], heldout_psnr_db=round(psnr_db, 2))
        upsert_zoo_manifest(entry, manifest_path)
        print(f"{name}: held-out PSNR {psnr_db:.2f} dB at {REFERENCE_STEPS} steps")


def _list(args: argparse.Namespace) -> int:
    entries = _zoo_manifest(args.zoo_dir)
    if not entries:
        print("no model trained yet: run `testbed zoo train`")
        return 1
    header = ("name", "params", "train steps", "train s", "loss", "MB on disk", "PSNR dB", "source")
    rows = [
        (
            e.name,
            f"{e.parameters:,}",
            str(e.training_steps),
            f"{e.training_time_s:.0f}",
            f"{e.final_loss:.4f}",
            f"{e.size_on_disk_bytes / 1e6:.2f}",
            "-" if e.heldout_psnr_db is None else f"{e.heldout_psnr_db:.2f}",
            e.source,
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0

"""`testbed zoo ...`: train, list and evaluate the model zoo (offline tools). Handlers import
torch lazily, so importing this module (and building the `testbed` parser) stays torch-free.

`calibration.cli.register` adds the `zoo` command through `add_zoo_command`; each leaf parser
sets `handler`, a callable taking the parsed `argparse.Namespace` and returning an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

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
        "--minutes", type=float, default=DEFAULT_TRAIN_MINUTES, help="wall-clock budget per model"
    )
    train.add_argument("--steps", type=int, help="optimiser steps per model (caps --minutes)")
    train.add_argument("--seed", type=int, default=0, help="model i (zoo order) uses seed S + i")
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    train.add_argument(
        "--eval-images", type=int, default=HELDOUT_IMAGES, help="held-out requests for PSNR"
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


def _train(args: argparse.Namespace) -> int:
    import torch

    from calibration.zoo_training import TrainConfig, train_model, upsert_manifest
    from ue_emulator.sources import SOURCE_LOADERS

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [args.source] if args.source else list(SOURCE_LOADERS)
    for name in names:
        index = list(SOURCE_LOADERS).index(name)
        config = TrainConfig(
            source=name, seed=args.seed + index, max_steps=args.steps, max_minutes=args.minutes
        )
        entry = train_model(config, args.zoo_dir / "models" / name)
        upsert_manifest(entry, args.zoo_dir / "manifest.json")
        print(f"{name}: {entry.training_steps} steps, loss {entry.final_loss:.4f}")
        _evaluate_names(args.zoo_dir, [name], args.eval_images, device=None)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from edge_node.zoo import zoo_names

    names = [args.source] if args.source else zoo_names(args.zoo_dir / "manifest.json")
    _evaluate_names(args.zoo_dir, names, args.images, args.device)
    return 0


def _evaluate_names(zoo_dir: Path, names: Sequence[str], images: int, device: str | None) -> None:
    from dataclasses import replace

    from calibration.evaluation import mean_psnr_db
    from calibration.zoo_training import upsert_manifest
    from edge_node.executor import RePaintExecutor
    from edge_node.zoo import REFERENCE_STEPS, read_manifest

    manifest_path = zoo_dir / "manifest.json"
    executor = RePaintExecutor(device=device)
    entries = {entry.name: entry for entry in read_manifest(manifest_path)}
    for name in names:
        model_dir = zoo_dir / "models" / name
        psnr_db = mean_psnr_db(executor, model_dir, name, images, REFERENCE_STEPS, HELDOUT_SEED)
        entry = replace(entries[name], heldout_psnr_db=round(psnr_db, 2))
        upsert_manifest(entry, manifest_path)
        print(f"{name}: held-out PSNR {psnr_db:.2f} dB at {REFERENCE_STEPS} steps")


def _list(args: argparse.Namespace) -> int:
    from edge_node.zoo import read_manifest

    entries = read_manifest(args.zoo_dir / "manifest.json")
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

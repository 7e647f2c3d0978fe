"""``testbed export``: the acting networks of a trained run (no critic, optimiser or
replay) in a small folder that ``--checkpoint`` accepts."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from testbed.commands.common import set_handler
from testbed.core.errors import UsageError
from testbed.runs.folder import CONFIG, TRAIN, RunFolder


@dataclass(frozen=True)
class ExportOptions:
    run: Path
    out: Path
    overwrite: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> ExportOptions:
        return cls(Path(namespace.run), Path(namespace.out), namespace.overwrite)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the acting networks of a trained run (no critic, optimiser or replay) "
        "into a small folder that --checkpoint accepts",
    )
    parser.add_argument("run", help="run folder of `testbed train`")
    parser.add_argument("--out", required=True, help="the new folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    set_handler(parser, ExportOptions.from_namespace, handle)


def handle(options: ExportOptions) -> int:
    run = RunFolder(options.run)
    if not (run.has(TRAIN) and run.has(CONFIG)):
        raise UsageError(
            f"{run.path}: not a run of `testbed train` (expected train.json, config.toml "
            "and checkpoint/)"
        )
    out = RunFolder.check_new(options.out, overwrite=options.overwrite)
    if out.resolve() == run.path.resolve():
        raise UsageError(f"--out {out} is the run itself: export into another folder")
    if options.overwrite and out.exists():
        shutil.rmtree(out)
    manifest = run.export(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{manifest['agent']} policy of episode {manifest['episode']} -> {out} ({size:,} bytes)")
    return 0

"""``testbed curves``: overlay the training curves of `testbed train` runs in one PNG, with
the plotted (smoothed) curves as a CSV beside it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from testbed.commands.common import set_handler
from testbed.core.errors import UsageError
from testbed.core.outputs import check_out_file
from testbed.runs.folder import RunFolder

METRICS = "metrics.csv"


@dataclass(frozen=True)
class CurvesOptions:
    runs: tuple[Path, ...]
    metric: str
    window: int
    """Moving-average window, in episodes."""
    out: Path
    overwrite: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> CurvesOptions:
        return cls(
            tuple(Path(run) for run in namespace.runs),
            namespace.metric,
            namespace.window,
            Path(namespace.out),
            namespace.overwrite,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "curves", help="overlay the training curves of `testbed train` runs"
    )
    parser.add_argument("runs", nargs="+", help="run folders of `testbed train`")
    parser.add_argument("--metric", default="mean_slot_reward", help="a column of metrics.csv")
    parser.add_argument("--window", type=int, default=10, help="moving-average window (episodes)")
    parser.add_argument("--out", default="curves.png", help="PNG (its CSV is written beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    set_handler(parser, CurvesOptions.from_namespace, handle)


def handle(options: CurvesOptions) -> int:
    from testbed.lab.experiments import plot_training_curves

    out = check_out_file(options.out, overwrite=options.overwrite)
    table = out.with_suffix(".csv")
    check_out_file(table, flag="--out (its CSV)", overwrite=options.overwrite)
    for run in options.runs:
        if not RunFolder(run).has(METRICS):
            raise UsageError(f"{run}: not a run of `testbed train` (no metrics.csv)")
    curves = plot_training_curves(list(options.runs), out, options.metric, options.window)
    curves.to_csv(table, index_label="episode")
    print(f"-> {out}")
    return 0

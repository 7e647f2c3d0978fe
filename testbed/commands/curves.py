"""``testbed curves``: overlay the training curves of `testbed train` runs in one PNG, with
the plotted (smoothed) curves as a CSV beside it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from testbed.commands.common import add_count, set_handler
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
    add_count(parser, "--window", 10, "moving-average window (episodes)")
    parser.add_argument("--out", default="curves.png", help="PNG (its CSV is written beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    set_handler(parser, CurvesOptions.from_namespace, handle)


def handle(options: CurvesOptions) -> int:
    from testbed.lab.experiments import plot_training_curves

    out = check_out_file(options.out, overwrite=options.overwrite)
    check_image_format(out)
    table = out.with_suffix(".csv")
    check_out_file(table, flag="--out (its CSV)", overwrite=options.overwrite)
    for run in options.runs:
        if not RunFolder(run).has(METRICS):
            raise UsageError(f"{run}: not a run of `testbed train` (no metrics.csv)")
        columns = metric_columns(run / METRICS)
        if options.metric not in columns:
            raise UsageError(
                f"--metric {options.metric!r}: not a column of {run / METRICS}; "
                f"allowed {', '.join(columns)}"
            )
    curves = plot_training_curves(list(options.runs), out, options.metric, options.window)
    curves.to_csv(table, index_label="episode")
    print(f"-> {out}")
    return 0


def metric_columns(path: Path) -> list[str]:
    """The columns of the ``metrics.csv`` at ``path`` that a curve can plot: the numeric
    ones beside ``episode``; a `UsageError` naming the file when it cannot be read as one."""
    import pandas as pd

    try:
        metrics = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable metrics.csv ({exc})") from None
    if "episode" not in metrics:
        raise UsageError(f"{path}: not a metrics.csv of `testbed train` (no episode column)")
    numeric = metrics.select_dtypes("number")
    return [column for column in numeric.columns if column != "episode"]


def check_image_format(out: Path) -> None:
    """Refuse an ``--out`` whose suffix is no image format matplotlib writes."""
    from matplotlib.figure import Figure

    formats = sorted(set(Figure().canvas.get_supported_filetypes()) - {"csv"})
    if out.suffix.lower().removeprefix(".") not in formats:
        raise UsageError(f"--out {out}: an image file ending in one of .{', .'.join(formats)}")

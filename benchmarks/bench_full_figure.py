"""Wall time of a whole figure at the converged budget (e.g. Fig. 7 with 1 and 2 workers,
target <= 60 min with 2). Each worker count runs the same experiment into its own
folder under ``--out`` (kept: the first is the committed figure), one after the other on
the same machine; their numbers must agree (checked), only the wall time may differ. A
later call may add another worker count to the same ``--out`` (its ``workersN`` must not
exist yet): it is checked against, and reported beside, the counts already there.

    python benchmarks/bench_full_figure.py --experiment fig7 --preset best --episodes 100 \\
        --workers 2 1 --out runs/bench_fig7
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from testbed.lab.experiments import run_experiment
from testbed.lab.workers import TIMING
from testbed.runs.folder import RunFolder


def _numbers(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame = frame.drop(columns=[c for c in frame if c.startswith(("wall_s", "decision_ms"))])
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fig7", choices=["fig6a", "fig6b", "fig7", "fig8"])
    parser.add_argument("--preset", default="best")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for workers in args.workers:
        if (args.out / f"workers{workers}").exists():
            parser.error(f"--out {args.out}: workers{workers} exists; pass a new folder")
    times = {}
    for workers in args.workers:
        start = time.perf_counter()
        run_experiment(
            args.experiment,
            args.out / f"workers{workers}",
            quick=False,
            log=lambda message: print(message, flush=True),
            seeds=args.seeds,
            episodes=args.episodes,
            preset=args.preset,
            workers=workers,
        )
        times[workers] = time.perf_counter() - start
        print(f"{args.experiment}, {workers} worker(s): {times[workers] / 60:.1f} min", flush=True)
    for folder in sorted(args.out.glob("workers*")):  # the counts of earlier calls too
        workers = int(folder.name.removeprefix("workers"))
        timing = RunFolder(folder)
        if workers not in times and timing.has(TIMING):
            times[workers] = timing.read_json(TIMING)["wall_s"]
    csv = f"{args.experiment}.csv"
    first = _numbers(args.out / f"workers{args.workers[0]}" / csv)
    for workers in times:
        pd.testing.assert_frame_equal(_numbers(args.out / f"workers{workers}" / csv), first)
    print(
        f"{args.experiment} --preset {args.preset} --episodes {args.episodes} --seeds "
        f"{args.seeds}: wall time (same numbers with every worker count)"
    )
    for workers, seconds in times.items():
        print(f"  {workers} worker(s) {seconds / 60:8.1f} min")
    if 1 in times and len(times) > 1:
        for workers, seconds in times.items():
            if workers != 1:
                print(f"  speed-up of {workers} workers: x{times[1] / seconds:.2f}")


if __name__ == "__main__":
    main()

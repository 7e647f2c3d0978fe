"""Wall time of a whole figure at the converged budget (issue 12: Fig. 7 with 1 and 2
workers, target <= 60 min with 2). Each worker count runs the same experiment into its own
folder under ``--out`` (kept: the first is the committed figure), one after the other on
the same machine; their numbers must agree (checked), only the wall time may differ.

    python benchmarks/bench_full_figure.py --experiment fig7 --preset best --episodes 100 \\
        --workers 2 1 --out runs/bench_fig7
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from testbed.experiments import run_experiment


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
    parser.add_argument("--out", type=Path, required=True, help="a folder that does not exist")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"--out {args.out}: exists; pass a new folder")
    times = {}
    for workers in args.workers:
        start = time.perf_counter()
        run_experiment(
            args.experiment,
            args.out / f"workers{workers}",
            quick=False,
            log=print,
            seeds=args.seeds,
            episodes=args.episodes,
            preset=args.preset,
            workers=workers,
        )
        times[workers] = time.perf_counter() - start
        print(f"{args.experiment}, {workers} worker(s): {times[workers] / 60:.1f} min", flush=True)
    csv = f"{args.experiment}.csv"
    first = _numbers(args.out / f"workers{args.workers[0]}" / csv)
    for workers in args.workers[1:]:
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

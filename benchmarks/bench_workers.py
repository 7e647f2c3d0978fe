"""Wall time of an experiment's runs in one process, in a local pool of N processes and on
a local Ray instance with N CPUs: the overhead of the Ray path against the local pool.
Each path runs into a fresh folder, so all of them do the same work; the numbers
must agree (checked). One run each, side by side on the same machine.

    python benchmarks/bench_workers.py [--experiment fig8] [--workers 2] [--seeds 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from testbed.lab.experiments import run_experiment


def _timed(out: Path, args: argparse.Namespace, workers: int, ray: str = "") -> float:
    start = time.perf_counter()
    run_experiment(
        args.experiment,
        out,
        quick=True,
        log=lambda message: None,
        seeds=args.seeds,
        workers=workers,
        ray=ray,
    )
    return time.perf_counter() - start


def _numbers(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame if c.startswith(("wall_s", "decision_ms"))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fig8", choices=["fig7", "fig8"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = {
            "1 process": (root / "one", 1, ""),
            f"local pool, {args.workers} processes": (root / "pool", args.workers, ""),
            f"Ray, local instance with {args.workers} CPUs": (root / "ray", args.workers, "local"),
        }
        times = {name: _timed(out, args, w, ray) for name, (out, w, ray) in paths.items()}
        csv = f"{args.experiment}.csv"
        reference = _numbers(root / "one" / csv)
        for out, _, _ in paths.values():
            pd.testing.assert_frame_equal(_numbers(out / csv), reference)
    print(f"{args.experiment} --quick, {args.seeds} seed(s): wall time (same numbers on each path)")
    for name, seconds in times.items():
        print(f"  {name:<40s} {seconds:8.1f} s")
    pool, ray = list(times.values())[1:]
    print(f"Ray / local pool: x{ray / pool:.2f} ({ray - pool:+.1f} s)")


if __name__ == "__main__":
    main()

"""What each decision is worth on a scenario: the four figures of issue 17, item 4.

On the same worlds (seeds ``--seed .. --seed + --seeds - 1``), three policies:

* ``optimal``: the optimiser's cache and the optimiser's allocation;
* ``optimal+rcars``: the optimiser's cache, RCARS's even split of bandwidth and steps;
* ``rcars+optimal``: RCARS's random cache, the optimiser's allocation.

Printed: the step allocation's worth, 100 (G(optimal+rcars) / G(optimal) - 1) %; the cache's
worth, 100 (G(rcars+optimal) / G(optimal) - 1) % (G is lower-is-better, so both are positive
when the decision helps); the optimiser's hit ratio; and, live, the wall time of the
optimiser's run. Simulated with the simulator (``testbed compare``'s code); with ``--live``
also measured with ``testbed run`` (one run per policy and seed, nodes on this machine).

    python benchmarks/bench_tradeoffs.py [--config testbed/scenarios/live_cpu.toml]
        [--seeds 5] [--seed 1000] [--live] [--out DIR]

The live runs' folders are kept under ``--out`` (default: a temporary folder), so every
figure can be recomputed from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from testbed.core.config import load_config
from testbed.lab.compare import compare_policies
from testbed.live.options import LIVE_SCENARIO

POLICIES = ("optimal", "optimal+rcars", "rcars+optimal")


def figures(utility: dict[str, float], hit_ratio: float) -> dict[str, float]:
    """The four figures from the mean utilities of the three policies."""
    best = utility["optimal"]
    return {
        "allocation_worth_percent": 100.0 * (utility["optimal+rcars"] / best - 1.0),
        "cache_worth_percent": 100.0 * (utility["rcars+optimal"] / best - 1.0),
        "optimal_hit_ratio": hit_ratio,
        "optimal_utility": best,
    }


def simulated(config_path: Path, seeds: range) -> tuple[dict[str, float], pd.DataFrame]:
    config = load_config(config_path)
    table = compare_policies(config, list(POLICIES), list(seeds), 1)
    means = table.groupby("policy")[["utility", "hit_ratio"]].mean()
    utility = {policy: float(means.loc[policy, "utility"]) for policy in POLICIES}
    return figures(utility, float(means.loc["optimal", "hit_ratio"])), table


def measured(config_path: Path, seeds: range, out: Path) -> tuple[dict[str, float], pd.DataFrame]:
    rows = []
    for policy in POLICIES:
        for seed in seeds:
            run_dir = out / f"{policy.replace('+', '_')}_seed{seed}"
            command = [
                sys.executable, "-m", "testbed.cli", "run", "--policy", policy,
                "--config", str(config_path), "--seed", str(seed), "--gallery", "0",
                "--quiet", "--out", str(run_dir), "--overwrite",
            ]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            wall_s = time.perf_counter() - start
            summary = json.loads((run_dir / "summary.json").read_text())
            rows.append(
                {
                    "policy": policy,
                    "seed": seed,
                    "utility": summary["measured"]["utility"],
                    "simulated_utility": summary["simulated"]["utility"],
                    "hit_ratio": summary["measured"]["hit_ratio"],
                    "wall_s": wall_s,
                }
            )
    table = pd.DataFrame(rows)
    means = table.groupby("policy")[["utility", "hit_ratio", "wall_s"]].mean()
    utility = {policy: float(means.loc[policy, "utility"]) for policy in POLICIES}
    result = figures(utility, float(means.loc["optimal", "hit_ratio"]))
    result["optimal_wall_s"] = float(means.loc["optimal", "wall_s"])
    return result, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=LIVE_SCENARIO)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--live", action="store_true", help="also measure with testbed run")
    parser.add_argument("--out", type=Path, default=None, help="folder for the live runs")
    args = parser.parse_args()
    seeds = range(args.seed, args.seed + args.seeds)
    results = {}
    sim, table = simulated(args.config, seeds)
    results["simulated"] = sim
    print(table.groupby("policy")[["utility", "hit_ratio"]].mean().round(4).to_string())
    if args.live:
        out = args.out or Path(tempfile.mkdtemp(prefix="tradeoffs_"))
        live, live_table = measured(args.config, seeds, out)
        results["measured"] = live
        print(live_table.groupby("policy")[["utility", "hit_ratio", "wall_s"]].mean().round(4))
        print(f"live run folders: {out}")
    print(f"scenario {args.config}, seeds {seeds.start}..{seeds.stop - 1}")
    for kind, result in results.items():
        print(
            f"{kind}: step allocation worth {result['allocation_worth_percent']:.1f}% "
            f"(target >= 15), cache worth {result['cache_worth_percent']:.1f}% (target >= 5), "
            f"optimal hit ratio {result['optimal_hit_ratio']:.2f} (target >= 0.5)"
            + (
                f", optimal run {result['optimal_wall_s']:.0f} s"
                if "optimal_wall_s" in result
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Caching decision and training time per frame: the factored agent at M = 10 and M = 50
against the paper's DDQN at M = 10 (the target: at M = 50, 2^50 caches, it trains and
decides in the same time order as at M = 10).

A decision is s(t) -> cache that fits (11d): the DDQN's argmax over 2^M outputs amended by
Sec. 6.3.2; the factored agent's M values and the exact knapsack. A training step is one
frame's store plus ``updates_per_frame`` gradient steps. Medians of repeats, side by side.

    python benchmarks/bench_caching.py [--models 10 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from agents.t2drl import T2DRLAgents, TrainConfig
from testbed.core.config import ScenarioConfig

GAMMAS = (0.2, 0.5, 0.7)


def _agents(models: int, caching: str):
    config = ScenarioConfig().replace(**{"catalogue.num_models": models})
    preset = "best" if caching == "factored" else "default"
    return T2DRLAgents(config, TrainConfig(preset=preset)).caching


def decision_ms(models: int, caching: str, frames: int = 300, repeats: int = 5) -> float:
    """Median over repeats of the mean time of one greedy caching decision."""
    agent = _agents(models, caching)
    for gamma in GAMMAS * 5:  # warm-up
        agent.select(gamma, explore=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(frames):
            agent.select(GAMMAS[i % 3], explore=False)
        times.append((time.perf_counter() - start) / frames * 1e3)
    return statistics.median(times)


def update_ms(models: int, caching: str, frames: int = 100, repeats: int = 5) -> float:
    """Median over repeats of the mean time of one frame's store + updates."""
    agent = _agents(models, caching)
    rng = np.random.default_rng(0)
    for i in range(agent.config.batch_size * 2):
        agent.store(GAMMAS[i % 3], agent.select(GAMMAS[i % 3], True), -45.0, 0.5, False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(frames):
            cache = agent.select(GAMMAS[i % 3], explore=True)
            agent.store(GAMMAS[i % 3], cache, -45.0 + rng.normal(), GAMMAS[(i + 1) % 3], False)
            for _ in range(agent.config.updates_per_frame):
                agent.update()
        times.append((time.perf_counter() - start) / frames * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'agent':>10} {'M':>4} {'decision ms/frame':>18} {'training ms/frame':>18}")
    rows = [("ddqn", 10)] + [("factored", m) for m in args.models]
    results = {}
    for caching, models in rows:
        d = decision_ms(models, caching, repeats=args.repeats)
        u = update_ms(models, caching, repeats=args.repeats)
        results[(caching, models)] = (d, u)
        print(f"{caching:>10} {models:>4} {d:>18.3f} {u:>18.3f}")
    small, large = min(args.models), max(args.models)
    d_ratio = results[("factored", large)][0] / results[("factored", small)][0]
    u_ratio = results[("factored", large)][1] / results[("factored", small)][1]
    print(
        f"factored M={large} / M={small}: decision x{d_ratio:.2f}, training x{u_ratio:.2f} "
        "(target: the same order, i.e. < 10x)"
    )


if __name__ == "__main__":
    main()

"""Simulator throughput with random actions (target: >= 5,000 slots/s at the default scenario).

Three figures, measured side by side in one run, each the median of several repeats:
* core: World draws + amenders + eq. (2)-(10), (23) scoring (``SimulatedExecutor``);
* env:  ``testbed/ResourceAllocation-v0`` ``step`` with random actions (adds eq. (21));
* runner+trace: the runner with RCARS, writing the Parquet trace.

    python benchmarks/bench_simulator.py [--slots N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.rcars import EvenAllocation, RandomCaching
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.system_model import amend_bandwidth, amend_steps, served_at_edge
from testbed.sim.envs import ResourceAllocationEnv
from testbed.sim.executor import SimulatedExecutor
from testbed.sim.runner import run
from ue_emulator.world import World

TARGET_SLOTS_PER_S = 5000.0


def core_rate(config: ScenarioConfig, slots: int) -> float:
    world = World(config)
    executor = SimulatedExecutor(config, build_catalogue(config.catalogue))
    u = config.network.num_users
    rng = np.random.default_rng(0)
    actions = rng.random((slots, 2 * u))
    cache = np.zeros(config.catalogue.num_models, dtype=bool)
    cache[:4] = True
    k_max = config.timing.slots_per_frame
    world.reset(0)
    start = time.perf_counter()
    for i, action in enumerate(actions):
        if i % k_max == 0:
            world.begin_frame()
        slot = world.next_slot()
        b = amend_bandwidth(action[:u])
        xi = amend_steps(action[u:], served_at_edge(cache, slot.services))
        executor.execute(slot, cache, b, xi)
    return slots / (time.perf_counter() - start)


def env_rate(config: ScenarioConfig, slots: int) -> float:
    env = ResourceAllocationEnv(config)
    actions = np.random.default_rng(0).random((slots, 2 * config.network.num_users))
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        *_, truncated, _ = env.step(action)
        if truncated:
            env.reset()
    return slots / (time.perf_counter() - start)


def runner_rate(config: ScenarioConfig, slots: int) -> float:
    per_episode = config.timing.num_frames * config.timing.slots_per_frame
    episodes = max(1, slots // per_episode)
    catalogue = build_catalogue(config.catalogue)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run(
            config,
            RandomCaching(config, catalogue),
            EvenAllocation(config, catalogue),
            episodes,
            trace_path=Path(tmp) / "trace.parquet",
            catalogue=catalogue,
        )
        return episodes * per_episode / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = ScenarioConfig()
    results: dict[str, list[float]] = {"core": [], "env": [], "runner+trace": []}
    for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
        results["core"].append(core_rate(config, args.slots))
        results["env"].append(env_rate(config, args.slots))
        results["runner+trace"].append(runner_rate(config, args.slots))
    print(
        f"simulator throughput, U={config.network.num_users}, M={config.catalogue.num_models}, "
        f"{args.slots} slots x {args.repeats} repeats (median):"
    )
    for name, rates in results.items():
        median = statistics.median(rates)
        verdict = "meets" if median >= TARGET_SLOTS_PER_S else "misses"
        target = f"{verdict} the {TARGET_SLOTS_PER_S:.0f} slots/s target; "
        if name == "runner+trace":
            target = "for information; "
        spread = f"min {min(rates):.0f}, max {max(rates):.0f}"
        print(f"  {name:13s} {median:8.0f} slots/s  ({target}{spread})")


if __name__ == "__main__":
    main()

"""Decision time per slot of SCHRS's GA and of the exact optimiser (Table 3 of the paper).

Targets at U = 18: SCHRS <= 100 ms (the paper's Table 3 reports 1,128.7 ms) and
``OptimalAllocation.allocate`` <= 50 ms. Both run side by side (alternating calls) on the
same seeded slots of the default scenario with the SCHRS cache, at U = 10, 14 and 18; each
figure is the median over slots x repeats. Also printed, for context: the mean per-user
utility of the even split, the GA and the optimum on those slots, and the time
``OptimalCaching`` takes to precompute all popularity states (M = 10, exact enumeration).

    python benchmarks/bench_decision_time.py [--slots 10] [--repeats 3] [--samples 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from agents.optimal import OptimalAllocation, OptimalCaching
from agents.schrs import GeneticAllocation, StaticPopularCaching
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.records import SlotState
from testbed.core.system_model import even_allocation
from testbed.sim.executor import SimulatedExecutor
from ue_emulator.world import World, sample_slots

TARGET_GA_MS = 100.0
TARGET_OPTIMAL_MS = 50.0
PAPER_SCHRS_MS_AT_18 = 1128.7
USER_COUNTS = (10, 14, 18)


Allocation = tuple[np.ndarray, np.ndarray]


def _timed_ms(
    allocate: Callable[[SlotState, np.ndarray], Allocation], slot: SlotState, cache: np.ndarray
) -> tuple[float, Allocation]:
    start = time.perf_counter()
    result = allocate(slot, cache)
    return 1e3 * (time.perf_counter() - start), result


def decision_times(num_users: int, slots: int, repeats: int) -> dict[str, float]:
    """Median ms per slot of both policies, and the mean per-user utility of each allocation."""
    config = ScenarioConfig().replace(**{"network.num_users": num_users})
    catalogue = build_catalogue(config.catalogue)
    executor = SimulatedExecutor(config, catalogue)
    world = World(config)
    cache = StaticPopularCaching(config, catalogue).cache
    ga = GeneticAllocation(config, catalogue)
    ga.reset(np.random.SeedSequence(0))
    optimal = OptimalAllocation(config, catalogue)
    world.reset(0)
    ga_ms, optimal_ms = [], []
    utility: dict[str, list[float]] = {"even": [], "ga": [], "optimal": []}
    for k in range(slots):
        if k % config.timing.slots_per_frame == 0:
            world.begin_frame()
        slot = world.next_slot()
        for _ in range(repeats):
            elapsed_ms, ga_allocation = _timed_ms(ga.allocate, slot, cache)
            ga_ms.append(elapsed_ms)
            elapsed_ms, optimal_allocation = _timed_ms(optimal.allocate, slot, cache)
            optimal_ms.append(elapsed_ms)
        allocations = {
            "even": even_allocation(slot, cache),
            "ga": ga_allocation,
            "optimal": optimal_allocation,
        }
        for name, (b, xi) in allocations.items():
            utility[name].append(float(executor.execute(slot, cache, b, xi).utility.mean()))
    return {
        "ga_ms": statistics.median(ga_ms),
        "optimal_ms": statistics.median(optimal_ms),
        **{f"{name}_utility": float(np.mean(values)) for name, values in utility.items()},
    }


def caching_precompute_s(samples: int) -> float:
    """Wall time of ``OptimalCaching`` scoring every feasible cache at every popularity state."""
    config = ScenarioConfig()
    caching = OptimalCaching(
        config, build_catalogue(config.catalogue), sample_slots, samples=samples
    )
    start = time.perf_counter()
    for index in range(len(config.catalogue.popularity_states)):
        caching.scores(index)
    return time.perf_counter() - start


def _verdict(value: float, target: float) -> str:
    return "meets" if value <= target else "MISSES"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32, help="OptimalCaching sample slots")
    args = parser.parse_args()
    print(f"decision time per slot, median of {args.slots} slots x {args.repeats} repeats:")
    print("   U   SCHRS GA ms   optimal ms   mean G/user: even      GA  optimal")
    for num_users in USER_COUNTS:
        r = decision_times(num_users, args.slots, args.repeats)
        print(
            f"  {num_users:2d}  {r['ga_ms']:12.1f}  {r['optimal_ms']:11.2f}"
            f"   {r['even_utility']:16.2f}  {r['ga_utility']:6.2f}  {r['optimal_utility']:7.2f}"
        )
    print(
        f"targets at U={USER_COUNTS[-1]}: SCHRS <= {TARGET_GA_MS:.0f} ms "
        f"({_verdict(r['ga_ms'], TARGET_GA_MS)}; paper Table 3: {PAPER_SCHRS_MS_AT_18:,.1f} ms), "
        f"optimal <= {TARGET_OPTIMAL_MS:.0f} ms ({_verdict(r['optimal_ms'], TARGET_OPTIMAL_MS)})"
    )
    precompute_s = caching_precompute_s(args.samples)
    print(
        f"OptimalCaching precompute, all popularity states, {args.samples} samples each: "
        f"{precompute_s:.2f} s (informative)"
    )


if __name__ == "__main__":
    main()

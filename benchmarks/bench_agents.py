"""Decision time per slot of D3PG (L=5) and DDPG, and T2DRL training throughput.

Targets (this CPU): D3PG <= 1.5 ms per slot (the paper's Table 3: 1.1 ms on an RTX A5000),
DDPG <= 0.5 ms; training of the default scenario's H = 500 episodes in <= 20 minutes,
i.e. >= 41.7 slots/s including the updates. Medians over repeats, measured side by side.

    python benchmarks/bench_agents.py [--users 10 14 18] [--train-episodes 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from agents.t2drl import LearnedAllocation, T2DRLAgents, TrainConfig
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.system_model import popular_cache
from testbed.training import train
from ue_emulator.world import World

TARGET_MS = {"t2drl": 1.5, "ddpg-t2drl": 0.5}
H_DEFAULT, TARGET_TRAIN_S = 500, 20 * 60


def decision_ms(agent: str, users: int, slots: int = 200, repeats: int = 5) -> float:
    """Median over repeats of the mean wall time of ``allocate`` (state -> amended b, xi)."""
    config = ScenarioConfig().replace(**{"network.num_users": users})
    catalogue = build_catalogue(config.catalogue)
    agents = T2DRLAgents(config, TrainConfig(agent=agent))
    policy = LearnedAllocation(agents.allocator, config, catalogue, agent)
    world = World(config)
    world.reset(0)
    frame = world.begin_frame()
    cache = popular_cache(config, catalogue, frame.gamma)
    slot = world.next_slot()
    for _ in range(20):  # warm-up: first calls pay for allocator and kernel set-up
        policy.allocate(slot, cache)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(slots):
            policy.allocate(slot, cache)
        times.append((time.perf_counter() - start) / slots * 1e3)
    return statistics.median(times)


def training_rate(agent: str, episodes: int) -> float:
    """Slots per second of Algorithm 1 with updates every slot (after the warm-up)."""
    config = ScenarioConfig()
    slots = config.timing.num_frames * config.timing.slots_per_frame
    # a short warm-up so that nearly every measured slot carries an update, as in a long run
    settings = TrainConfig(
        agent=agent, episodes=episodes, allocator={"warmup": 128}, checkpoint_every=10_000
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(settings, config, tmp)
        return episodes * slots / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10, 12, 14, 16, 18])
    parser.add_argument("--train-episodes", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("decision time per slot (ms, median of 5 x 200 slots; state -> amended allocation)")
    print(f"{'U':>4} {'t2drl (D3PG)':>14} {'ddpg-t2drl':>12}")
    for users in args.users:
        d3pg, ddpg = decision_ms("t2drl", users), decision_ms("ddpg-t2drl", users)
        print(f"{users:>4} {d3pg:>14.3f} {ddpg:>12.3f}")
    print(f"targets: D3PG <= {TARGET_MS['t2drl']} ms, DDPG <= {TARGET_MS['ddpg-t2drl']} ms")
    for agent in ("t2drl", "ddpg-t2drl"):
        rate = training_rate(agent, args.train_episodes)
        full_min = H_DEFAULT * 100 / rate / 60
        verdict = "meets" if full_min * 60 <= TARGET_TRAIN_S else "misses"
        print(
            f"training {agent}: {rate:.0f} slots/s with updates -> H=500 in {full_min:.1f} min "
            f"({verdict} the 20 min target)"
        )


if __name__ == "__main__":
    main()

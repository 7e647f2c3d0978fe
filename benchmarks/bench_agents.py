"""Decision time per slot of D3PG (L=5) and DDPG, and T2DRL training throughput.

Targets (this CPU): D3PG <= 1.5 ms per slot (the paper's Table 3: 1.1 ms on an RTX A5000),
DDPG <= 0.5 ms, the `best` preset's allocator <= 1 ms (issue 11); training of the default
scenario's H = 500 episodes in <= 20 minutes with the `default` preset (i.e. >= 41.7 slots/s
including the updates) and <= 10 minutes with `best`. Medians over repeats, measured side
by side; the training figure is extrapolated from ``--train-episodes`` episodes.

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
from testbed.training.trainer import train
from ue_emulator.world import World

TARGET_MS = {"t2drl": 1.5, "ddpg-t2drl": 0.5}
TARGET_BEST_MS = 1.0
H_DEFAULT = 500
TARGET_TRAIN_S = {"default": 20 * 60, "best": 10 * 60}


def decision_ms(
    agent: str, users: int, preset: str = "default", slots: int = 200, repeats: int = 5
) -> float:
    """Median over repeats of the mean wall time of ``allocate`` (state -> amended b, xi)."""
    config = ScenarioConfig().replace(**{"network.num_users": users})
    catalogue = build_catalogue(config.catalogue)
    train_config = TrainConfig(agent=agent, preset=preset)
    agents = T2DRLAgents(config, train_config)
    policy = LearnedAllocation(
        agents.allocator, config, catalogue, agent, train_config.steps_amender
    )
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


def training_rate(agent: str, episodes: int, preset: str = "default") -> float:
    """Slots per second of Algorithm 1 with updates every slot (after the warm-up)."""
    config = ScenarioConfig()
    slots = config.timing.num_frames * config.timing.slots_per_frame
    # a short warm-up so that nearly every measured slot carries an update, as in a long run
    settings = TrainConfig(
        agent=agent,
        preset=preset,
        episodes=episodes,
        allocator={"warmup": 128},
        checkpoint_every=10_000,
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
    columns = [(a, p) for p in ("default", "best") for a in ("t2drl", "ddpg-t2drl")]
    print(f"{'U':>4} " + " ".join(f"{f'{a} ({p})':>20}" for a, p in columns))
    for users in args.users:
        times = [decision_ms(a, users, p) for a, p in columns]
        print(f"{users:>4} " + " ".join(f"{t:>20.3f}" for t in times))
    print(
        f"targets: D3PG <= {TARGET_MS['t2drl']} ms, DDPG <= {TARGET_MS['ddpg-t2drl']} ms, "
        f"the best preset's allocator <= {TARGET_BEST_MS} ms"
    )
    for preset in ("default", "best"):
        for agent in ("t2drl", "ddpg-t2drl"):
            rate = training_rate(agent, args.train_episodes, preset)
            full_s = H_DEFAULT * 100 / rate
            target = TARGET_TRAIN_S[preset]
            verdict = "meets" if full_s <= target else "misses"
            print(
                f"training {agent} ({preset}): {rate:.0f} slots/s with updates -> H=500 in "
                f"{full_s / 60:.1f} min ({verdict} the {target // 60} min target)"
            )


if __name__ == "__main__":
    main()

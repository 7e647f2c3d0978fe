"""The two-timescale runner: H episodes x T frames x K slots with any pair of policies.

Episode ``e`` of run seed ``s`` always plays the same world (``episode_seed(s, e)``), and the
policies are reseeded from the same pair, so two policies meet identical users, channels
and requests, and one seed reproduces a run exactly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from testbed.config import ModelCatalogue, ScenarioConfig
from testbed.simulator import AllocationPolicy, CachingPolicy, Simulator, check_allocation
from testbed.system_model import frame_reward
from testbed.traces import TraceWriter, slot_rows
from ue_emulator.world import episode_seed


@dataclass(frozen=True)
class RunSummary:
    """Averages over every user-slot of a run (``utility`` is eq. (11))."""

    caching_policy: str
    allocation_policy: str
    episodes: int
    seed: int
    slots: int
    utility: float
    hit_ratio: float
    violation_rate: float
    mean_slot_reward: float
    mean_frame_reward: float
    mean_delay_s: float
    mean_tv: float
    decision_ms_per_slot: float
    caching_ms_per_frame: float
    overfull_frames: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


EVAL_SEED_OFFSET = 1000
"""Learned policies are evaluated on run seed ``seed + 1000``: worlds their training never saw
(training worlds use ``[seed, episode, 7]``, evaluated episodes ``[seed + 1000, episode]``)."""


def policy_seed(run_seed: int, episode: int, role: int) -> np.random.SeedSequence:
    """Seed of a policy's own draws in an episode (role 1: caching, 2: allocation)."""
    return np.random.SeedSequence([run_seed, episode, role])


class _Totals:
    def __init__(self) -> None:
        self.user_slots = 0
        self.slots = 0
        self.frames = 0
        self.utility = self.hits = self.violations = self.delay_s = self.tv = 0.0
        self.slot_reward = self.frame_reward = 0.0
        self.decision_s = self.caching_s = 0.0
        self.overfull = 0


def run(
    config: ScenarioConfig,
    caching: CachingPolicy,
    allocation: AllocationPolicy,
    episodes: int,
    trace_path: str | Path | None = None,
    catalogue: ModelCatalogue | None = None,
    progress: bool = False,
) -> tuple[RunSummary, TraceWriter]:
    """Play ``episodes`` episodes; write the trace (if a path is given) as it goes.

    Allocations are checked against (11b)-(11g) every slot; a cache that breaks (11d) is
    played as decided and counted in ``overfull_frames`` (the frame reward carries Xi).
    The writer is closed on return and also when the run is interrupted, so every row of
    every finished slot is kept.
    """
    if episodes < 1:
        raise ValueError(f"episodes = {episodes} is out of range: allowed [1, inf)")
    sim = Simulator(config, catalogue)
    frames, slots = config.timing.num_frames, config.timing.slots_per_frame
    capacity_gb = config.catalogue.cache_capacity_gb
    totals = _Totals()
    writer = TraceWriter(trace_path)
    bar = tqdm(total=episodes * frames * slots, unit="slot", disable=not progress, leave=False)
    try:
        for episode in range(episodes):
            sim.reset(episode_seed(config.seed, episode))
            caching.reset(policy_seed(config.seed, episode, 1))
            allocation.reset(policy_seed(config.seed, episode, 2))
            for _ in range(frames):
                frame = sim.begin_frame()
                start = time.perf_counter()
                cache = np.asarray(caching.select_cache(frame), dtype=bool)
                totals.caching_s += time.perf_counter() - start
                totals.overfull += not sim.cache_fits(cache)
                rewards = np.empty(slots)
                for k in range(slots):
                    slot = sim.next_slot()
                    start = time.perf_counter()
                    b, xi = allocation.allocate(slot, cache)
                    totals.decision_s += time.perf_counter() - start
                    check_allocation(b, xi, sim.served_at_edge(slot, cache))
                    outcome = sim.evaluate(slot, cache, b, xi)
                    rewards[k] = outcome.reward
                    writer.add(slot_rows(episode, slot, sim.catalogue, b, xi, outcome))
                    totals.user_slots += len(b)
                    totals.utility += float(outcome.utility.sum())
                    totals.hits += float(outcome.cached.sum())
                    totals.violations += float(outcome.violation.sum())
                    totals.delay_s += float(outcome.total_s.sum())
                    totals.tv += float(outcome.tv.sum())
                    totals.slot_reward += float(outcome.reward)
                    totals.slots += 1
                    bar.update()
                totals.frame_reward += frame_reward(  # eq. (32)
                    rewards, cache, sim.catalogue.size_gb, capacity_gb, config.utility.frame_penalty
                )
                totals.frames += 1
            writer.flush()
    finally:
        bar.close()
        writer.close()
    n = totals.user_slots
    summary = RunSummary(
        caching_policy=caching.name,
        allocation_policy=allocation.name,
        episodes=episodes,
        seed=config.seed,
        slots=totals.slots,
        utility=totals.utility / n,
        hit_ratio=totals.hits / n,
        violation_rate=totals.violations / n,
        mean_slot_reward=totals.slot_reward / totals.slots,
        mean_frame_reward=totals.frame_reward / totals.frames,
        mean_delay_s=totals.delay_s / n,
        mean_tv=totals.tv / n,
        decision_ms_per_slot=1e3 * totals.decision_s / totals.slots,
        caching_ms_per_frame=1e3 * totals.caching_s / totals.frames,
        overfull_frames=totals.overfull,
    )
    return summary, writer

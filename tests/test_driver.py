"""The one frame/slot driver: its loop, its hooks and its bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from agents.rcars import EvenAllocation, RandomCaching
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.protocols import Hooks
from testbed.core.records import FrameStep, SlotStep
from testbed.core.seeding import episode_seed
from testbed.core.system_model import InfeasibleAllocation, frame_reward
from testbed.sim.executor import simulated_driver

SMALL = ScenarioConfig().replace(
    **{"network.num_users": 3, "timing.num_frames": 2, "timing.slots_per_frame": 4}
)


class Log(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.slots: list[SlotStep] = []
        self.frames: list[FrameStep] = []

    def on_episode_start(self, episode: int) -> None:
        self.events.append(("start", episode))

    def on_slot(self, step: SlotStep) -> None:
        self.events.append(("slot", step.slot.frame, step.slot.slot))
        self.slots.append(step)

    def on_frame_end(self, step: FrameStep) -> None:
        self.events.append(("frame", step.frame.frame, step.last))
        self.frames.append(step)

    def on_episode_end(self, episode: int) -> None:
        self.events.append(("end", episode))


def _play(episodes: int = 1) -> tuple[Log, object]:
    catalogue = build_catalogue(SMALL.catalogue)
    driver = simulated_driver(SMALL, catalogue)
    log = Log()
    driver.play(
        range(episodes),
        RandomCaching(SMALL, catalogue),
        EvenAllocation(SMALL, catalogue),
        world_seed=lambda e: episode_seed(SMALL.seed, e),
        hooks=[log],
    )
    return log, driver


def test_hooks_see_h_x_t_x_k_in_order() -> None:
    log, _ = _play(episodes=2)
    one_episode = [
        *[("slot", 0, k) for k in range(4)],
        ("frame", 0, False),
        *[("slot", 1, k) for k in range(4)],
        ("frame", 1, True),
    ]
    assert log.events == [
        ("start", 0),
        *one_episode,
        ("end", 0),
        ("start", 1),
        *one_episode,
        ("end", 1),
    ]


def test_frame_reward_is_eq_32_of_the_frames_slot_rewards() -> None:
    log, driver = _play()
    for t, frame in enumerate(log.frames[:2]):
        rewards = [float(s.outcome.reward) for s in log.slots[4 * t : 4 * t + 4]]
        np.testing.assert_array_equal(frame.slot_rewards, rewards)
        expected = frame_reward(
            np.array(rewards),
            frame.cache,
            driver.size_gb,
            SMALL.catalogue.cache_capacity_gb,
            SMALL.utility.frame_penalty,
        )
        assert frame.reward == expected
        assert frame.cache_fits  # RCARS fills the cache greedily under C


def test_the_same_seed_replays_the_same_episode() -> None:
    first, _ = _play()
    second, _ = _play()
    for a, b in zip(first.slots, second.slots, strict=True):
        np.testing.assert_array_equal(a.slot.channel_gain, b.slot.channel_gain)
        assert float(a.outcome.reward) == float(b.outcome.reward)


def test_step_by_step_api_keeps_the_bookkeeping() -> None:
    catalogue = build_catalogue(SMALL.catalogue)
    driver = simulated_driver(SMALL, catalogue)
    driver.begin_episode(0, 5)
    assert driver.frame_over and not driver.episode_over
    with pytest.raises(RuntimeError, match="begin a frame"):
        driver.next_slot()
    served_slots = 0
    while not driver.episode_over:
        if driver.frame_over:
            driver.next_frame()
            driver.use_cache(np.zeros(catalogue.num_models, dtype=bool))
        slot = driver.next_slot()
        driver.serve(slot, np.full(3, 1 / 3), np.zeros(3))
        served_slots += 1
    assert served_slots == SMALL.timing.num_frames * SMALL.timing.slots_per_frame
    assert driver.last_frame.last and driver.last_frame.frame.frame == 1


def test_infeasible_allocation_is_refused_before_it_is_served() -> None:
    catalogue = build_catalogue(SMALL.catalogue)
    driver = simulated_driver(SMALL, catalogue)
    driver.begin_episode(0, 5)
    driver.next_frame()
    driver.use_cache(np.zeros(catalogue.num_models, dtype=bool))
    slot = driver.next_slot()
    with pytest.raises(InfeasibleAllocation, match=r"\(11e\)"):
        driver.serve(slot, np.full(3, 0.5), np.zeros(3))
    with pytest.raises(InfeasibleAllocation, match=r"\(11g\)"):
        driver.serve(slot, np.full(3, 1 / 3), np.array([1.0, 0.0, 0.0]))

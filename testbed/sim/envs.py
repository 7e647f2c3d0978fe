"""Gymnasium environments for the two subproblems (Secs. 6.2.2 and 6.3.2).

* ``testbed/ResourceAllocation-v0``: one step per slot. Observation: the state of eq. (21)
  ``{h, phi, rho, d_in, d_op}`` (4U + M values), normalised into [0, 1] for learning; the
  raw values are in ``info["state"]``. Action: Box(2U) in [0, 1] holding the raw
  (b~, xi~), amended by Sec. 6.2.2 (``steps_amender="cap"``: steps rescaled only above L,
  see docs/agents.md). Reward: eq. (23). The cache of each frame comes from
  a caching callable (default: the most popular models at gamma_1 under the capacity).
* ``testbed/ModelCaching-v0``: one step per frame. Observation: gamma(t) of eq. (30).
  Action: Discrete(2^M), amended by Sec. 6.3.2. Reward: eq. (32). The K slots inside the
  frame are allocated by a pluggable allocation policy (default: the even split).

An episode is T frames (T x K slots); it ends by truncation. ``reset(seed=...)`` reseeds
the world, so one seed gives the identical episode. Both play the one frame/slot driver
(``testbed.sim.driver``) step by step; the observation is the core's eq. (21) codec.

Importing this module registers both ids with Gymnasium (registration lives here, in the
application layer, not in the core); ``gym.make("testbed.sim.envs:testbed/ModelCaching-v0")``
imports it on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.observation import ObservationCodec
from testbed.core.protocols import AllocationPolicy
from testbed.core.records import FrameState, SlotOutcome, SlotState
from testbed.core.seeding import env_allocation_seed
from testbed.core.system_model import (
    STEP_AMENDERS,
    amend_allocation,
    amend_cache,
    cache_fits,
    even_allocation,
    popular_cache,
    served_at_edge,
)
from testbed.sim.executor import simulated_driver


def outcome_info(outcome: SlotOutcome) -> dict[str, float]:
    return {
        "utility": float(outcome.utility.mean()),
        "hit_ratio": float(outcome.cached.mean()),
        "violation_rate": float(outcome.violation.mean()),
        "mean_delay_s": float(outcome.total_s.mean()),
        "mean_quality": float(outcome.quality.mean()),
    }


def _world_seed(env: gym.Env, seed: int | None) -> int:
    """The env's world seed: ``seed`` itself, else a draw from the env's own generator."""
    return int(seed) if seed is not None else int(env.np_random.integers(0, 2**63 - 1))


class ResourceAllocationEnv(gym.Env):
    """Slot-level environment of subproblem P2 (eq. (12))."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        config: ScenarioConfig | None = None,
        caching: Callable[[FrameState], np.ndarray] | None = None,
        steps_amender: str = "paper",
    ) -> None:
        self.config = config or ScenarioConfig()
        if steps_amender not in STEP_AMENDERS:
            raise ValueError(f"steps_amender = {steps_amender!r}: allowed {list(STEP_AMENDERS)}")
        self.steps_amender = steps_amender
        self.catalogue = build_catalogue(self.config.catalogue)
        self.driver = simulated_driver(self.config, self.catalogue, check=False)
        self.codec = ObservationCodec(self.config, self.catalogue)
        gamma_1 = self.config.catalogue.popularity_states[0]
        static = popular_cache(self.config, self.catalogue, gamma_1)
        self.caching = caching or (lambda frame: static)
        u = self.config.network.num_users
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.codec.size,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(2 * u,), dtype=np.float32)
        self._slot: SlotState | None = None

    def _advance(self) -> tuple[np.ndarray, dict[str, Any]]:
        if self.driver.frame_over:
            frame = self.driver.next_frame()
            self.driver.use_cache(self.caching(frame))
        self._slot = self.driver.next_slot()
        state = self.codec.raw(self._slot, self.driver.cache)
        info = {
            "state": state,
            "gamma": self._slot.gamma,
            "frame": self._slot.frame,
            "slot": self._slot.slot,
        }
        return self.codec.encode_raw(state), info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.driver.begin_episode(0, _world_seed(self, seed))
        self._slot = None
        return self._advance()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._slot is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=float)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape {action.shape} != {self.action_space.shape}")
        served = served_at_edge(self.driver.cache, self._slot.services)
        b, xi = amend_allocation(action, served, self.steps_amender)
        outcome = self.driver.serve(self._slot, b, xi)
        info: dict[str, Any] = {"b": b, "xi": xi, **outcome_info(outcome)}
        truncated = self.driver.episode_over
        if truncated:
            obs = self.codec.encode(self._slot, self.driver.cache)
        else:
            obs, next_info = self._advance()
            info.update(next_info)
        return obs, float(outcome.reward), False, truncated, info


class ModelCachingEnv(gym.Env):
    """Frame-level environment of subproblem P3 (eq. (13))."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self, config: ScenarioConfig | None = None, allocation: AllocationPolicy | None = None
    ) -> None:
        self.config = config or ScenarioConfig()
        self.catalogue = build_catalogue(self.config.catalogue)
        self.driver = simulated_driver(self.config, self.catalogue, check=False)
        self.allocation = allocation
        states = self.config.catalogue.popularity_states
        self.observation_space = spaces.Box(0.0, float(max(states)), shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2**self.catalogue.num_models)
        self._frame: FrameState | None = None

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        assert self._frame is not None
        obs = np.array([self._frame.gamma], dtype=np.float32)  # eq. (30)
        return obs, {"frame": self._frame.frame, "popularity_index": self._frame.popularity_index}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        world_seed = _world_seed(self, seed)
        self.driver.begin_episode(0, world_seed)
        if self.allocation is not None:
            self.allocation.reset(env_allocation_seed(world_seed))
        self._frame = self.driver.next_frame()
        return self._observe()

    def _allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.allocation is None:
            return even_allocation(slot, cache)
        return self.allocation.allocate(slot, cache)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        cache = amend_cache(int(action), self.catalogue.num_models)  # Sec. 6.3.2
        self.driver.use_cache(cache)
        utilities, hits = [], []
        for _ in range(self.config.timing.slots_per_frame):
            slot = self.driver.next_slot()
            b, xi = self._allocate(slot, cache)
            outcome = self.driver.serve(slot, b, xi)
            utilities.append(outcome.utility.mean())
            hits.append(outcome.cached.mean())
        frame = self.driver.last_frame  # eq. (32)
        assert frame is not None
        info: dict[str, Any] = {
            "cache": cache.copy(),
            "cache_fits": cache_fits(
                cache, self.catalogue.size_gb, self.config.catalogue.cache_capacity_gb
            ),
            "utility": float(np.mean(utilities)),
            "hit_ratio": float(np.mean(hits)),
            "mean_slot_reward": float(frame.slot_rewards.mean()),
        }
        truncated = self.driver.episode_over
        if not truncated:
            self._frame = self.driver.next_frame()
        obs, frame_info = self._observe()
        info.update(frame_info)
        return obs, frame.reward, False, truncated, info


def register_envs() -> None:
    """Register both environments with Gymnasium (idempotent; done when this module loads)."""
    for env_id, entry in (
        ("testbed/ResourceAllocation-v0", "testbed.sim.envs:ResourceAllocationEnv"),
        ("testbed/ModelCaching-v0", "testbed.sim.envs:ModelCachingEnv"),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)


register_envs()

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
the world, so one seed gives the identical episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from testbed.config import BITS_PER_MB, ModelCatalogue, ScenarioConfig
from testbed.simulator import AllocationPolicy, Simulator, even_allocation, popular_cache
from testbed.system_model import (
    STEP_AMENDERS,
    SlotOutcome,
    amend_allocation,
    amend_cache,
    frame_reward,
)
from ue_emulator.world import FrameState, SlotState

GAIN_DB_RANGE = (-160.0, -40.0)
"""Channel gains 10 log10(h) are mapped linearly from this range onto [0, 1] (clipped)."""


def slot_state(
    slot: SlotState, cache: np.ndarray, output_bits: np.ndarray
) -> dict[str, np.ndarray]:
    """The raw state of eq. (21): h, phi, rho, d_in, d_op."""
    return {
        "channel_gain": slot.channel_gain,
        "services": slot.services,
        "cache": np.array(cache, dtype=bool),
        "input_bits": slot.input_bits,
        "output_bits": output_bits[slot.services],
    }


def normalise_state(state: dict[str, np.ndarray], config: ScenarioConfig) -> np.ndarray:
    """eq. (21) as a float32 vector in [0, 1]: [h (dB, scaled), phi/(M-1), rho, d_in, d_op]."""
    lo_db, hi_db = GAIN_DB_RANGE
    gain_db = 10.0 * np.log10(np.maximum(state["channel_gain"], 1e-300))
    num_models = config.catalogue.num_models
    in_max = config.network.input_size_mb[1] * BITS_PER_MB
    op_max = config.catalogue.output_size_mb[1] * BITS_PER_MB
    parts = (
        np.clip((gain_db - lo_db) / (hi_db - lo_db), 0.0, 1.0),
        state["services"] / max(num_models - 1, 1),
        state["cache"].astype(float),
        np.clip(state["input_bits"] / in_max, 0.0, 1.0),
        np.clip(state["output_bits"] / op_max, 0.0, 1.0),
    )
    return np.concatenate(parts).astype(np.float32)


def slot_observation(
    slot: SlotState, cache: np.ndarray, catalogue: ModelCatalogue, config: ScenarioConfig
) -> np.ndarray:
    """The normalised eq. (21) vector an agent sees for a slot and a cache."""
    return normalise_state(slot_state(slot, cache, catalogue.output_bits), config)


def outcome_info(outcome: SlotOutcome) -> dict[str, float]:
    return {
        "utility": float(outcome.utility.mean()),
        "hit_ratio": float(outcome.cached.mean()),
        "violation_rate": float(outcome.violation.mean()),
        "mean_delay_s": float(outcome.total_s.mean()),
        "mean_tv": float(outcome.tv.mean()),
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
        self.sim = Simulator(self.config)
        gamma_1 = self.config.catalogue.popularity_states[0]
        static = popular_cache(self.config, self.sim.catalogue, gamma_1)
        self.caching = caching or (lambda frame: static)
        u, m = self.sim.num_users, self.sim.num_models
        self.observation_space = spaces.Box(0.0, 1.0, shape=(4 * u + m,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(2 * u,), dtype=np.float32)
        self._horizon = self.config.timing.num_frames * self.config.timing.slots_per_frame
        self._steps = 0
        self._cache = static
        self._slot: SlotState | None = None

    def _advance(self) -> tuple[np.ndarray, dict[str, Any]]:
        if self._slot is None or self._slot.slot + 1 >= self.config.timing.slots_per_frame:
            frame = self.sim.begin_frame()
            self._cache = np.asarray(self.caching(frame), dtype=bool)
        self._slot = self.sim.next_slot()
        state = slot_state(self._slot, self._cache, self.sim.catalogue.output_bits)
        info = {
            "state": state,
            "gamma": self._slot.gamma,
            "frame": self._slot.frame,
            "slot": self._slot.slot,
        }
        return normalise_state(state, self.config), info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.sim.reset(_world_seed(self, seed))
        self._steps = 0
        self._slot = None
        return self._advance()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._slot is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=float)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape {action.shape} != {self.action_space.shape}")
        served = self.sim.served_at_edge(self._slot, self._cache)
        b, xi = amend_allocation(action, served, self.steps_amender)
        outcome = self.sim.evaluate(self._slot, self._cache, b, xi)
        self._steps += 1
        info: dict[str, Any] = {"b": b, "xi": xi, **outcome_info(outcome)}
        truncated = self._steps >= self._horizon
        if truncated:
            obs = slot_observation(self._slot, self._cache, self.sim.catalogue, self.config)
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
        self.sim = Simulator(self.config)
        self.allocation = allocation
        states = self.config.catalogue.popularity_states
        self.observation_space = spaces.Box(0.0, float(max(states)), shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2**self.sim.num_models)
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
        self.sim.reset(world_seed)
        if self.allocation is not None:
            self.allocation.reset(np.random.SeedSequence([world_seed, 2]))
        self._frame = self.sim.begin_frame()
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
        cache = amend_cache(int(action), self.sim.num_models)  # Sec. 6.3.2
        slots = self.config.timing.slots_per_frame
        rewards = np.empty(slots)
        utilities = np.empty(slots)
        hits = np.empty(slots)
        for k in range(slots):
            slot = self.sim.next_slot()
            b, xi = self._allocate(slot, cache)
            outcome = self.sim.evaluate(slot, cache, b, xi)
            rewards[k] = outcome.reward
            utilities[k] = outcome.utility.mean()
            hits[k] = outcome.cached.mean()
        reward = frame_reward(  # eq. (32)
            rewards,
            cache,
            self.sim.catalogue.size_gb,
            self.config.catalogue.cache_capacity_gb,
            self.config.utility.frame_penalty,
        )
        info: dict[str, Any] = {
            "cache": cache.copy(),
            "cache_fits": self.sim.cache_fits(cache),
            "utility": float(utilities.mean()),
            "hit_ratio": float(hits.mean()),
            "mean_slot_reward": float(rewards.mean()),
        }
        truncated = self._frame.frame + 1 >= self.config.timing.num_frames
        if not truncated:
            self._frame = self.sim.begin_frame()
        obs, frame_info = self._observe()
        info.update(frame_info)
        return obs, reward, False, truncated, info


def register_envs() -> None:
    """Register both environments with Gymnasium (idempotent)."""
    for env_id, entry in (
        ("testbed/ResourceAllocation-v0", "testbed.envs:ResourceAllocationEnv"),
        ("testbed/ModelCaching-v0", "testbed.envs:ModelCachingEnv"),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry)

"""The two learners of Algorithm 1 in the frame/slot loop, and what the loop records.

:class:`AllocationLearner` (lines 13-35) and :class:`CachingLearner` (lines 7 and 38-46)
are each a policy plus the loop hooks through which it observes, stores its transitions and
updates; :class:`GreedyCredit` is the caching learner's credit under the allocator acting
greedily. The loop itself, the run folder and the checkpoints are the application's
(``testbed.training.trainer``).
"""

from __future__ import annotations

import numpy as np

from agents.ddpg import DDPG, ActorCriticConfig
from agents.ddqn import DDQN
from agents.factored import FactoredCaching, random_fitting_cache
from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.observation import ObservationCodec
from testbed.core.protocols import AllocationPolicy, Hooks
from testbed.core.records import FrameState, FrameStep, SlotState, SlotStep
from testbed.core.system_model import (
    RadioParams,
    amend_allocation,
    frame_reward,
    score_slot,
    served_at_edge,
)

METRIC_COLUMNS = (
    "episode",
    "episode_reward",
    "mean_slot_reward",
    "utility",
    "hit_ratio",
    "violation_rate",
    "critic_loss",
    "actor_loss",
    "q_loss",
    "epsilon",
    "eval_mean_slot_reward",
    "eval_utility",
    "eval_hit_ratio",
    "wall_s",
)
"""The columns of a training run's ``metrics.csv``, one row per episode."""
LOSS_KEYS = ("critic_loss", "actor_loss", "q_loss")
"""The learners' losses (``AllocationLearner.losses``, ``CachingLearner.losses``)."""


class AllocationLearner(Hooks):
    """The allocator in training (Algorithm 1, lines 13-35): explores, stores, updates.

    A policy for the frame/slot driver and a hook on it. Each slot it observes s_t(k)
    (eq. (21)), stores the previous slot's transition now that s_t(k+1) is known, acts with
    exploration and amends (Sec. 6.2.2); after the slot is served it keeps
    (s, a, r) of eqs. (21)-(23) and updates once when the buffer is ready. The episode's
    last transition is stored as terminal. When the actor clones a teacher, the teacher's
    allocation for the same slot and cache is stored beside each transition.
    """

    def __init__(
        self,
        agent: DDPG,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        name: str,
        steps_amender: str,
    ) -> None:
        self.agent, self.name, self.steps_amender = agent, name, steps_amender
        self.codec = ObservationCodec(config, catalogue)
        self.teacher = _teacher(agent.config, config, catalogue)
        self.losses: dict[str, list[float]] = {"critic_loss": [], "actor_loss": []}
        self._current: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pending: tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # the agent's own generators carry on across episodes

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = self.codec.encode(slot, cache)  # eq. (21), line 13
        served = served_at_edge(cache, slot.services)
        if self._pending is not None:  # s_t(k+1) of the previous slot is known now
            state, action, reward, mask, target = self._pending
            self.agent.store(state, action, reward, obs, False, mask, served, target)
        raw = self.agent.act(obs, explore=True)  # lines 15-26
        b, xi = amend_allocation(raw, served, self.steps_amender)
        target = np.concatenate(self.teacher.allocate(slot, cache)) if self.teacher else np.zeros(0)
        self._current = (obs, np.concatenate([b, xi]), served, target)  # a_t(k), eq. (22)
        return b, xi

    def on_slot(self, step: SlotStep) -> None:
        assert self._current is not None
        obs, action, served, target = self._current
        reward = float(step.outcome.reward)
        self._pending = (obs, action, reward, served, target)  # eq. (23), line 27
        if self.agent.ready():  # lines 30-35
            for key, value in self.agent.update().items():
                self.losses[key].append(value)

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        state, action, reward, mask, target = self._pending
        self.agent.store(state, action, reward, state, True, mask, mask, target)  # last slot
        self._pending = None


def _teacher(agent_config: ActorCriticConfig, config: ScenarioConfig, catalogue: ModelCatalogue):
    """The allocation policy the actor clones, or None."""
    if not agent_config.clones:
        return None
    from agents.optimal import OptimalAllocation  # the only teacher (ActorCriticConfig.teacher)

    return OptimalAllocation(config, catalogue)


class GreedyCredit:
    """The frame's credit for the caching learner under the allocator acting greedily.

    The frame's K slots are already drawn (the world does not depend on the decisions), so
    the cache can be credited with what it gives when the allocator does its best: each
    slot is re-scored by the system model (eqs. (2)-(10), (23)) under the allocator's
    deterministic allocation, and the K rewards make eq. (32), penalty Xi included. This
    departs from Algorithm 1, line 38, which credits the frame with the slots as served by
    the exploring allocator (``credit = "explore"``): under full-scale exploration noise the
    exploring rewards rank caches differently from the greedy ones (docs/agents.md).
    """

    def __init__(
        self, allocation: AllocationPolicy, config: ScenarioConfig, catalogue: ModelCatalogue
    ) -> None:
        self.allocation, self.catalogue = allocation, catalogue
        self.radio = RadioParams.from_config(config)
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.penalty = config.utility.frame_penalty

    def __call__(self, slots: list[SlotState], cache: np.ndarray) -> float:
        return float(self.score_caches(slots, [cache])[0])

    def score_caches(self, slots: list[SlotState], caches: list[np.ndarray]) -> np.ndarray:
        """The greedy credit of each cache on the same slots (one batch for the actor)."""
        pairs = [(slot, cache) for cache in caches for slot in slots]
        many = getattr(self.allocation, "allocate_many", None)
        allocations = many(pairs) if many else [self.allocation.allocate(*p) for p in pairs]
        rewards = np.array(
            [
                float(score_slot(self.radio, self.catalogue, slot, cache, b, xi).reward)
                for (slot, cache), (b, xi) in zip(pairs, allocations, strict=True)
            ]
        ).reshape(len(caches), len(slots))
        return np.array(
            [
                frame_reward(row, cache, self.catalogue.size_gb, self.capacity_gb, self.penalty)
                for row, cache in zip(rewards, caches, strict=True)
            ]
        )


class CachingLearner(Hooks):
    """The caching agent in training (Algorithm 1, lines 7 and 38-46): epsilon-greedy,
    stores, updates.

    A caching policy for the driver and a hook on it. At the start of frame t it stores
    frame t-1's transition (gamma(t) is its next state), updates when ready, then picks a
    cache with epsilon decayed over training (the DDQN's action amended by Sec. 6.3.2, the
    factored agent's knapsack). The frame reward is eq. (32) of the served slots
    (``greedy_credit = None``, the paper's), or what :class:`GreedyCredit` makes of the
    frame's slots. With
    ``counterfactuals`` = N > 0 (greedy credit only) the same slots are also scored under N
    random caches that fit, and every (cache, credit) pair is stored as a frame of the same
    state: the slots are already drawn, so the comparison between caches is free of the
    slots' noise. The episode's last frame is terminal.
    """

    def __init__(
        self,
        agent: DDQN | FactoredCaching,
        frames_per_episode: int,
        episodes: int,
        greedy_credit: GreedyCredit | None = None,
        counterfactuals: int = 0,
    ) -> None:
        if counterfactuals and greedy_credit is None:
            raise ValueError("counterfactual caches need the greedy credit (credit = 'greedy')")
        self.agent, self.greedy_credit = agent, greedy_credit
        self.counterfactuals = counterfactuals
        self.name = agent.name
        self.frames_per_episode = frames_per_episode
        self.total_frames = episodes * frames_per_episode
        self.frames_done = 0
        self.losses: dict[str, list[float]] = {"q_loss": []}
        self._slots: list[SlotState] = []
        self._current: tuple[float, np.ndarray] | None = None
        self._pending: tuple[float, list[tuple[np.ndarray, float]]] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def on_episode_start(self, episode: int) -> None:
        self.frames_done = episode * self.frames_per_episode

    def select_cache(self, frame: FrameState) -> np.ndarray:
        if self._pending is not None:
            self._store(frame.gamma, done=False)
        self.agent.set_progress(self.frames_done / self.total_frames)
        cache = self.agent.select(frame.gamma, explore=True)  # line 7, Sec. 6.3.2
        self._current = (frame.gamma, cache)
        self._slots = []
        self.frames_done += 1
        return cache

    def on_slot(self, step: SlotStep) -> None:
        if self.greedy_credit is not None:
            self._slots.append(step.slot)

    def on_frame_end(self, step: FrameStep) -> None:
        assert self._current is not None
        gamma, cache = self._current
        if self.greedy_credit is None:
            self._pending = (gamma, [(cache, step.reward)])  # eq. (32)
            return
        catalogue = self.greedy_credit.catalogue
        caches = [cache] + [
            random_fitting_cache(
                self.agent.rng, catalogue.size_gb, self.greedy_credit.capacity_gb, 0.5
            )
            for _ in range(self.counterfactuals)
        ]
        rewards = self.greedy_credit.score_caches(self._slots, caches)
        self._pending = (gamma, list(zip(caches, rewards.tolist(), strict=True)))

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        self._store(self._pending[0], done=True)

    def _store(self, next_gamma: float, done: bool) -> None:
        assert self._pending is not None
        gamma, frames = self._pending
        for cache, reward in frames:
            self.agent.store(gamma, cache, reward, next_gamma, done)  # line 41
        self._pending = None
        if self.agent.ready():  # lines 42-46
            for _ in range(self.agent.config.updates_per_frame):
                self.losses["q_loss"].append(self.agent.update()["q_loss"])

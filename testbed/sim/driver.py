"""The one frame/slot driver: H episodes x T frames x K slots, for every loop of the testbed.

The runner (``testbed simulate``, ``compare``, ``experiment``), the Gymnasium environments,
the T2DRL trainer and the live controller all play the same loop::

    for each episode:   world.reset(seed); policies reset
      for each frame:   frame = world.begin_frame(); cache = caching.select_cache(frame)
        for each slot:  slot = world.next_slot(); b, xi = allocation.allocate(slot, cache)
                        outcome = executor.execute(slot, cache, b, xi)       # score or serve
        frame reward of eq. (32) from the K slot rewards of eq. (23)

Who serves the slot is the :class:`~testbed.core.protocols.SlotExecutor`: the system model
(``testbed.sim.executor.SimulatedExecutor``) or the live nodes. What learners need hooks in
through :class:`~testbed.core.protocols.Hooks`: each slot (observe the outcome, store a
transition, update), the end of each frame (the frame reward) and of each episode.

The loop is also offered step by step (:meth:`FrameSlotDriver.next_frame`,
:meth:`~FrameSlotDriver.use_cache`, :meth:`~FrameSlotDriver.next_slot`,
:meth:`~FrameSlotDriver.serve`) for the environments, whose agents call ``step``; the
driver keeps the bookkeeping (frame boundaries, the frame reward, the horizon) either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from testbed.core.protocols import (
    AllocationPolicy,
    CachingPolicy,
    FrameSource,
    Hooks,
    SlotExecutor,
)
from testbed.core.records import FrameState, FrameStep, SlotOutcome, SlotState, SlotStep
from testbed.core.seeding import Role, episode_seed, policy_seed
from testbed.core.system_model import cache_fits, check_allocation, frame_reward, served_at_edge


class FrameSlotDriver:
    """Plays a world through a slot executor under a caching and an allocation policy.

    ``size_gb``, ``capacity_gb`` and ``frame_penalty`` are c_m, C and Xi of eq. (32). A cache
    that breaks (11d) is played as decided (the frame reward carries Xi); allocations are
    checked against (11b)-(11g) every slot when ``check`` is set.
    """

    def __init__(
        self,
        world: FrameSource,
        executor: SlotExecutor,
        frames: int,
        slots: int,
        size_gb: np.ndarray,
        capacity_gb: float,
        frame_penalty: float,
        check: bool = True,
    ) -> None:
        self.world, self.executor = world, executor
        self.frames, self.slots = frames, slots
        self.size_gb, self.capacity_gb, self.frame_penalty = size_gb, capacity_gb, frame_penalty
        self.check = check
        self.hooks: list[Hooks] = []
        self.episode = 0
        self.frame: FrameState | None = None
        self.last_frame: FrameStep | None = None
        """The most recently finished frame."""
        self.cache = np.zeros(len(size_gb), dtype=bool)
        self._caching_s = 0.0
        self._rewards: list[float] = []
        self._frames_done = 0

    # -- step by step ---------------------------------------------------------------------

    def begin_episode(
        self,
        episode: int,
        world_seed: int | np.random.SeedSequence,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        """Reseed the world for ``episode``; ``hooks`` see this episode's loop."""
        self.world.reset(world_seed)
        self.episode = episode
        self.hooks = list(hooks)
        self.frame = None
        self._rewards = []
        self._frames_done = 0
        for hook in self.hooks:
            hook.on_episode_start(episode)

    @property
    def frame_over(self) -> bool:
        """No frame begun yet, or the current one has had its K slots."""
        return self.frame is None or len(self._rewards) == self.slots

    @property
    def episode_over(self) -> bool:
        """All T frames of the episode have been played."""
        return self._frames_done == self.frames

    def next_frame(self) -> FrameState:
        """Begin the next frame: gamma(t) of eq. (37)."""
        if not self.frame_over:
            raise RuntimeError(f"frame {self.frame.frame} still has slots to serve")
        self.frame = self.world.begin_frame()
        self._rewards = []
        return self.frame

    def use_cache(self, cache: np.ndarray, caching_s: float = 0.0) -> None:
        """The current frame's cache rho(t) (and the time its decision took)."""
        self.cache = np.asarray(cache, dtype=bool)
        self._caching_s = caching_s

    def select_cache(self, caching: CachingPolicy) -> FrameState:
        """Begin the next frame and let ``caching`` pick its cache (timed)."""
        frame = self.next_frame()
        start = time.perf_counter()
        cache = caching.select_cache(frame)
        self.use_cache(cache, time.perf_counter() - start)
        return frame

    def next_slot(self) -> SlotState:
        """Draw the current frame's next slot."""
        if self.frame_over:
            raise RuntimeError("begin a frame (next_frame) before drawing its slots")
        return self.world.next_slot()

    def serve(
        self,
        slot: SlotState,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
        decision_s: float = 0.0,
    ) -> SlotOutcome:
        """Execute the slot with the frame's cache; after the K-th slot, end the frame."""
        if self.check:
            check_allocation(bandwidth_share, step_share, served_at_edge(self.cache, slot.services))
        outcome = self.executor.execute(slot, self.cache, bandwidth_share, step_share)
        self._rewards.append(float(outcome.reward))
        step = SlotStep(
            self.episode, slot, self.cache, bandwidth_share, step_share, outcome, decision_s
        )
        for hook in self.hooks:
            hook.on_slot(step)
        if len(self._rewards) == self.slots:
            self._end_frame()
        return outcome

    def _end_frame(self) -> None:
        assert self.frame is not None
        rewards = np.asarray(self._rewards)
        self._frames_done += 1
        step = FrameStep(
            episode=self.episode,
            frame=self.frame,
            cache=self.cache,
            slot_rewards=rewards,
            reward=frame_reward(  # eq. (32)
                rewards, self.cache, self.size_gb, self.capacity_gb, self.frame_penalty
            ),
            cache_fits=cache_fits(self.cache, self.size_gb, self.capacity_gb),
            caching_s=self._caching_s,
            last=self.episode_over,
        )
        self.last_frame = step
        for hook in self.hooks:
            hook.on_frame_end(step)
        if step.last:
            for hook in self.hooks:
                hook.on_episode_end(self.episode)

    # -- whole loops ----------------------------------------------------------------------

    def play_frame(self, allocation: AllocationPolicy) -> FrameStep:
        """The K slots of the current frame (its cache already chosen)."""
        for _ in range(self.slots):
            slot = self.next_slot()
            start = time.perf_counter()
            b, xi = allocation.allocate(slot, self.cache)
            self.serve(slot, b, xi, time.perf_counter() - start)
        assert self.last_frame is not None
        return self.last_frame

    def play_episode(
        self,
        episode: int,
        world_seed: int | np.random.SeedSequence,
        caching: CachingPolicy,
        allocation: AllocationPolicy,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        """One episode of T frames x K slots."""
        self.begin_episode(episode, world_seed, hooks)
        for _ in range(self.frames):
            self.select_cache(caching)
            self.play_frame(allocation)

    def play(
        self,
        episodes: Iterable[int],
        caching: CachingPolicy,
        allocation: AllocationPolicy,
        world_seed: Callable[[int], np.random.SeedSequence],
        policy_seeds: Callable[[int], tuple[np.random.SeedSequence, np.random.SeedSequence]]
        | None = None,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        """Several episodes; ``policy_seeds(e)`` reseeds (caching, allocation) before each."""
        for episode in episodes:
            if policy_seeds is not None:
                caching_seed, allocation_seed = policy_seeds(episode)
                caching.reset(caching_seed)
                allocation.reset(allocation_seed)
            self.play_episode(episode, world_seed(episode), caching, allocation, hooks)

    def play_evaluation(
        self,
        episodes: int,
        caching: CachingPolicy,
        allocation: AllocationPolicy,
        run_seed: int,
        hooks: Sequence[Hooks] = (),
    ) -> None:
        """Episodes 0..episodes-1 of run ``run_seed`` as every evaluation plays them: the
        world of ``episode_seed(run_seed, e)``, the policies reseeded from the same pair
        (``testbed.core.seeding``), so every policy meets the same users."""
        self.play(
            range(episodes),
            caching,
            allocation,
            world_seed=lambda e: episode_seed(run_seed, e),
            policy_seeds=lambda e: (
                policy_seed(run_seed, e, Role.CACHING),
                policy_seed(run_seed, e, Role.ALLOCATION),
            ),
            hooks=hooks,
        )

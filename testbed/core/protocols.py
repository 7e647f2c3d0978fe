"""The interfaces between the layers: what a policy, a world and a slot executor offer.

A :class:`CachingPolicy` decides once per frame and an :class:`AllocationPolicy` once per
slot (returning a feasible allocation, (11b)-(11g): learned agents apply the Sec. 6.2.2
amender themselves). A :class:`FrameSource` is the users' world; a :class:`SlotExecutor`
serves a slot for a cache and an allocation: the system model when simulating, the live
nodes when serving for real. The frame/slot driver (``testbed.sim.driver``) plays them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from testbed.core.records import FrameState, FrameStep, SlotOutcome, SlotState, SlotStep


@runtime_checkable
class CachingPolicy(Protocol):
    """Decides rho(t) at the start of each frame."""

    name: str

    def reset(self, seed: np.random.SeedSequence) -> None: ...

    def select_cache(self, frame: FrameState) -> np.ndarray:
        """Boolean cache vector of shape (M,)."""
        ...


@runtime_checkable
class AllocationPolicy(Protocol):
    """Decides (b, xi) in each slot for the frame's cache."""

    name: str

    def reset(self, seed: np.random.SeedSequence) -> None: ...

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feasible bandwidth and step shares, each of shape (U,)."""
        ...


class FrameSource(Protocol):
    """The users' world: frames of K slots, reseeded per episode."""

    def reset(self, seed: int | np.random.SeedSequence) -> None: ...

    def begin_frame(self) -> FrameState: ...

    def next_slot(self) -> SlotState: ...


class SlotExecutor(Protocol):
    """Serves one slot for a cache and amended shares b, xi; returns what it gave."""

    def execute(
        self,
        slot: SlotState,
        cache: np.ndarray,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
    ) -> SlotOutcome: ...


class Hooks:
    """What a learner or a recorder sees of the loop; every method is a no-op here."""

    def on_episode_start(self, episode: int) -> None:
        """Before the episode's first frame."""

    def on_slot(self, step: SlotStep) -> None:
        """After each served slot."""

    def on_frame_end(self, step: FrameStep) -> None:
        """After the frame's K-th slot."""

    def on_episode_end(self, episode: int) -> None:
        """After the episode's last frame."""

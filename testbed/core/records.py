"""The records that cross the layers: what the world draws and what a slot's service gives.

``FrameState`` and ``SlotState`` are drawn by the users' world (``ue_emulator.world``) and
read by every policy; ``SlotOutcome`` is what a slot executor returns (the system model
when simulating, the live nodes when serving). Arrays are per user, shape (U,), or
(..., U) with a leading batch axis of candidate allocations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameState:
    """What the caching decision sees at the start of frame t (eq. (30))."""

    frame: int
    popularity_index: int
    gamma: float


@dataclass(frozen=True)
class SlotState:
    """The users' side of slot k of frame t: everything eq. (21) needs except the cache."""

    frame: int
    slot: int
    popularity_index: int
    gamma: float
    location_state: int
    positions_m: np.ndarray
    distance_m: np.ndarray
    fading_power: np.ndarray
    channel_gain: np.ndarray
    services: np.ndarray
    input_bits: np.ndarray


@dataclass(frozen=True)
class SlotOutcome:
    """Every per-user quantity of one slot (arrays of shape (..., U)) and its reward."""

    cached: np.ndarray
    steps: np.ndarray
    rate_up_bps: np.ndarray
    rate_dw_bps: np.ndarray
    up_s: np.ndarray
    dw_s: np.ndarray
    gen_s: np.ndarray
    total_s: np.ndarray
    quality: np.ndarray
    """eq. (7) of each user in the catalogue's quality measure (lower is better)."""
    utility: np.ndarray
    violation: np.ndarray
    reward: np.ndarray


@dataclass(frozen=True)
class SlotStep:
    """One served slot: what was decided and what it gave."""

    episode: int
    slot: SlotState
    cache: np.ndarray
    bandwidth_share: np.ndarray
    step_share: np.ndarray
    outcome: SlotOutcome
    decision_s: float
    """Wall time of the allocation decision (0 when the caller decided outside the driver)."""


@dataclass(frozen=True)
class FrameStep:
    """One finished frame."""

    episode: int
    frame: FrameState
    cache: np.ndarray
    slot_rewards: np.ndarray
    reward: float
    """eq. (32): mean of the K slot rewards, minus Xi when the cache breaks (11d)."""
    cache_fits: bool
    caching_s: float
    last: bool
    """The episode's last frame."""

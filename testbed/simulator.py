"""The two-timescale simulator: the world of ``ue_emulator`` scored by the system model.

:class:`Simulator` is the one place where a slot of the world meets a cache and an
allocation; the Gymnasium environments and the runner are built on it. Policies plug in
through two protocols: a :class:`CachingPolicy` decides once per frame, an
:class:`AllocationPolicy` once per slot and must return a feasible allocation
((11b)-(11g); RL agents apply the Sec. 6.2.2 amender themselves).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from testbed.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.system_model import (
    RadioParams,
    SlotOutcome,
    amend_allocation,
    cache_size_gb,
    evaluate_slot,
    greedy_cache,
    zipf_pmf,
)
from ue_emulator.world import FrameState, SlotState, World


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


class InfeasibleAllocation(ValueError):
    """An allocation breaks one of (11b)-(11g)."""


def check_allocation(
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
    served_at_edge: np.ndarray,
    tol: float = 1e-6,
) -> None:
    """Raise :class:`InfeasibleAllocation` naming the first constraint of (11b)-(11g) broken."""
    b, xi = np.asarray(bandwidth_share, dtype=float), np.asarray(step_share, dtype=float)
    if b.shape != xi.shape or b.shape != np.shape(served_at_edge):
        raise InfeasibleAllocation(f"shapes differ: b {b.shape}, xi {xi.shape}")
    if not (np.isfinite(b).all() and np.isfinite(xi).all()):
        raise InfeasibleAllocation("allocation holds NaN or inf")
    if (b < -tol).any() or (b > 1 + tol).any():
        raise InfeasibleAllocation("(11b) broken: b_u outside [0, 1]")
    if (xi < -tol).any() or (xi > 1 + tol).any():
        raise InfeasibleAllocation("(11c) broken: xi_u outside [0, 1]")
    if b.sum() > 1 + tol:
        raise InfeasibleAllocation(f"(11e) broken: sum b = {b.sum():.6f} > 1")
    if xi.sum() > 1 + tol:
        raise InfeasibleAllocation(f"(11f) broken: sum xi = {xi.sum():.6f} > 1")
    if (xi[~np.asarray(served_at_edge, dtype=bool)] > tol).any():
        raise InfeasibleAllocation("(11g) broken: steps given to a user whose model is not cached")


def even_allocation(slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The even split of RCARS: b_u = 1/U, xi_u = 1/(number of users served at the edge)."""
    served = np.asarray(cache, dtype=bool)[slot.services]
    return amend_allocation(np.ones(2 * len(served)), served)


def popular_cache(config: ScenarioConfig, catalogue: ModelCatalogue, gamma: float) -> np.ndarray:
    """The most popular models at skewness ``gamma`` that fit the capacity (greedy by eq. (1))."""
    pmf = zipf_pmf(catalogue.num_models, gamma)
    return greedy_cache(pmf, catalogue.size_gb, config.catalogue.cache_capacity_gb)


def score_slot(
    radio: RadioParams,
    catalogue: ModelCatalogue,
    slot: SlotState,
    cache: np.ndarray,
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
) -> SlotOutcome:
    """:func:`evaluate_slot` on a slot of the world (shares may carry a batch axis)."""
    return evaluate_slot(
        radio,
        catalogue,
        cache,
        slot.services,
        slot.channel_gain,
        slot.input_bits,
        bandwidth_share,
        step_share,
    )


class Simulator:
    """Frames and slots of one scenario; evaluates what the policies decide."""

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue | None = None) -> None:
        self.config = config
        self.catalogue = catalogue if catalogue is not None else build_catalogue(config.catalogue)
        self.radio = RadioParams.from_config(config)
        self.world = World(config)

    @property
    def num_users(self) -> int:
        return self.config.network.num_users

    @property
    def num_models(self) -> int:
        return self.catalogue.num_models

    def reset(self, seed: int | np.random.SeedSequence) -> None:
        self.world.reset(seed)

    def begin_frame(self) -> FrameState:
        return self.world.begin_frame()

    def next_slot(self) -> SlotState:
        return self.world.next_slot()

    def served_at_edge(self, slot: SlotState, cache: np.ndarray) -> np.ndarray:
        """rho_{phi_u}: whether each user's model is cached."""
        return np.asarray(cache, dtype=bool)[slot.services]

    def cache_fits(self, cache: np.ndarray) -> bool:
        """(11d)."""
        capacity = self.config.catalogue.cache_capacity_gb
        return float(cache_size_gb(cache, self.catalogue.size_gb)) <= capacity + 1e-9

    def evaluate(
        self,
        slot: SlotState,
        cache: np.ndarray,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
    ) -> SlotOutcome:
        return score_slot(self.radio, self.catalogue, slot, cache, bandwidth_share, step_share)

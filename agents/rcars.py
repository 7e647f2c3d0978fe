"""RCARS, the randomized caching and average resource allocation scheme (Sec. 7.2, [39]).

Each frame the BS caches models in a random order until the capacity is reached (a model
that no longer fits is skipped); each slot the bandwidth is split evenly over all users
and the denoising steps evenly over the users whose model is cached.
"""

from __future__ import annotations

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.records import FrameState, SlotState
from testbed.core.system_model import even_allocation, greedy_cache


class RandomCaching:
    """Random models until the cache is full (11d)."""

    name = "rcars"

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        self.size_gb = catalogue.size_gb
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.rng = np.random.default_rng(config.seed)

    def reset(self, seed: np.random.SeedSequence) -> None:
        self.rng = np.random.default_rng(seed)

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return greedy_cache(self.rng.permutation(len(self.size_gb)), self.size_gb, self.capacity_gb)


class EvenAllocation:
    """b_u = 1/U; xi_u = 1/|users served at the edge| for those users, 0 for the others."""

    name = "even"

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        del config, catalogue  # the even split needs neither

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return even_allocation(slot, cache)

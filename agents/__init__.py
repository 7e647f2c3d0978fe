"""Policies: one file per algorithm. ``make_policies`` builds a (caching, allocation) pair."""

from __future__ import annotations

from importlib import import_module

from testbed.config import ModelCatalogue, ScenarioConfig
from testbed.simulator import AllocationPolicy, CachingPolicy

# policy name -> (module, caching class, allocation class)
POLICIES: dict[str, tuple[str, str, str]] = {
    "rcars": ("agents.rcars", "RandomCaching", "EvenAllocation"),
    "schrs": ("agents.schrs", "StaticPopularCaching", "GeneticAllocation"),
    "optimal": ("agents.optimal", "OptimalCaching", "OptimalAllocation"),
}


def make_policies(
    name: str, config: ScenarioConfig, catalogue: ModelCatalogue
) -> tuple[CachingPolicy, AllocationPolicy]:
    """The caching and allocation policies of ``name`` (one of :data:`POLICIES`)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}")
    module_name, caching_cls, allocation_cls = POLICIES[name]
    module = import_module(module_name)
    caching = getattr(module, caching_cls)(config, catalogue)
    allocation = getattr(module, allocation_cls)(config, catalogue)
    return caching, allocation

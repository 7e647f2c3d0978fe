"""SCHRS: static popular caching and the per-slot genetic allocation."""

from __future__ import annotations

import numpy as np
import pytest
from scenario import Scenario

from agents.schrs import (
    GeneticAllocation,
    StaticPopularCaching,
    polynomial_mutation,
    sbx_crossover,
)
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.records import FrameState
from testbed.core.system_model import (
    RadioParams,
    amend_bandwidth,
    amend_steps,
    cache_size_gb,
    check_allocation,
    even_allocation,
    served_at_edge,
    zipf_pmf,
)
from ue_emulator.world import World


def test_static_cache_is_the_popular_cache_at_gamma_1_and_never_changes() -> None:
    config = ScenarioConfig()
    catalogue = build_catalogue(config.catalogue)
    caching = StaticPopularCaching(config, catalogue)
    caches = [
        caching.select_cache(FrameState(frame=t, popularity_index=t % 3, gamma=gamma))
        for t, gamma in enumerate(config.catalogue.popularity_states)
    ]
    for cache in caches:
        np.testing.assert_array_equal(cache, caches[0])
    cache = caches[0]
    assert cache[0]  # the most popular model comes first
    assert float(cache_size_gb(cache, catalogue.size_gb)) <= config.catalogue.cache_capacity_gb
    # Greedy by eq. (1) at gamma_1 = 0.2: every skipped model is less popular than model 0 and
    # would no longer fit once the more popular ones are in.
    pmf = zipf_pmf(10, 0.2)
    assert (np.diff(pmf) < 0).all()
    used = np.cumsum(np.where(cache, catalogue.size_gb, 0.0))
    for m in np.flatnonzero(~cache):
        assert used[m] + catalogue.size_gb[m] > config.catalogue.cache_capacity_gb


def _episode(num_users: int, seed: int, count: int) -> tuple[Scenario, np.ndarray, list]:
    config = ScenarioConfig().replace(**{"network.num_users": num_users})
    scenario = Scenario(config, build_catalogue(config.catalogue), RadioParams.from_config(config))
    cache = StaticPopularCaching(scenario.config, scenario.catalogue).cache
    world = World(config)
    world.reset(seed)
    world.begin_frame()
    return scenario, cache, [world.next_slot() for _ in range(count)]


def test_ga_is_reproducible_under_a_seed() -> None:
    scenario, cache, slots = _episode(10, seed=0, count=2)

    def run(seed: int) -> list[np.ndarray]:
        ga = GeneticAllocation(scenario.config, scenario.catalogue, population=12, generations=20)
        ga.reset(np.random.SeedSequence(seed))
        return [np.concatenate(ga.allocate(slot, cache)) for slot in slots]

    first, again, other = run(5), run(5), run(6)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])


def test_ga_is_feasible_and_beats_the_even_split() -> None:
    scenario, cache, slots = _episode(18, seed=1, count=4)
    ga = GeneticAllocation(scenario.config, scenario.catalogue)
    ga.reset(np.random.SeedSequence(2))
    gains = []
    for slot in slots:
        b, xi = ga.allocate(slot, cache)
        check_allocation(b, xi, served_at_edge(cache, slot.services))
        reward = float(scenario.evaluate(slot, cache, b, xi).reward)
        even = float(scenario.evaluate(slot, cache, *even_allocation(slot, cache)).reward)
        gains.append(reward - even)
    assert np.mean(gains) > 2.0  # eq. (23) per user: clearly better on average


def test_ga_returns_the_fittest_chromosome_and_elitism_never_loses_it() -> None:
    scenario, cache, slots = _episode(10, seed=3, count=1)
    slot, served = slots[0], served_at_edge(cache, slots[0].services)

    def reward(generations: int) -> float:
        ga = GeneticAllocation(
            scenario.config, scenario.catalogue, population=16, generations=generations
        )
        ga.reset(np.random.SeedSequence(9))
        return float(scenario.evaluate(slot, cache, *ga.allocate(slot, cache)).reward)

    genes = np.random.default_rng(np.random.SeedSequence(9)).random((16, 20))
    b, xi = amend_bandwidth(genes[:, :10]), amend_steps(genes[:, 10:], served)
    initial = scenario.evaluate(slot, cache, b, xi).reward
    assert reward(0) == initial.max()
    assert reward(40) >= reward(0) + 0.5


def _distance_to_parents(child: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    return float(np.minimum(np.abs(child - first), np.abs(child - second)).mean())


def test_sbx_children_stay_in_bounds_and_spread_with_a_small_eta() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.random((400, 8)), rng.random((400, 8))
    child_a, child_b = sbx_crossover(rng, first, second, eta=15.0, prob=1.0)
    assert ((child_a >= 0) & (child_a <= 1) & (child_b >= 0) & (child_b <= 1)).all()
    changed = ~np.isclose(child_a, first) & ~np.isclose(child_a, second)
    assert 0.4 < changed.mean() < 0.6  # each gene crosses with probability 1/2
    near = sbx_crossover(rng, first, second, eta=1e6, prob=1.0)
    np.testing.assert_allclose(
        np.sort([*near], axis=0), np.sort([first, second], axis=0), atol=1e-4
    )
    wide = sbx_crossover(rng, first, second, eta=1.0, prob=1.0)[0]
    assert _distance_to_parents(wide, first, second) > 2 * _distance_to_parents(
        child_a, first, second
    )
    same_a, same_b = sbx_crossover(rng, first, second, eta=15.0, prob=0.0)
    np.testing.assert_array_equal(same_a, first)
    np.testing.assert_array_equal(same_b, second)


def test_polynomial_mutation_stays_in_bounds_and_near_the_parent() -> None:
    rng = np.random.default_rng(1)
    genes = rng.random((500, 6))
    genes[:, 0], genes[:, 1] = 0.0, 1.0
    mutated = polynomial_mutation(rng, genes, eta=20.0, prob=1.0)
    assert ((mutated >= 0) & (mutated <= 1)).all()
    shift = np.abs(mutated - genes)
    assert 0.01 < shift.mean() < 0.1
    assert (mutated[:, 0] > 0).mean() > 0.3  # the bounded form moves a gene off its bound
    np.testing.assert_array_equal(polynomial_mutation(rng, genes, eta=20.0, prob=0.0), genes)


def test_ga_rejects_a_bad_population() -> None:
    config = ScenarioConfig()
    catalogue = build_catalogue(config.catalogue)
    with pytest.raises(ValueError, match="population"):
        GeneticAllocation(config, catalogue, population=1)
    with pytest.raises(ValueError, match="elites"):
        GeneticAllocation(config, catalogue, population=4, elites=4)

"""The exact optimiser: KKT bandwidth, the steps knapsack against brute force, optimality
against the even split and random feasible allocations, and exact cache enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scenario import Scenario

from agents.optimal import (
    OptimalAllocation,
    OptimalCaching,
    StepCurves,
    best_integer_steps,
    optimal_bandwidth,
    optimal_steps,
    steps_lower_bound,
)
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.records import FrameState
from testbed.core.seeding import optimal_samples_seed
from testbed.core.system_model import (
    RadioParams,
    amend_bandwidth,
    amend_steps,
    cache_fits,
    check_allocation,
    evaluate_slot,
    even_allocation,
    feasible_caches,
    popular_cache,
    served_at_edge,
    uplink_rate_bps,
)
from ue_emulator.world import World, sample_slots


def _slots(num_users: int, seed: int, count: int) -> tuple[Scenario, list, list]:
    """``count`` slots of a seeded episode with the popular cache of each frame."""
    config = ScenarioConfig().replace(**{"network.num_users": num_users})
    scenario = Scenario(config, build_catalogue(config.catalogue), RadioParams.from_config(config))
    world = World(config)
    world.reset(seed)
    slots, caches = [], []
    while len(slots) < count:
        frame = world.begin_frame()
        cache = popular_cache(scenario.config, scenario.catalogue, frame.gamma)
        for _ in range(min(3, count - len(slots))):
            slots.append(world.next_slot())
            caches.append(cache)
    return scenario, slots, caches


def _random_allocations(
    rng: np.random.Generator, served: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Feasible (b, xi): amended uniforms, half of the xi rows scaled down (sum xi < 1)."""
    users = len(served)
    b = amend_bandwidth(rng.uniform(size=(count, users)))
    xi = amend_steps(rng.uniform(size=(count, users)), served)
    scale = np.where(np.arange(count)[:, None] % 2 == 0, 1.0, rng.uniform(size=(count, 1)))
    return b, xi * scale


def test_bandwidth_meets_kkt_equal_marginals() -> None:
    scenario, slots, _ = _slots(18, seed=3, count=1)
    radio, slot = scenario.radio, slots[0]
    b, mu = optimal_bandwidth(radio, slot.channel_gain, slot.input_bits)

    def cost(share: np.ndarray) -> np.ndarray:  # alpha d_in / R_up, eqs. (2), (4)
        rate = uplink_rate_bps(
            share,
            radio.uplink_bandwidth_hz,
            radio.user_tx_power_w,
            slot.channel_gain,
            radio.noise_psd_w_per_hz,
        )
        return radio.alpha * slot.input_bits / rate

    step = 1e-6 * b
    marginal = -(cost(b + step) - cost(b - step)) / (2 * step)
    assert b.sum() == pytest.approx(1.0, abs=1e-12)
    assert (b > 0).all()
    assert marginal == pytest.approx(np.full(18, mu), rel=1e-6)
    assert np.ptp(b) > 0.01  # unequal channels give unequal shares


def test_bandwidth_beats_every_perturbation() -> None:
    scenario, slots, _ = _slots(10, seed=4, count=1)
    radio, slot = scenario.radio, slots[0]
    b, _ = optimal_bandwidth(radio, slot.channel_gain, slot.input_bits)
    rng = np.random.default_rng(0)
    others = amend_bandwidth(b * rng.uniform(0.9, 1.1, size=(500, 10)))
    rate = uplink_rate_bps(
        np.vstack([b, others]),
        radio.uplink_bandwidth_hz,
        radio.user_tx_power_w,
        slot.channel_gain,
        radio.noise_psd_w_per_hz,
    )
    total = (slot.input_bits / rate).sum(axis=1)
    assert total[0] <= total[1:].min()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimum_is_feasible_and_never_beaten(seed: int) -> None:
    scenario, slots, caches = _slots(18, seed=seed, count=4)
    optimiser = OptimalAllocation(scenario.config, scenario.catalogue)
    rng = np.random.default_rng(seed)
    for slot, cache in zip(slots, caches, strict=True):
        solution = optimiser.solve(slot, cache)
        served = served_at_edge(cache, slot.services)
        check_allocation(solution.b, solution.xi, served)
        assert solution.steps_gap == 0.0
        even = scenario.evaluate(slot, cache, *even_allocation(slot, cache)).utility.sum()
        assert solution.objective < even - 10.0
        b, xi = _random_allocations(rng, served, 1000)
        random_totals = scenario.evaluate(slot, cache, b, xi).utility.sum(axis=1)
        assert solution.objective <= random_totals.min() + 1e-9
        outcome = scenario.evaluate(slot, cache, solution.b, solution.xi)
        assert solution.objective == pytest.approx(outcome.utility.sum())
        np.testing.assert_array_equal(solution.violations, outcome.violation)


def _tiny_curves() -> StepCurves:
    """Three users with a few steps each: small enough for brute force."""
    return StepCurves(
        a1_steps=np.array([3.4, 5.0, 4.6]),
        a3_steps=np.array([11.3, 13.0, 9.8]),
        rise_per_step=np.array([0.2, 0.1, 0.35]),
        tv_gain=np.array([6.0, 5.0, 4.0]),
    )


def test_integer_dp_matches_brute_force() -> None:
    curves, total = _tiny_curves(), 21
    counts, cost = best_integer_steps(curves, total)
    grid = np.array(list(itertools.product(range(total + 1), repeat=3)), dtype=float)
    grid = grid[grid.sum(axis=1) <= total]
    brute = curves.cost(grid).sum(axis=1).min()
    assert cost == pytest.approx(brute, abs=1e-12)
    assert curves.cost(counts.astype(float)).sum() == pytest.approx(brute, abs=1e-12)
    assert counts.sum() <= total
    assert brute < -2.0  # the instance does reward steps


def test_real_steps_match_a_fine_grid_and_bounds_hold() -> None:
    curves, total = _tiny_curves(), 21
    axis = np.arange(0.0, total + 1e-9, 0.2)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid[grid.sum(axis=1) <= total + 1e-9]
    fine = curves.cost(grid).sum(axis=1).min()
    solution = optimal_steps(curves, total)
    assert solution.steps.sum() <= total + 1e-9
    assert solution.cost <= fine + 1e-9
    assert solution.cost == pytest.approx(fine, abs=0.05)
    _, integer_cost = best_integer_steps(curves, total)
    assert steps_lower_bound(curves, total) <= solution.cost + 1e-12
    assert solution.cost <= integer_cost + 1e-12


def test_many_gaining_users_use_the_dp_with_a_small_certified_gap() -> None:
    rng = np.random.default_rng(5)
    users = 16
    curves = StepCurves(
        a1_steps=rng.uniform(50, 100, users),
        a3_steps=rng.uniform(150, 200, users),
        rise_per_step=0.7 * rng.uniform(0.0, 0.1, users),
        tv_gain=0.3 * rng.uniform(60, 120, users),
    )
    solution = optimal_steps(curves, 1000)
    on = solution.steps > 0
    assert (curves.best < 0).all()
    assert solution.steps.sum() <= 1000 + 1e-9
    assert (solution.steps[on] >= curves.a1_steps[on] - 1e-9).all()
    assert (solution.steps <= curves.a3_steps + 1e-9).all()
    assert 5 <= on.sum() <= 10  # the budget holds only some of the 16 users
    assert solution.lower_bound <= solution.cost <= best_integer_steps(curves, 1000)[1]
    assert solution.cost - solution.lower_bound < 0.01 * abs(solution.cost)


def test_feasible_caches_are_all_the_subsets_that_fit() -> None:
    catalogue = build_catalogue(ScenarioConfig().catalogue)
    caches = feasible_caches(catalogue.size_gb, 20.0)
    brute = sum(
        catalogue.size_gb[list(subset)].sum() <= 20.0
        for r in range(11)
        for subset in itertools.combinations(range(10), r)
    )
    assert len(caches) == brute
    assert (caches @ catalogue.size_gb <= 20.0).all()
    assert len({tuple(row) for row in caches}) == len(caches)


def test_optimal_caching_beats_the_popular_cache_on_its_samples() -> None:
    config = ScenarioConfig().replace(**{"network.num_users": 10})
    catalogue = build_catalogue(config.catalogue)
    caching = OptimalCaching(config, catalogue, sample_slots, samples=6)
    caching.reset(np.random.SeedSequence(11))
    capacity_gb = config.catalogue.cache_capacity_gb
    for index, gamma in enumerate(config.catalogue.popularity_states):
        scores = caching.scores(index)
        best = caching.select_cache(FrameState(frame=0, popularity_index=index, gamma=gamma))
        assert cache_fits(best, catalogue.size_gb, capacity_gb)
        assert caching.score(best, index) == scores.min()
        assert scores.min() <= caching.score(popular_cache(config, catalogue, gamma), index)
        assert scores.max() - scores.min() > 1.0  # the cache matters


def test_caching_score_is_the_mean_optimal_utility_of_its_samples() -> None:
    config = ScenarioConfig().replace(**{"network.num_users": 10})
    catalogue = build_catalogue(config.catalogue)
    caching = OptimalCaching(config, catalogue, sample_slots, samples=4)
    caching.reset(np.random.SeedSequence(7))  # no effect: the samples follow the run seed
    cache = popular_cache(config, catalogue, 0.5)
    seed = np.random.SeedSequence([config.seed, 0, 3])
    seed = np.random.SeedSequence(seed.entropy, spawn_key=(1,))
    expected = optimal_samples_seed(config.seed, 1)
    assert (seed.entropy, seed.spawn_key) == (expected.entropy, expected.spawn_key)
    slots = sample_slots(config, 1, 4, seed)
    direct = np.mean([caching.allocator.solve(slot, cache).objective / 10 for slot in slots])
    assert caching.score(cache, 1) == pytest.approx(direct, rel=1e-12)
    radio = caching.allocator.radio
    slot = slots[0]
    b, xi = caching.allocator.allocate(slot, cache)
    outcome = evaluate_slot(
        radio, catalogue, cache, slot.services, slot.channel_gain, slot.input_bits, b, xi
    )
    assert outcome.utility.sum() == pytest.approx(caching.allocator.solve(slot, cache).objective)

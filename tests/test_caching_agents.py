"""The caching side of the `best` preset: the exact knapsack, the factored agent, the credit
rule, the paper's DDQN exploring only caches that fit, and M = 50."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ddqn import DDQN, DDQNConfig
from agents.factored import FactoredCaching, FactoredConfig, best_cache, random_fitting_cache
from agents.optimal import OptimalAllocation, OptimalCaching
from agents.t2drl import CachingLearner, GreedyCredit, T2DRLAgents, TrainConfig
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.records import FrameState
from testbed.core.system_model import (
    all_caches,
    amend_allocation,
    cache_fits,
    feasible_actions,
    feasible_caches,
    served_at_edge,
)
from testbed.sim.executor import simulated_driver
from ue_emulator.world import sample_slots

# U = 4, M = 3, C = 12 GB: sizes 7.41, 3.71, 4.48 GB, so 7 of the 8 caches fit.
TINY = ScenarioConfig().replace(
    **{
        "network.num_users": 4,
        "catalogue.num_models": 3,
        "catalogue.cache_capacity_gb": 12.0,
        "timing.num_frames": 5,
        "timing.slots_per_frame": 4,
    }
)


def _brute_force(values, sizes, capacity) -> float:
    best = 0.0
    for bits in itertools.product([0, 1], repeat=len(values)):
        bits = np.array(bits)
        if bits @ sizes <= capacity + 1e-9:
            best = max(best, float(bits @ values))
    return best


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=10),
    st.floats(0.0, 40.0),
    st.integers(0, 2**32 - 1),
)
def test_knapsack_is_exact_against_brute_force(values, capacity, seed):
    values = np.array(values)
    sizes = np.random.default_rng(seed).uniform(0.5, 10.0, len(values))
    cache = best_cache(values, sizes, capacity)
    assert cache.dtype == bool and cache_fits(cache, sizes, capacity)
    assert float(cache @ values) == pytest.approx(_brute_force(values, sizes, capacity), abs=1e-9)


def test_knapsack_hand_instance():
    # C = 10 GB. Greedy by value per GB takes 2 (1.5/GB) then 1 (1.0/GB): value 10 in 8 GB,
    # and nothing else fits. The optimum is {0, 2}: value 11 in exactly 10 GB.
    values = np.array([5.0, 4.0, 6.0, 3.5, -1.0])
    sizes = np.array([6.0, 4.0, 4.0, 5.0, 0.5])
    assert best_cache(values, sizes, 10.0).tolist() == [True, False, True, False, False]
    assert not best_cache(-np.abs(values), sizes, 10.0).any()  # nothing of positive value


def test_random_fitting_caches_always_fit_and_cover_every_feasible_cache():
    catalogue = build_catalogue(TINY.catalogue)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2_000):
        cache = random_fitting_cache(rng, catalogue.size_gb, 12.0, keep=0.5)
        assert cache_fits(cache, catalogue.size_gb, 12.0)
        seen.add(tuple(cache))
    assert seen == {tuple(c) for c in feasible_caches(catalogue.size_gb, 12.0)}
    assert len(seen) == 7


def test_ddqn_explores_only_caches_that_fit():
    catalogue = build_catalogue(ScenarioConfig().catalogue)  # the default: 280 of 1,024 fit
    feasible = feasible_actions(catalogue.size_gb, 20.0)
    assert len(feasible) == 280
    fits = (catalogue.size_gb, 20.0)
    agent = DDQN(10, DDQNConfig(), seed=0, fits=fits)  # epsilon = 1: always explores
    drawn = [agent.act(0.5, explore=True) for _ in range(500)]
    assert set(drawn) <= set(feasible.tolist()) and len(set(drawn)) > 150
    old = DDQN(10, DDQNConfig(explore="all"), seed=0, fits=fits)
    outside = [a for a in (old.act(0.5, explore=True) for _ in range(500)) if a not in feasible]
    assert len(outside) > 250  # the old draw: ~73% of codes break (11d)
    with pytest.raises(ValueError, match="explore = 'some'"):
        DDQN(3, DDQNConfig(explore="some"), seed=0)
    with pytest.raises(ValueError, match="--caching factored"):
        DDQN(17, DDQNConfig(), seed=0)


class AllSteps:
    """An allocator that spends every step on the edge users (the paper's amender, even
    split): a stand-in for a noisy exploring allocator under which caching looks bad."""

    name = "all-steps"

    def reset(self, seed) -> None:
        del seed

    def allocate(self, slot, cache):
        served = served_at_edge(cache, slot.services)
        return amend_allocation(np.ones(2 * len(slot.services)), served, "paper")


def _train_factored(credit, episodes: int = 80) -> FactoredCaching:
    catalogue = build_catalogue(TINY.catalogue)
    agent = FactoredCaching(
        catalogue.size_gb,
        12.0,
        FactoredConfig(warmup=32, batch_size=32, epsilon_decay_fraction=0.6, lr=3e-3),
        seed=1,
    )
    learner = CachingLearner(agent, TINY.timing.num_frames, episodes, credit)
    driver = simulated_driver(TINY, catalogue)
    explorer = AllSteps()
    for episode in range(episodes):
        driver.play_episode(
            episode, np.random.SeedSequence([7, episode]), learner, explorer, hooks=(learner,)
        )
    return agent


def test_credit_rule_learner_follows_the_greedy_credit_where_the_two_disagree():
    catalogue = build_catalogue(TINY.catalogue)
    optimal = OptimalCaching(TINY, catalogue, sample_slots, samples=64)
    gammas = TINY.catalogue.popularity_states
    best = [optimal.select_cache(FrameState(0, i, g)) for i, g in enumerate(gammas)]
    assert all(c.tolist() == [False, True, True] for c in best)
    # Precondition: under the exploring allocator the empty cache scores best instead.
    explorer, greedy = AllSteps(), GreedyCredit(OptimalAllocation(TINY, catalogue), TINY, catalogue)
    slots = sample_slots(TINY, 1, 32, np.random.SeedSequence(3))
    explore_credit = GreedyCredit(explorer, TINY, catalogue)
    empty, chosen = np.zeros(3, dtype=bool), best[1]
    assert explore_credit(slots, empty) > explore_credit(slots, chosen) + 20  # ~ -53.3 vs -89.5
    assert greedy(slots, chosen) > greedy(slots, empty) + 5  # ~ -44.1 vs -53.3

    paper = _train_factored(credit=None)
    honest = _train_factored(credit=greedy)
    for gamma, target in zip(gammas, best, strict=True):
        assert not paper.select(gamma, explore=False).any()  # follows the exploring credit
        assert honest.select(gamma, explore=False).tolist() == target.tolist()


def test_greedy_credit_is_eq_32_of_the_rescored_slots_with_the_penalty():
    catalogue = build_catalogue(TINY.catalogue)
    allocation = OptimalAllocation(TINY, catalogue)
    credit = GreedyCredit(allocation, TINY, catalogue)
    slots = sample_slots(TINY, 0, 4, np.random.SeedSequence(11))
    cache = np.array([False, True, True])
    driver_rewards = []
    for slot in slots:
        b, xi = allocation.allocate(slot, cache)
        driver_rewards.append(
            float(simulated_driver(TINY, catalogue).executor.execute(slot, cache, b, xi).reward)
        )
    assert credit(slots, cache) == pytest.approx(np.mean(driver_rewards), rel=1e-12)
    too_big = np.ones(3, dtype=bool)  # 15.6 GB > 12 GB: eq. (32) subtracts Xi
    assert not cache_fits(too_big, catalogue.size_gb, 12.0)
    penalty = TINY.utility.frame_penalty
    rescored = [
        float(
            simulated_driver(TINY, catalogue)
            .executor.execute(s, too_big, *allocation.allocate(s, too_big))
            .reward
        )
        for s in slots
    ]
    assert credit(slots, too_big) == pytest.approx(np.mean(rescored) - penalty, rel=1e-12)


def test_factored_agent_at_fifty_models_decides_and_trains():
    config = ScenarioConfig().replace(
        **{"catalogue.num_models": 50, "timing.num_frames": 3, "timing.slots_per_frame": 3}
    )
    train = TrainConfig(
        episodes=2,
        caching={"warmup": 4, "batch_size": 4},
        allocator={"warmup": 8, "batch_size": 8},
    )
    agents = T2DRLAgents(config, train)
    assert isinstance(agents.caching, FactoredCaching) and agents.caching.q[-1].out_features == 51
    catalogue = build_catalogue(config.catalogue)
    for gamma in config.catalogue.popularity_states:
        cache = agents.caching.select(gamma, explore=False)
        assert cache.shape == (50,) and cache_fits(cache, catalogue.size_gb, 20.0)
    with pytest.raises(ValueError, match="--caching factored"):
        T2DRLAgents(config, TrainConfig(preset="default"))
    assert len(all_caches(3)) == 8  # the enumeration stays for small M only

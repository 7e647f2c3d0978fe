"""The users' world: seeds, Markov chains, placements, requests."""

import numpy as np
import pytest

from testbed.core.config import ScenarioConfig
from testbed.core.system_model import zipf_pmf
from ue_emulator.world import (
    BoundaryPlacement,
    ConcentratedPlacement,
    MarkovChain,
    UniformPlacement,
    World,
    ZipfRequests,
    stationary_distribution,
)


def _frames(world: World, frames: int = 3) -> list:
    out = []
    for _ in range(frames):
        out.append(world.begin_frame())
        out.extend(world.next_slot() for _ in range(world.slots_per_frame))
    return out


def test_same_seed_same_world_other_seed_differs():
    config = ScenarioConfig()
    a, b = World(config), World(config)
    a.reset(11)
    b.reset(11)
    for x, y in zip(_frames(a), _frames(b), strict=True):
        if hasattr(x, "channel_gain"):
            np.testing.assert_array_equal(x.channel_gain, y.channel_gain)
            np.testing.assert_array_equal(x.services, y.services)
            np.testing.assert_array_equal(x.input_bits, y.input_bits)
        else:
            assert x == y
    b.reset(12)
    a.reset(11)
    assert not np.array_equal(_frames(a)[1].channel_gain, _frames(b)[1].channel_gain)


def test_stationary_distribution_of_eq37():
    p = np.array(ScenarioConfig().catalogue.popularity_transition)
    pi = stationary_distribution(p)
    np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
    assert pi.sum() == pytest.approx(1.0)


def test_markov_chain_transition_frequencies_match_eq36():
    p = np.array(ScenarioConfig().network.location_transition)
    chain, rng = MarkovChain(p), np.random.default_rng(0)
    counts = np.zeros((3, 3))
    state = chain.reset(rng)
    for _ in range(60_000):
        nxt = chain.step(rng)
        counts[state, nxt] += 1
        state = nxt
    np.testing.assert_allclose(counts / counts.sum(axis=1, keepdims=True), p, atol=0.015)


def test_zipf_request_frequencies_match_eq1():
    rng = np.random.default_rng(1)
    draws = ZipfRequests(10).sample(rng, 200_000, 0.7)
    freq = np.bincount(draws, minlength=10) / draws.size
    np.testing.assert_allclose(freq, zipf_pmf(10, 0.7), atol=0.004)


def test_placements_stay_in_square_and_away_from_bs():
    net = ScenarioConfig().network
    rng = np.random.default_rng(2)
    dists = {}
    for cls in (UniformPlacement, ConcentratedPlacement, BoundaryPlacement):
        pos = cls(net).sample(rng, 5000)
        assert (np.abs(pos) <= 125.0).all()
        d = np.hypot(pos[:, 0], pos[:, 1])
        assert (d >= net.min_distance_m).all()
        dists[cls.__name__] = d.mean()
    # boundary users lie in the 25 m band along the edge
    pos = BoundaryPlacement(net).sample(rng, 5000)
    assert (np.abs(pos).max(axis=1) >= 125.0 - 25.0).all()
    # the four strips are used evenly
    assert np.allclose([(pos[:, 1] > 100).mean(), (pos[:, 1] < -100).mean()], 0.25, atol=0.05)
    assert dists["ConcentratedPlacement"] < dists["UniformPlacement"] < dists["BoundaryPlacement"]
    # uniform over a 250 m square: mean distance to the centre = 0.3826 * 250 m
    assert dists["UniformPlacement"] == pytest.approx(0.3826 * 250, rel=0.02)


def test_slot_fields_are_consistent():
    config = ScenarioConfig()
    world = World(config)
    world.reset(3)
    frame = world.begin_frame()
    slot = world.next_slot()
    assert slot.gamma == frame.gamma in config.catalogue.popularity_states
    np.testing.assert_allclose(slot.distance_m, np.hypot(*slot.positions_m.T))
    assert ((slot.input_bits >= 5 * 8e6) & (slot.input_bits <= 10 * 8e6)).all()
    assert slot.services.min() >= 0 and slot.services.max() < 10
    with pytest.raises(RuntimeError):
        for _ in range(config.timing.slots_per_frame):
            world.next_slot()

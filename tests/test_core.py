"""The core layer's observation codec, metrics accumulator and seeding roles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from testbed.core.config import BITS_PER_MB, ScenarioConfig, build_catalogue
from testbed.core.metrics import SlotMetrics, confidence_halfwidth, summarise
from testbed.core.observation import ObservationCodec
from testbed.core.records import SlotOutcome
from testbed.core.seeding import (
    EVAL_SEED_OFFSET,
    Role,
    episode_seed,
    optimal_samples_seed,
    policy_seed,
    training_world_seed,
)
from testbed.core.system_model import all_caches, amend_cache, cache_to_action, feasible_caches
from ue_emulator.world import World


def _codec_and_slot():
    config = ScenarioConfig().replace(**{"network.num_users": 4})
    catalogue = build_catalogue(config.catalogue)
    world = World(config)
    world.reset(3)
    world.begin_frame()
    return config, catalogue, ObservationCodec(config, catalogue), world.next_slot()


def test_observation_layout_follows_the_documented_table() -> None:
    config, _, codec, slot = _codec_and_slot()
    cache = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    obs = codec.encode(slot, cache)
    u, m = 4, 10
    assert obs.shape == (codec.size,) == (4 * u + m,) and obs.dtype == np.float32
    gain_db = 10 * np.log10(slot.channel_gain)
    np.testing.assert_allclose(obs[:u], np.clip((gain_db + 160) / 120, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(obs[u : 2 * u], slot.services / 9, rtol=1e-6)
    np.testing.assert_array_equal(obs[2 * u : 2 * u + m], cache.astype(np.float32))
    in_max = config.network.input_size_mb[1] * BITS_PER_MB
    np.testing.assert_allclose(obs[2 * u + m : 3 * u + m], slot.input_bits / in_max, rtol=1e-6)


def test_decode_inverts_encode() -> None:
    _, catalogue, codec, slot = _codec_and_slot()
    cache = np.array([0, 1, 1, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    decoded = codec.decode(codec.encode(slot, cache))
    np.testing.assert_array_equal(decoded["services"], slot.services)
    np.testing.assert_array_equal(decoded["cache"], cache)
    np.testing.assert_allclose(decoded["input_bits"], slot.input_bits, rtol=1e-6)
    np.testing.assert_allclose(
        decoded["output_bits"], catalogue.output_bits[slot.services], rtol=1e-6
    )
    np.testing.assert_allclose(decoded["channel_gain"], slot.channel_gain, rtol=1e-4)
    with pytest.raises(ValueError, match="expected 26"):
        codec.decode(np.zeros(5))


def _outcome(utility, cached, violation, reward) -> SlotOutcome:
    zeros = np.zeros(len(utility))
    return SlotOutcome(
        cached=np.array(cached, dtype=bool),
        steps=zeros,
        rate_up_bps=zeros,
        rate_dw_bps=zeros,
        up_s=zeros,
        dw_s=zeros,
        gen_s=zeros,
        total_s=np.array(utility, dtype=float) / 2,
        quality=zeros,
        utility=np.array(utility, dtype=float),
        violation=np.array(violation, dtype=bool),
        reward=np.array(reward),
    )


def test_slot_metrics_average_every_user_slot_once() -> None:
    metrics = SlotMetrics()
    assert np.isnan(metrics.means()["utility"])
    metrics.add_slot(_outcome([10.0, 20.0], [1, 0], [0, 1], -15.0), decision_s=0.002)
    metrics.add_slot(_outcome([30.0, 60.0], [1, 1], [0, 0], -45.0), decision_s=0.004)
    metrics.add_frame(-30.0, cache_fits=False, caching_s=0.001)
    means = metrics.means()
    assert means["utility"] == 30.0  # (10 + 20 + 30 + 60) / 4
    assert means["hit_ratio"] == 0.75 and means["violation_rate"] == 0.25
    assert means["mean_slot_reward"] == -30.0 and means["mean_frame_reward"] == -30.0
    assert means["mean_delay_s"] == 15.0
    assert means["decision_ms_per_slot"] == pytest.approx(3.0)
    summary = metrics.summary("c", "a", episodes=1, seed=4)
    assert summary.overfull_frames == 1 and summary.slots == 2 and summary.utility == 30.0


def test_summarise_means_and_intervals_per_group() -> None:
    rows = pd.DataFrame(
        {"policy": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "utility": [1.0, 2.0, 3.0, 7.0]}
    )
    out = summarise(rows, ["policy"], ["utility"])
    assert list(out["policy"]) == ["a", "b"] and list(out["seeds"]) == [3, 1]
    # t_{0.975, 2} = 4.302653, s = 1, n = 3
    assert out.loc[0, "utility_ci95"] == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert np.isnan(out.loc[1, "utility_ci95"]) and np.isnan(confidence_halfwidth([7.0]))


def test_seeding_roles_are_distinct_streams() -> None:
    draws = {
        "world": episode_seed(3, 0),
        "caching": policy_seed(3, 0, Role.CACHING),
        "allocation": policy_seed(3, 0, Role.ALLOCATION),
        "training": training_world_seed(3, 0),
        "optimal": optimal_samples_seed(3, 0),
        "eval": episode_seed(3 + EVAL_SEED_OFFSET, 0),
    }
    values = {k: np.random.default_rng(s).random() for k, s in draws.items()}
    assert len(set(values.values())) == len(values)
    assert training_world_seed(3, 0).entropy == [3, 0, 7]


def test_cache_bit_encoding_is_one_table() -> None:
    table = all_caches(4)
    assert table.shape == (16, 4)
    for action in range(16):
        np.testing.assert_array_equal(table[action], amend_cache(action, 4))
        assert cache_to_action(table[action]) == action
    np.testing.assert_array_equal(amend_cache(0b1010, 4), [True, False, True, False])
    fits = feasible_caches(np.array([5.0, 6.0, 7.0, 8.0]), 12.0)
    assert {cache_to_action(c) for c in fits} == {0, 1, 2, 4, 8, 0b1100, 0b1010}


def test_round_steps_round_by_largest_remainder_within_l() -> None:
    from testbed.core.system_model import round_steps

    # xi L = 2.4, 1.5, 1.1, 0 -> floors 2, 1, 1, 0 (4); floor(5.0) = 5: one more to user 1
    np.testing.assert_array_equal(round_steps([0.4, 0.25, 1.1 / 6, 0.0], 6), [2, 2, 1, 0])
    np.testing.assert_array_equal(round_steps([1 / 3, 1 / 3, 1 / 3], 10), [4, 3, 3])
    rng = np.random.default_rng(1)
    for _ in range(200):
        xi = rng.dirichlet(np.ones(6)) * rng.random()
        steps = round_steps(xi, 7)
        assert steps.sum() <= 7 and (steps >= 0).all()
        assert (np.abs(steps - xi * 7) < 1 + 1e-9).all()
        assert (steps[xi == 0] == 0).all()

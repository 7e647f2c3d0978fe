"""Every equation of the system model against values worked out by hand."""

import numpy as np
import pytest

from testbed.core import system_model as sm
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.system_model import RadioParams, evaluate_slot


def test_zipf_eq1_hand_values():
    # M = 3, gamma = 1: weights 1, 1/2, 1/3, sum 11/6
    np.testing.assert_allclose(sm.zipf_pmf(3, 1.0), [6 / 11, 3 / 11, 2 / 11])
    np.testing.assert_allclose(sm.zipf_pmf(4, 0.0), [0.25] * 4)


def test_path_loss_eq3_in_km():
    np.testing.assert_allclose(sm.path_loss_db(np.array([1.0, 0.1])), [-128.1, -90.5])
    # 100 m with unit fading: h = 10^(-9.05)
    np.testing.assert_allclose(sm.channel_gain(np.array([0.1]), np.array([2.0])), [2 * 10**-9.05])


def test_uplink_rate_eq2():
    # b W = 1e7 Hz, SNR = 0.2 * 1e-10 / (1e-20 * 1e7) = 200
    rate = sm.uplink_rate_bps(np.array([0.5]), 20e6, 0.2, np.array([1e-10]), 1e-20)
    np.testing.assert_allclose(rate, [1e7 * np.log2(201.0)])
    assert rate[0] == pytest.approx(7.651051691e7)


def test_uplink_rate_zero_share_is_zero_not_nan():
    rate = sm.uplink_rate_bps(np.array([0.0, 1.0]), 20e6, 0.2, np.array([1e-10, 1e-10]), 1e-20)
    assert rate[0] == 0.0 and np.isfinite(rate).all()
    delay = sm.uplink_delay_s(np.array([8e7, 8e7]), rate, np.array([True, True]), 1e8)
    assert np.isinf(delay[0]) and not np.isnan(delay).any()


def test_uplink_delay_eq4_backhaul_on_miss():
    delay = sm.uplink_delay_s(
        np.array([8e7, 8e7]), np.array([4e7, 4e7]), np.array([True, False]), 1e8
    )
    np.testing.assert_allclose(delay, [2.0, 2.8])


def test_downlink_eq5_eq6():
    # SNR = 20 * 1e-12 / (1e-20 * 4e7) = 50
    rate = sm.downlink_rate_bps(40e6, 20.0, np.array([1e-12]), 1e-20)
    np.testing.assert_allclose(rate, [4e7 * np.log2(51.0)])
    delay = sm.downlink_delay_s(
        np.array([6e7, 6e7]), np.array([2e8, 2e8]), np.array([True, False]), 1e8
    )
    np.testing.assert_allclose(delay, [0.3, 0.9])


def test_tv_eq7_pieces_and_miss():
    # the paper's A1..A4 = 60, 110, 170, 28
    steps = np.array([0.0, 50.0, 60.0, 115.0, 170.0, 200.0, 115.0])
    cached = np.array([True] * 6 + [False])
    tv = sm.served_quality(steps, cached, 60.0, 110.0, 170.0, 28.0)
    # 115 steps: 110 + (28 - 110) * (115 - 60) / (170 - 60) = 110 - 41 = 69
    np.testing.assert_allclose(tv, [110, 110, 110, 69, 28, 28, 28])


def test_generation_delay_eq8_and_miss():
    d = sm.generation_delay_s(np.array([100.0, 100.0]), np.array([True, False]), 0.18, 5.74, 170.0)
    np.testing.assert_allclose(d, [0.18 * 100 + 5.74, 0.18 * 170 + 5.74])
    np.testing.assert_allclose(d, [23.74, 36.34])


def test_total_delay_eq9_and_utility_eq10():
    total = sm.total_delay_s(2.0, 0.3, 23.74)
    assert total == pytest.approx(26.04)
    assert sm.utility(total, 69.0, 0.7) == pytest.approx(0.7 * 26.04 + 0.3 * 69.0)
    assert sm.utility(total, 69.0, 0.7) == pytest.approx(38.928)


def test_slot_reward_eq23_penalises_violations():
    # G = [10, 20], user 2 late (25 s > 20 s): -(10 + 20 + 10) / 2
    assert sm.slot_reward(np.array([10.0, 20.0]), np.array([15.0, 25.0]), 20.0, 10.0) == -20.0
    assert sm.slot_reward(np.array([10.0, 20.0]), np.array([20.0, 5.0]), 20.0, 10.0) == -15.0


def test_frame_reward_eq32_capacity_penalty():
    rewards = np.array([-10.0, -20.0])
    sizes = np.array([8.0, 9.0, 5.0])
    assert sm.frame_reward(rewards, [1, 1, 0], sizes, 20.0, 100.0) == -15.0
    assert sm.frame_reward(rewards, [1, 1, 1], sizes, 20.0, 100.0) == -115.0


def test_amend_bandwidth_sec622():
    np.testing.assert_allclose(sm.amend_bandwidth(np.array([1.0, 3.0])), [0.25, 0.75])
    np.testing.assert_allclose(sm.amend_bandwidth(np.zeros(4)), [0.25] * 4)  # all zero: even


def test_amend_steps_sec622():
    served = np.array([True, False, True])
    xi = sm.amend_steps(np.array([0.2, 0.6, 0.9]), served)
    np.testing.assert_allclose(xi, [0.2 / 1.1, 0.0, 0.9 / 1.1])
    np.testing.assert_allclose(sm.amend_steps(np.zeros(3), served), [0.5, 0.0, 0.5])
    np.testing.assert_allclose(sm.amend_steps(np.ones(3), np.zeros(3, bool)), [0.0, 0.0, 0.0])


def test_amended_actions_satisfy_11d_to_11g_for_random_raw_actions():
    rng = np.random.default_rng(7)
    raw = rng.random((500, 12)) * (rng.random((500, 12)) > 0.3)  # many exact zeros
    served = rng.random((500, 12)) > 0.5
    b, xi = sm.amend_bandwidth(raw), sm.amend_steps(raw, served)
    assert not np.isnan(b).any() and not np.isnan(xi).any()
    assert ((b >= 0) & (b <= 1)).all() and np.allclose(b.sum(axis=1), 1.0)  # (11b), (11e)
    assert ((xi >= 0) & (xi <= 1)).all() and (xi.sum(axis=1) <= 1 + 1e-12).all()  # (11c), (11f)
    assert (xi[~served] == 0).all()  # (11g)


def test_amend_allocation_splits_the_raw_action_at_u():
    served = np.array([True, False, True])
    b, xi = sm.amend_allocation(np.array([1.0, 3.0, 0.0, 0.2, 0.6, 0.9]), served)
    np.testing.assert_allclose(b, [0.25, 0.75, 0.0])
    np.testing.assert_allclose(xi, [0.2 / 1.1, 0.0, 0.9 / 1.1])
    _, capped = sm.amend_allocation(np.array([1.0, 1.0, 1.0, 0.2, 0.6, 0.3]), served, "cap")
    np.testing.assert_allclose(capped, [0.2, 0.0, 0.3])  # sum 0.5 <= 1: kept as is


def test_amend_cache_sec632_msb_is_model_0():
    # M = 4, a = 10 = 0b1010: rho_1 = floor(10/8) mod 2 = 1, rho_2 = 0, rho_3 = 1, rho_4 = 0
    np.testing.assert_array_equal(sm.amend_cache(10, 4), [True, False, True, False])
    assert sm.cache_to_action(np.array([True, False, True, False])) == 10
    for a in (0, 1, 511, 1023):
        assert sm.cache_to_action(sm.amend_cache(a, 10)) == a
    with pytest.raises(ValueError, match="outside"):
        sm.amend_cache(16, 4)


def test_greedy_cache_respects_capacity_and_priority():
    sizes = np.array([8.0, 9.0, 5.0, 2.0])
    cache = sm.greedy_cache(np.array([4.0, 3.0, 2.0, 1.0]), sizes, 20.0)
    # 8 + 9 = 17; 5 does not fit; 2 does -> 19 GB
    np.testing.assert_array_equal(cache, [True, True, False, True])


def test_evaluate_slot_matches_hand_composition_and_caps_zero_bandwidth():
    config = ScenarioConfig()
    catalogue = build_catalogue(config.catalogue)
    radio = RadioParams.from_config(config)
    cache = np.zeros(10, dtype=bool)
    cache[[0, 2]] = True
    services = np.array([0, 1, 2])
    gain = np.array([1e-10, 1e-11, 1e-12])
    inputs = np.array([6e7, 7e7, 8e7])
    b = np.array([0.5, 0.5, 0.0])
    xi = np.array([0.1, 0.0, 0.0])
    out = evaluate_slot(radio, catalogue, cache, services, gain, inputs, b, xi)
    # user 0: cached, 100 steps
    r_up = (
        0.5 * 20e6 * np.log2(1 + radio.user_tx_power_w * 1e-10 / (radio.noise_psd_w_per_hz * 1e7))
    )
    r_dw = 40e6 * np.log2(1 + radio.bs_tx_power_w * 1e-10 / (radio.noise_psd_w_per_hz * 40e6))
    up = 6e7 / r_up
    dw = catalogue.output_bits[0] / r_dw
    gen = catalogue.b1_s_per_step[0] * 100 + catalogue.b2_s[0]
    a1, a2, a3, a4 = (
        catalogue.a1_steps[0],
        catalogue.a2_quality[0],
        catalogue.a3_steps[0],
        catalogue.a4_quality[0],
    )
    tv = a2 + (a4 - a2) * np.clip((100 - a1) / (a3 - a1), 0, 1)
    assert out.up_s[0] == pytest.approx(up)
    assert out.dw_s[0] == pytest.approx(dw)
    assert out.gen_s[0] == pytest.approx(gen)
    assert out.quality[0] == pytest.approx(tv)
    assert out.utility[0] == pytest.approx(0.7 * (up + dw + gen) + 0.3 * tv)
    # user 1: miss -> backhaul both ways, cloud at A3 steps, TV = A4
    assert out.gen_s[1] == pytest.approx(
        catalogue.b1_s_per_step[1] * catalogue.a3_steps[1] + catalogue.b2_s[1]
    )
    assert out.quality[1] == catalogue.a4_quality[1]
    # user 2: no bandwidth -> infinite delay, recorded as the cap and a violation
    assert out.up_s[2] == config.utility.delay_cap_s and out.violation[2]
    assert out.total_s[2] == pytest.approx(out.up_s[2] + out.dw_s[2] + out.gen_s[2])
    assert np.isfinite(out.reward)
    expected = -np.mean(out.utility + 10.0 * (out.total_s > 20.0))
    assert out.reward == pytest.approx(expected)


def test_evaluate_slot_broadcasts_over_candidate_batch():
    config = ScenarioConfig()
    catalogue = build_catalogue(config.catalogue)
    radio = RadioParams.from_config(config)
    cache = np.ones(10, dtype=bool)
    services = np.array([0, 3])
    gain, inputs = np.array([1e-10, 1e-11]), np.array([6e7, 7e7])
    b = np.array([[0.5, 0.5], [0.2, 0.8]])
    xi = np.array([[0.1, 0.2], [0.0, 0.5]])
    batch = evaluate_slot(radio, catalogue, cache, services, gain, inputs, b, xi)
    for i in range(2):
        single = evaluate_slot(radio, catalogue, cache, services, gain, inputs, b[i], xi[i])
        np.testing.assert_allclose(batch.utility[i], single.utility)
        assert batch.reward[i] == pytest.approx(single.reward)

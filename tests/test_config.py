"""Scenario defaults (Table 2, Sec. 7.1), TOML round trip, errors that name the key."""

import json
from pathlib import Path

import numpy as np
import pytest

from testbed.core.config import (
    ConfigError,
    ScenarioConfig,
    build_catalogue,
    dbm_to_watt,
    load_config,
    save_config,
)


def test_defaults_are_table_2():
    c = ScenarioConfig()
    assert (c.network.num_users, c.catalogue.num_models) == (10, 10)
    assert (c.timing.num_frames, c.timing.slots_per_frame, c.timing.slot_duration_s) == (10, 10, 20)
    assert c.network.uplink_bandwidth_hz == 20e6 and c.network.downlink_bandwidth_hz == 40e6
    assert (c.network.user_tx_power_dbm, c.network.bs_tx_power_dbm) == (23, 43)
    assert c.network.noise_psd_dbm_per_hz == -176
    assert c.network.backhaul_up_rate_bps == c.network.backhaul_down_rate_bps == 100e6
    assert c.catalogue.total_steps == 1000 and c.catalogue.cache_capacity_gb == 20
    assert (c.utility.alpha, c.utility.slot_penalty, c.utility.frame_penalty) == (0.7, 10, 100)
    assert c.catalogue.popularity_states == (0.2, 0.5, 0.7)
    assert c.catalogue.popularity_transition[1] == (0.1, 0.7, 0.2)  # eq. (37)
    assert c.network.location_transition[2] == (0.1, 0.3, 0.6)  # eq. (36)


def test_dbm_to_watt():
    assert dbm_to_watt(30.0) == pytest.approx(1.0)
    assert dbm_to_watt(23.0) == pytest.approx(0.19952623)
    assert dbm_to_watt(-176.0) == pytest.approx(2.511886e-21)


def test_catalogue_draws_in_paper_ranges_and_follow_model_seed():
    c = ScenarioConfig()
    cat = build_catalogue(c.catalogue)
    assert ((cat.size_gb >= 2) & (cat.size_gb <= 10)).all()
    assert ((cat.output_bits >= 5 * 8e6) & (cat.output_bits <= 10 * 8e6)).all()
    assert ((cat.a1_steps >= 50) & (cat.a1_steps <= 100)).all()
    assert ((cat.a2_quality >= 100) & (cat.a2_quality <= 150)).all()
    assert ((cat.a3_steps >= 150) & (cat.a3_steps <= 200)).all()
    assert ((cat.a4_quality > 0) & (cat.a4_quality <= 50)).all()
    assert ((cat.b1_s_per_step > 0) & (cat.b1_s_per_step <= 0.5)).all()
    assert ((cat.b2_s > 0) & (cat.b2_s <= 10)).all()
    again = build_catalogue(c.replace(seed=99).catalogue)  # run seed does not move the models
    np.testing.assert_array_equal(cat.a1_steps, again.a1_steps)
    other = build_catalogue(c.replace(**{"catalogue.model_seed": 7}).catalogue)
    assert not np.array_equal(cat.a1_steps, other.a1_steps)


def test_toml_round_trip(tmp_path):
    c = ScenarioConfig().replace(**{"network.num_users": 14, "seed": 5, "utility.alpha": 0.4})
    save_config(c, tmp_path / "s.toml")
    assert load_config(tmp_path / "s.toml") == c


def test_partial_toml_keeps_defaults(tmp_path):
    (tmp_path / "s.toml").write_text("seed = 3\n[network]\nnum_users = 18\n")
    c = load_config(tmp_path / "s.toml")
    assert c.network.num_users == 18 and c.seed == 3 and c.catalogue.num_models == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[utility]\nalpha = 1.5\n", r"utility\.alpha = 1\.5 is out of range: allowed \[0, 1\]"),
        ("[network]\nnum_users = 0\n", r"network\.num_users = 0 is out of range"),
        ("[timing]\nslot_duration_s = -1.0\n", r"timing\.slot_duration_s .*allowed \(0, inf\)"),
        ("[network]\nnum_user = 3\n", r"unknown key\(s\) \['network\.num_user'\]"),
        ("[catalogue]\na1_steps = [50.0, 160.0]\n", r"catalogue\.a1_steps must lie below"),
        (
            "[network]\nlocation_transition = [[1.0, 0.0], [0.0, 1.0]]\n",
            r"network\.location_transition must be a 3x3 matrix",
        ),
        (
            "[catalogue]\npopularity_transition = [[0.5, 0.6, 0.0], [0, 1, 0], [0, 0, 1]]\n",
            r"catalogue\.popularity_transition must be row-stochastic",
        ),
        ("[network]\nnum_users = 2.5\n", r"network\.num_users must be an integer"),
        (
            "[network]\ninput_size_mb = [10.0, 5.0]\n",
            r"network\.input_size_mb .*low must not exceed",
        ),
    ],
)
def test_wrong_values_name_the_key_and_range(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "bad.toml")


def _profile_toml(n: int) -> str:
    rows = []
    for i in range(n):
        rows.append(
            f'[[model]]\nname = "m{i}"\nA1 = {2 + i}.0\nA2 = 21.0\nA3 = {9 + i}.0\nA4 = 11.0\n'
            f"B1 = 0.0{i + 1}\nB2 = 0.004\n"
        )
    return '[meta]\ndevice = "cpu"\n' + "\n".join(rows)


def test_profile_replaces_curve_draws(tmp_path):
    (tmp_path / "p.toml").write_text(_profile_toml(10))
    (tmp_path / "scenario.toml").write_text('[catalogue]\nprofile = "p.toml"\n')
    c = load_config(tmp_path / "scenario.toml")  # relative to the scenario file
    assert c.catalogue.profile == str((tmp_path / "p.toml").resolve())
    cat = build_catalogue(c.catalogue)
    assert cat.names[3] == "m3"
    np.testing.assert_allclose(cat.a1_steps, np.arange(10) + 2.0)
    np.testing.assert_allclose(cat.b1_s_per_step[:2], [0.01, 0.02])
    default = build_catalogue(ScenarioConfig().catalogue)
    np.testing.assert_array_equal(cat.size_gb, default.size_gb)  # c_m kept apart from curves


def test_profile_json_and_errors(tmp_path):
    models = [{"A1": 1, "A2": 20, "A3": 8, "A4": 10, "B1": 0.01, "B2": 0.0, "size_gb": 3}] * 10
    (tmp_path / "p.json").write_text(json.dumps({"model": models}))
    c = ScenarioConfig().replace(**{"catalogue.profile": str(tmp_path / "p.json")})
    assert (build_catalogue(c.catalogue).size_gb == 3).all()
    (tmp_path / "short.toml").write_text(_profile_toml(4))
    c = ScenarioConfig().replace(**{"catalogue.profile": str(tmp_path / "short.toml")})
    with pytest.raises(ConfigError, match=r"profile has 4 models but catalogue\.num_models = 10"):
        build_catalogue(c.catalogue)
    bad = [{**models[0], "A3": 0.5}] * 10
    (tmp_path / "bad.json").write_text(json.dumps({"model": bad}))
    c = ScenarioConfig().replace(**{"catalogue.profile": str(tmp_path / "bad.json")})
    with pytest.raises(ConfigError, match=r"model\[0\]\.quality\.tv: A1 must be below A3"):
        build_catalogue(c.catalogue)


def test_committed_cpu_profile_drives_the_simulator(tmp_path):
    from agents.optimal import OptimalAllocation
    from agents.schrs import StaticPopularCaching
    from testbed.core.config import load_profile
    from testbed.sim.runner import run

    profile = Path(__file__).resolve().parents[1] / "calibration" / "profiles" / "cpu_zoo.toml"
    (tmp_path / "s.toml").write_text(
        f'[catalogue]\nprofile = "{profile}"\ntotal_steps = 50\n'
        "[timing]\nnum_frames = 2\nslots_per_frame = 3\n"
    )
    config = load_config(tmp_path / "s.toml")
    catalogue = build_catalogue(config.catalogue)
    entries = load_profile(profile).models
    assert catalogue.names == tuple(e["name"] for e in entries)
    np.testing.assert_allclose(catalogue.b1_s_per_step, [e["B1"] for e in entries])
    _, writer = run(
        config,
        StaticPopularCaching(config, catalogue),
        OptimalAllocation(config, catalogue),
        1,
        catalogue=catalogue,
    )
    trace = writer.to_frame()
    np.testing.assert_allclose(trace["B1"], catalogue.b1_s_per_step[trace["service"]])
    assert (trace["steps"] <= catalogue.a3_steps.max() + 1e-9).all()  # never beyond A3


def test_quality_metric_selects_the_profiles_fit_and_is_checked(tmp_path):
    """catalogue.quality_metric picks the A1..A4 fitted on that measure; an old profile's
    top-level A1..A4 is its TV fit; a measure the profile lacks is one line naming it."""
    model = {"name": "m", "B1": 0.01, "B2": 0.002}
    tv = {"A1": 1.0, "A2": 20.0, "A3": 3.0, "A4": 4.0}
    mae = {"A1": 2.0, "A2": 35.0, "A3": 12.0, "A4": 5.5}
    (tmp_path / "new.json").write_text(
        json.dumps(
            {
                "repaint": {"jump_length": 5, "jump_n_sample": 5},
                "model": [{**model, "quality": {"tv": tv, "hole_mae": mae}}],
            }
        )
    )
    (tmp_path / "old.json").write_text(json.dumps({"model": [{**model, **tv}]}))
    base = ScenarioConfig().replace(**{"catalogue.num_models": 1})

    def catalogue(profile: str, metric: str = "tv"):
        return build_catalogue(
            base.replace(
                **{"catalogue.profile": str(tmp_path / profile), "catalogue.quality_metric": metric}
            ).catalogue
        )

    new = catalogue("new.json", "hole_mae")
    assert (new.a1_steps[0], new.a2_quality[0], new.a3_steps[0], new.a4_quality[0]) == (
        2.0,
        35.0,
        12.0,
        5.5,
    )
    assert new.quality_metric == "hole_mae"
    assert (new.repaint.jump_length, new.repaint.jump_n_sample) == (5, 5)
    assert catalogue("new.json").a3_steps[0] == 3.0
    old = catalogue("old.json")
    assert (old.a2_quality[0], old.repaint.jump_n_sample) == (20.0, 1)
    with pytest.raises(ConfigError, match=r"holds no \[model\.quality\.hole_mae\] fit"):
        catalogue("old.json", "hole_mae")
    with pytest.raises(ConfigError, match=r"catalogue\.quality_metric = 'lpips': allowed"):
        ScenarioConfig().replace(**{"catalogue.quality_metric": "lpips"})
    with pytest.raises(ConfigError, match=r"needs a catalogue\.profile"):
        ScenarioConfig().replace(**{"catalogue.quality_metric": "hole_mae"})
    (tmp_path / "bad.json").write_text(
        json.dumps({"repaint": {"jump_length": 0}, "model": [{**model, **tv}]})
    )
    with pytest.raises(ConfigError, match=r"repaint\.jump_length"):
        catalogue("bad.json")

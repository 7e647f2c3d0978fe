"""Fits of eq. (7) (piecewise linear TV) and eq. (8) (linear latency), and the profile format."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from calibration.fit import fit_latency, fit_quality, r_squared
from testbed.core.system_model import edge_quality

STEPS = np.repeat([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50], 10).astype(float)


@pytest.mark.parametrize(
    ("a1", "a2", "a3", "a4"),
    [(2.0, 21.3, 8.0, 11.2), (60.0, 110.0, 170.0, 28.0), (0.0, 18.0, 5.0, 9.0)],
)
def test_quality_fit_recovers_both_breakpoints_and_levels(a1, a2, a3, a4):
    steps = STEPS * (4.0 if a3 > 50 else 1.0)  # the paper's A's need a 200-step grid
    rng = np.random.default_rng(1)
    tv = edge_quality(steps, a1, a2, a3, a4) + rng.normal(0.0, 0.3, steps.size)
    fit = fit_quality(steps, tv)
    step_tolerance = 0.02 * steps.max()
    assert fit.a1 == pytest.approx(a1, abs=step_tolerance)
    assert fit.a3 == pytest.approx(a3, abs=step_tolerance)
    assert fit.a2 == pytest.approx(a2, abs=0.3)
    assert fit.a4 == pytest.approx(a4, abs=0.3)
    assert 0.0 <= fit.a1 < fit.a3
    assert fit.r2 > 0.95


def test_quality_fit_is_exact_on_noiseless_points_between_grid_nodes():
    steps = np.arange(0.0, 31.0)
    tv = edge_quality(steps, 3.0, 20.0, 11.0, 10.0)
    fit = fit_quality(steps, tv)
    assert (fit.a1, fit.a3) == (3.0, 11.0)
    assert fit.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(fit.predict(steps), tv, atol=1e-9)


def test_latency_fit_recovers_slope_and_intercept():
    rng = np.random.default_rng(2)
    latency_s = 0.0135 * STEPS + 0.004 + rng.normal(0.0, 0.0005, STEPS.size)
    fit = fit_latency(STEPS, latency_s)
    assert fit.b1 == pytest.approx(0.0135, rel=0.01)
    assert fit.b2 == pytest.approx(0.004, abs=0.0005)
    assert not fit.b2_clamped
    assert fit.r2 > 0.998


def test_negative_intercept_is_clamped_and_slope_refit_through_origin():
    latency_s = 0.02 * STEPS - 0.003
    fit = fit_latency(STEPS, latency_s)
    assert fit.b2_clamped
    assert fit.b2 == 0.0
    assert fit.b1 == pytest.approx(float(STEPS @ latency_s / (STEPS @ STEPS)))
    assert 0.0195 < fit.b1 < 0.02


def test_latency_that_does_not_grow_is_rejected():
    with pytest.raises(ValueError, match="does not grow"):
        fit_latency(STEPS, 1.0 - 0.001 * STEPS)


def test_r_squared():
    observed = np.array([1.0, 2.0, 3.0, 4.0])
    assert r_squared(observed, observed) == 1.0
    assert r_squared(observed, np.full(4, 2.5)) == 0.0
    assert r_squared(observed, observed + 1.0) == pytest.approx(1.0 - 4.0 / 5.0)


def test_profile_toml_loads_with_floats_in_zoo_order(tmp_path):
    from calibration.fit import LatencyFit, QualityFit
    from calibration.sweep import ModelProfile, profile_toml
    from testbed.core.config import RepaintSettings, load_profile

    def fits(tv: QualityFit) -> dict[str, QualityFit]:
        return {"tv": tv, "hole_mae": QualityFit(1.0, 40.0, 12.0, 6.5, 0.8)}

    profiles = [
        ModelProfile(
            "brick",
            fits(QualityFit(2.0, 21.3, 8.0, 11.2, 0.97)),
            LatencyFit(0.0135, 0.004, 0.998, False),
        ),
        ModelProfile(
            "text", fits(QualityFit(1.0, 30.0, 6.5, 12.0, 0.9)), LatencyFit(0.012, 0.0, 0.99, True)
        ),
    ]
    created = datetime(2026, 11, 28, 12, tzinfo=UTC)
    text = profile_toml(profiles, "cpu", created, repaint=RepaintSettings(5, 4))
    assert text.startswith('[meta]\ndevice = "cpu"\ncreated = "2026-11-28T12:00:00+00:00"\n')
    assert "[repaint]\njump_length = 5\njump_n_sample = 4\n" in text
    assert "B1 = 0.0135\nB2 = 0.004\nr2_latency = 0.998\n" in text
    assert "[model.quality.tv]\nA1 = 2.0\nA2 = 21.3\nA3 = 8.0\nA4 = 11.2\nr2 = 0.97\n" in text
    loaded = tomllib.loads(text)
    assert loaded["meta"]["source"] == "testbed calibrate"
    assert [m["name"] for m in loaded["model"]] == ["brick", "text"]
    for model in loaded["model"]:
        assert all(isinstance(model[key], float) for key in ("B1", "B2", "r2_latency"))
        for curve in model["quality"].values():
            assert all(isinstance(curve[key], float) for key in ("A1", "A2", "A3", "A4", "r2"))
    assert loaded["model"][1]["B2"] == 0.0
    (tmp_path / "p.toml").write_text(text)
    profile = load_profile(tmp_path / "p.toml")
    assert profile.repaint == RepaintSettings(5, 4)
    assert sorted(profile.curves) == ["hole_mae", "tv"]
    np.testing.assert_array_equal(profile.curve("tv", "p")["A3"], [8.0, 6.5])
    np.testing.assert_array_equal(profile.curve("hole_mae", "p")["A4"], [6.5, 6.5])


def test_committed_cpu_profile_loads_in_the_simulator_config():
    from edge_node.zoo import zoo_names
    from testbed.core.config import load_profile

    path = Path(__file__).resolve().parents[1] / "calibration" / "profiles" / "cpu_zoo.toml"
    profile = load_profile(path)
    assert [m["name"] for m in profile.models] == zoo_names()
    assert tomllib.loads(path.read_text())["meta"]["device"] == "cpu"
    for model, tv in zip(profile.models, profile.curves["tv"], strict=True):
        assert 0.0 <= tv["A1"] < tv["A3"] < 10.0  # TV settles within a few steps at 32x32
        assert tv["A2"] > 2.0 * tv["A4"]  # 1-step fills are noisy, settled ones smooth
        assert 0.005 < model["B1"] < 0.05  # s per UNet call of a 1.06 M-parameter UNet on 1 core
        assert tv["r2"] > 0.8 and model["r2_latency"] > 0.9  # an old profile's r2_tv is read as r2

"""A real (small) step sweep of a zoo model through the `calibrate` command."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("matplotlib")

from calibration.cli import register
from calibration.sweep import MEASUREMENT_COLUMNS


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_calibrate_writes_measurements_profile_and_figure(tmp_path: Path):
    args = parse(
        [
            "calibrate",
            "--models", "brick",
            "--steps", "1,2,3,5,8",
            "--images", "2",
            "--device", "cpu",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert args.handler(args) == 0
    measurements = pd.read_csv(tmp_path / "measurements.csv")
    assert tuple(measurements.columns) == MEASUREMENT_COLUMNS
    assert len(measurements) == 5 * 2
    assert (measurements["unet_calls"] == measurements["steps"]).all()
    assert (measurements["batch"] == 1).all() and (measurements["device"] == "cpu").all()
    # the brick model sharpens its fill: noisy after 1 step, close to the texture's TV by 8
    mean_tv = measurements.groupby("steps")["tv"].mean()
    assert mean_tv[1] > 2.0 * mean_tv[8]
    profile = tomllib.loads((tmp_path / "profile.toml").read_text())
    (brick,) = profile["model"]
    assert brick["name"] == "brick" and profile["meta"]["device"] == "cpu"
    assert sorted(brick["quality"]) == ["hole_mae", "tv"]  # eq. (7) on every measure
    for curve in brick["quality"].values():
        assert 0.0 <= curve["A1"] < curve["A3"] <= 8.0
        assert curve["A2"] > curve["A4"] > 0.0
    assert brick["B1"] > 0.0 and brick["B2"] >= 0.0
    assert profile["repaint"] == {"jump_length": 10, "jump_n_sample": 1}
    assert (tmp_path / "fig3_brick.png").stat().st_size > 10_000
    # refitting the written measurements reproduces the profile without running RePaint
    refit_dir = tmp_path / "refit"
    refit = parse(
        ["calibrate", "--measurements", str(tmp_path / "measurements.csv"), "--out", str(refit_dir)]
    )
    assert refit.handler(refit) == 0
    assert tomllib.loads((refit_dir / "profile.toml").read_text())["model"] == profile["model"]

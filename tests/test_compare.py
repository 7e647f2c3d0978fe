"""Multi-seed comparison: confidence intervals and the files it writes."""

import math

import pandas as pd
import pytest

from testbed.core.config import ScenarioConfig
from testbed.core.metrics import confidence_halfwidth
from testbed.lab.compare import write_comparison


def test_confidence_halfwidth_hand_value():
    # mean 2, s = 1, sem = 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert confidence_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert math.isnan(confidence_halfwidth([5.0]))  # one value: no interval


def test_write_comparison(tmp_path):
    config = ScenarioConfig().replace(**{"timing.num_frames": 2, "timing.slots_per_frame": 3})
    summary = write_comparison(config, ["rcars"], [0, 1, 2], 1, tmp_path)
    rows = pd.read_csv(tmp_path / "compare.csv")
    assert list(rows["seed"]) == [0, 1, 2] and (tmp_path / "compare.png").stat().st_size > 0
    assert summary.loc[0, "utility"] == pytest.approx(rows["utility"].mean())
    assert summary.loc[0, "utility_ci95"] == pytest.approx(confidence_halfwidth(rows["utility"]))
    assert rows["utility"].nunique() == 3  # seeds give different worlds


def test_compare_with_a_trained_checkpoint(tmp_path):
    from agents.t2drl import TrainConfig
    from testbed.training.trainer import train

    config = ScenarioConfig().replace(
        **{"network.num_users": 4, "timing.num_frames": 2, "timing.slots_per_frame": 3}
    )
    train(TrainConfig(episodes=1), config, tmp_path / "run")
    summary = write_comparison(
        config,
        ["t2drl", "rcars"],
        [5, 6],
        1,
        tmp_path / "cmp",
        checkpoints={"t2drl": tmp_path / "run"},
    )
    assert list(summary["policy"]) == ["t2drl", "rcars"] and (summary["seeds"] == 2).all()
    assert summary.loc[0, "decision_ms_per_slot"] > summary.loc[1, "decision_ms_per_slot"]

"""Convergence of a training run: the deterministic evaluation curve
over the last 20% of training, judged flat when its least-squares line moves by at most 1%
of its mean across that window; every experiment writes the verdict of each learned run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from testbed.lab.convergence import FLAT_DRIFT, convergence


def _metrics(tail: list[float], episodes: int = 100, every: int = 5) -> pd.DataFrame:
    """A metrics.csv of ``episodes`` episodes, evaluated every ``every`` (50 before the
    tail, ``tail`` on its last evaluations)."""
    frame = pd.DataFrame({"episode": np.arange(episodes)})
    frame["eval_utility"] = np.nan
    evals = list(range(every - 1, episodes, every))
    values = [50.0] * (len(evals) - len(tail)) + tail
    frame.loc[evals, "eval_utility"] = values
    return frame


def test_a_constant_tail_is_flat() -> None:
    check = convergence(_metrics([40.0, 40.0, 40.0, 40.0]))
    assert check["eval_points"] == 20 and check["tail_points"] == 4  # episodes 84..99
    assert check["tail_mean"] == 40.0 and check["spread"] == 0.0
    assert check["drift"] == pytest.approx(0.0, abs=1e-12)
    assert check["flat"] is True


def test_a_rising_tail_is_not_flat() -> None:
    # slope 1/5 per episode over the 15 episodes 84..99: drift 3 / 41.5
    check = convergence(_metrics([40.0, 41.0, 42.0, 43.0]))
    assert check["drift"] == pytest.approx(3.0 / 41.5)
    assert check["spread"] == pytest.approx(3.0 / 41.5)
    assert check["flat"] is False


def test_one_blip_moves_the_line_little() -> None:
    # deviations -0.1, -0.1, 0.3, -0.1 at x - 91.5 = -7.5, -2.5, 2.5, 7.5: slope 1.0 / 125
    check = convergence(_metrics([40.0, 40.0, 40.4, 40.0]))
    assert check["drift"] == pytest.approx(1.0 / 125 * 15 / 40.1)
    assert check["spread"] == pytest.approx(0.4 / 40.1)
    assert check["drift"] <= FLAT_DRIFT and check["flat"] is True


def test_a_curve_with_too_few_evaluations_is_not_judged() -> None:
    check = convergence(_metrics([40.0], episodes=4, every=4))  # evaluated once, at the end
    assert check["tail_points"] == 1 and math.isnan(check["drift"])
    assert check["flat"] is False


def test_another_column_and_tail() -> None:
    frame = _metrics([40.0, 40.0, 40.0, 40.0]).rename(columns={"eval_utility": "reward"})
    check = convergence(frame, "reward", tail=0.5)  # episodes 54..99: six at 50, four at 40
    assert check["tail_points"] == 10 and check["tail_mean"] == pytest.approx(46.0)
    assert check["flat"] is False  # 50 -> 40 inside the window


def test_an_experiment_writes_the_verdict_of_every_learned_run(tmp_path) -> None:
    from runs import tiny_fig8

    tiny_fig8(tmp_path, ("t2drl", "rcars"))
    checks = pd.read_csv(tmp_path / "fig8_convergence.csv")
    assert len(checks) == 7  # one learned run per capacity, none for the baseline
    assert set(checks["policy"]) == {"t2drl"} and (checks["tail_points"] == 1).all()
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["workers"] == 1 and timing["wall_s"] > 0

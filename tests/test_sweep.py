"""`testbed sweep`: any scenario key over a list of values, the same
tasks as Figs. 7-8, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from runs import mtimes

from testbed.cli import main
from testbed.lab.experiments import run_experiment

TINY = ["--set", "timing.num_frames=2", "--set", "timing.slots_per_frame=4"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "users"
    args = ["sweep", "--set", "network.num_users=3,5", *TINY, "--policies", "t2drl", "optimal"]
    args += ["rcars", "--seeds", "2", "--quick", "--episodes", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    return out


def test_a_sweep_writes_every_point_policy_and_seed_with_plots(swept) -> None:
    rows = pd.read_csv(swept / "sweep.csv")
    assert len(rows) == 2 * 3 * 2  # values x policies x seeds
    assert set(rows["network.num_users"]) == {3, 5}
    assert set(rows["policy"]) == {"t2drl", "optimal", "rcars"}
    summary = pd.read_csv(swept / "sweep_summary.csv").set_index(["network.num_users", "policy"])
    assert (summary["seeds"] == 2).all()
    for users in (3, 5):  # the optimiser is best at every point
        assert summary.loc[(users, "optimal"), "utility"] < summary.loc[(users, "rcars"), "utility"]
    assert (swept / "sweepa.png").stat().st_size > 0 and (swept / "sweepb.png").stat().st_size > 0
    stored = json.loads((swept / "sweep.json").read_text())
    assert stored["key"] == "network.num_users" and stored["values"] == [3, 5]
    assert (swept / "work" / "network.num_users5" / "t2drl_seed1" / "checkpoint").is_dir()


def test_a_resumed_sweep_runs_nothing_again(swept) -> None:
    before = mtimes(swept / "work")
    args = ["sweep", "--resume", str(swept), "--set", "network.num_users=3,5", *TINY]
    args += ["--policies", "t2drl", "optimal", "rcars", "--seeds", "2", "--quick"]
    assert main([*args, "--episodes", "1", "--quiet"]) == 0
    assert mtimes(swept / "work") == before
    # another value list is another sweep: refused, not mixed in
    assert main([*args[:4], "network.num_users=3,6", *args[5:], "--quiet"]) == 2


def test_a_sweep_of_the_capacity_gives_the_numbers_of_fig8(tmp_path) -> None:
    policies = ("optimal", "rcars")
    run_experiment(
        "fig8", tmp_path / "fig8", quick=True, log=lambda m: None, seeds=1, policies=policies
    )
    args = ["sweep", "--set", "catalogue.cache_capacity_gb=20,26,32", "--policies", *policies]
    assert main([*args, "--seeds", "1", "--quick", "--quiet", "--out", str(tmp_path / "s")]) == 0
    fig8 = pd.read_csv(tmp_path / "fig8" / "fig8.csv").rename(
        columns={"capacity_gb": "catalogue.cache_capacity_gb"}
    )
    sweep = pd.read_csv(tmp_path / "s" / "sweep.csv")
    keep = ["catalogue.cache_capacity_gb", "policy", "seed", "utility", "hit_ratio"]
    fig8 = fig8[fig8["catalogue.cache_capacity_gb"].isin([20, 26, 32])][keep]
    pd.testing.assert_frame_equal(
        sweep[keep].reset_index(drop=True), fig8.reset_index(drop=True), check_dtype=False
    )

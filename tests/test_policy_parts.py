"""Composite policies ``CACHING+ALLOCATION``: each part is the named policy's own, a part
named twice is that policy, and a bad name is one line naming the bad part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from testbed.cli import main
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.lab.compare import compare_policies
from testbed.sim.policies import POLICIES, PolicyError, make_policies, policy_parts
from testbed.sim.runner import run

TINY = {"network.num_users": 4, "timing.num_frames": 2, "timing.slots_per_frame": 3}
TINY_ARGS = ["--set", "timing.num_frames=2", "--set", "timing.slots_per_frame=3", "--users", "3"]
SEEDS = [0, 1]
# every metric but the decision time, which is wall-clock time
SAME = ["utility", "hit_ratio", "violation_rate", "mean_slot_reward"]


@pytest.fixture(scope="module")
def config() -> ScenarioConfig:
    return ScenarioConfig().replace(**TINY)


def test_composite_of_two_baselines_takes_each_part(config) -> None:
    rows = compare_policies(config, ["optimal", "rcars", "optimal+rcars"], SEEDS, 1)
    by = {name: group.reset_index(drop=True) for name, group in rows.groupby("policy")}
    composite = by["optimal+rcars"]
    assert list(composite["seed"]) == SEEDS  # rows named by the composite
    # the hit ratio is the cache's alone: optimal's caching, whatever the allocation
    assert list(composite["hit_ratio"]) == list(by["optimal"]["hit_ratio"])
    assert (composite["utility"] != by["optimal"]["utility"]).all()  # another allocation
    assert (composite["utility"] != by["rcars"]["utility"]).all()  # another cache


def test_composite_plays_the_cache_of_one_and_the_split_of_the_other(config, tmp_path) -> None:
    catalogue = build_catalogue(config.catalogue)
    traces = {}
    for name in ("optimal", "optimal+rcars"):
        caching, allocation = make_policies(name, config, catalogue)
        summary, _ = run(config, caching, allocation, 1, tmp_path / f"{name}.parquet", catalogue)
        traces[name] = pd.read_parquet(tmp_path / f"{name}.parquet")
    assert (summary.caching_policy, summary.allocation_policy) == ("optimal", "even")
    composite = traces["optimal+rcars"]
    assert composite["cached"].equals(traces["optimal"]["cached"])  # slot by slot
    assert np.allclose(composite["b"], 1 / config.network.num_users)  # the even split
    edge = composite[composite["cached"]]
    per_slot = edge.groupby(["frame", "slot"])["xi"]
    assert np.allclose(edge["xi"], 1 / per_slot.transform("size"))
    assert (composite.loc[~composite["cached"], "xi"] == 0).all()


def test_a_policy_combined_with_itself_is_that_policy(config) -> None:
    rows = compare_policies(config, ["rcars", "rcars+rcars"], SEEDS, 1)
    plain = rows[rows["policy"] == "rcars"].reset_index(drop=True)
    twice = rows[rows["policy"] == "rcars+rcars"].reset_index(drop=True)
    assert plain["seed"].equals(twice["seed"])
    pd.testing.assert_frame_equal(plain[SAME], twice[SAME])  # RCARS's draws included


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown policy 'nope'"),
        ("nope+rcars", "policy 'nope+rcars': unknown caching part 'nope'"),
        ("t2drl+nope", "policy 't2drl+nope': unknown allocation part 'nope'"),
        ("+rcars", "policy '+rcars': empty caching part"),
        ("optimal+", "policy 'optimal+': empty allocation part"),
        ("rcars+schrs+optimal", "exactly one '+'"),
    ],
)
def test_a_bad_name_is_one_line_naming_the_part(config, name, message) -> None:
    with pytest.raises(PolicyError) as raised:
        make_policies(name, config, build_catalogue(config.catalogue))
    text = str(raised.value)
    assert message in text and str(list(POLICIES)) in text and "\n" not in text
    with pytest.raises(PolicyError) as again:
        policy_parts(name)  # the check the CLI runs before anything is written
    assert str(again.value) == text


@pytest.mark.parametrize("checkpoint", [None, {"ddpg-t2drl": "runs/elsewhere"}])
def test_a_learned_part_without_its_checkpoint_is_named(config, checkpoint) -> None:
    with pytest.raises(PolicyError) as raised:
        make_policies("optimal+t2drl", config, build_catalogue(config.catalogue), checkpoint)
    text = str(raised.value)
    assert "policy 'optimal+t2drl', its allocation part t2drl" in text
    assert "needs a checkpoint" in text and "\n" not in text


def test_compare_checks_every_name_before_the_first_run(config) -> None:
    seen = []
    with pytest.raises(PolicyError, match="unknown allocation part 'rcar'"):
        compare_policies(config, ["rcars", "optimal+rcar"], SEEDS, 1, on_row=seen.append)
    assert seen == []


def test_simulate_writes_the_composite_and_its_parts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--policy", "optimal+rcars", "--quiet", "--out", str(out), *TINY_ARGS]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "optimal+rcars"
    assert (summary["caching_policy"], summary["allocation_policy"]) == ("optimal", "even")


def test_compare_splits_a_gap_with_the_checkpoint_of_the_learned_part(tmp_path: Path) -> None:
    trained = tmp_path / "t2drl"
    fast = ["--set", "allocator.warmup=4", "--set", "caching.warmup=2"]
    train = ["train", "--episodes", "1", "--quiet", "--out", str(trained), *TINY_ARGS, *fast]
    assert main(train) == 0
    out = tmp_path / "cmp"
    policies = ["t2drl", "optimal", "t2drl+optimal", "optimal+t2drl"]
    argv = ["compare", "--policies", *policies, "--seeds", "2", "--quiet", "--out", str(out)]
    # the checkpoint of t2drl serves the plain policy and both composites
    assert main([*argv, "--checkpoint", f"t2drl={trained}", *TINY_ARGS]) == 0
    rows = pd.read_csv(out / "compare.csv")
    assert list(dict.fromkeys(rows["policy"])) == policies
    hits = rows.groupby("policy", sort=False)["hit_ratio"].apply(list)
    assert hits["t2drl+optimal"] == hits["t2drl"] and hits["optimal+t2drl"] == hits["optimal"]
    # a checkpoint used by a composite only is accepted too
    only = ["compare", "--policies", "optimal+t2drl", "--seeds", "1", "--quiet"]
    only += ["--out", str(tmp_path / "only"), "--checkpoint", f"t2drl={trained}", *TINY_ARGS]
    assert main(only) == 0

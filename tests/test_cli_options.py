"""`--set SECTION.KEY=VALUE`, `--resume` that refuses contradicting flags, `--log-level`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from testbed.cli import main

TINY = [
    "--set",
    "timing.num_frames=2",
    "--set",
    "timing.slots_per_frame=3",
    "--users",
    "3",
]


def test_set_overrides_scenario_keys(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--policy", "rcars", "--quiet", "--out", str(out)]
    assert main([*args, *TINY, "--set", "utility.alpha=0.25", "--set", "seed=9"]) == 0
    stored = tomllib.loads((out / "config.toml").read_text())
    assert stored["timing"]["num_frames"] == 2 and stored["utility"]["alpha"] == 0.25
    assert stored["seed"] == 9 and stored["network"]["num_users"] == 3
    assert len(pd.read_parquet(out / "trace.parquet")) == 2 * 3 * 3
    assert list(pd.read_csv(out / "metrics.csv")["episode"]) == [0]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("nope.x=1", "--set nope.x: unknown section 'nope'"),
        ("network=1", "expected SECTION.KEY=VALUE"),
        ("network.bogus=1", "unknown config key 'network.bogus'"),
        ("network.num_users=0", "network.num_users = 0 is out of range"),
        ("train.eval_every=3", "training options apply to `testbed train` only"),
    ],
)
def test_bad_set_is_one_line_naming_the_key(tmp_path: Path, capsys, item: str, message) -> None:
    out = tmp_path / "run"
    code = main(["simulate", "--policy", "rcars", "--out", str(out), "--set", item])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def _train(out: Path, *extra: str) -> int:
    return main(["train", "--episodes", "1", "--quiet", "--out", str(out), *TINY, *extra])


def test_set_reaches_training_options(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["train.eval_every=1", "train.steps_amender='paper'", "allocator.warmup=4"]
    assert _train(out, *[a for s in sets for a in ("--set", s)], "--set", "caching.warmup=2") == 0
    stored = json.loads((out / "train.json").read_text())
    assert stored["eval_every"] == 1 and stored["steps_amender"] == "paper"
    assert stored["allocator"] == {"warmup": 4} and stored["caching"] == {"warmup": 2}
    assert pd.read_csv(out / "metrics.csv")["eval_utility"].notna().all()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("allocator.bogus=1", "unknown ActorCriticConfig key(s) ['bogus']"),
        ("train.nope=1", "--set train.nope: unknown key"),
        ("train.steps_amender='half'", "steps_amender = 'half': allowed ['paper', 'cap']"),
    ],
)
def test_bad_training_option_is_refused_before_anything_is_written(
    tmp_path: Path, capsys, item: str, message: str
) -> None:
    out = tmp_path / "run"
    assert _train(out, "--agent", "ddpg-t2drl", "--set", item) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    assert _train(out, "--set", "allocator.warmup=4", "--set", "caching.warmup=2") == 0
    return out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--agent", "ddpg-t2drl"], "--agent ddpg-t2drl contradicts the stored run"),
        (["--preset", "paper"], "--preset paper contradicts the stored run"),
        (["--set", "allocator.warmup=5"], "--set allocator.warmup=5 contradicts"),
        (["--seed", "42"], "contradict the stored scenario"),
        (["--users", "4"], "contradict the stored scenario"),
        (["--out", "elsewhere"], "a run resumes in place"),
    ],
)
def test_resume_refuses_contradicting_flags(trained: Path, capsys, flags, message) -> None:
    before = (trained / "metrics.csv").read_bytes()
    assert main(["train", "--resume", str(trained), "--episodes", "2", *flags]) == 2
    assert message in capsys.readouterr().err
    assert (trained / "metrics.csv").read_bytes() == before


def test_resume_accepts_agreeing_flags_and_continues(trained: Path) -> None:
    args = ["train", "--resume", str(trained), "--episodes", "2", "--quiet"]
    assert main([*args, "--agent", "t2drl", "--set", "allocator.warmup=4", "--users", "3"]) == 0
    assert list(pd.read_csv(trained / "metrics.csv")["episode"]) == [0, 1]


def test_log_level_is_checked(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "loud", "config"])
    assert exc.value.code == 2
    assert "--log-level" in capsys.readouterr().err

"""`--set SECTION.KEY=VALUE` (parsed once into one typed object), `--resume` that refuses
contradicting flags, `--log-level`, and what an interrupted command says it kept."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from testbed.cli import main
from testbed.commands.common import PRESET_CHOICES
from testbed.commands.overrides import Overrides
from testbed.core.errors import UsageError
from testbed.runs.interrupts import Interrupted

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
    from agents.t2drl import TrainConfig

    preset = TrainConfig.from_options({}).to_json()  # train.json stores the preset resolved
    assert stored["allocator"] == {**preset["allocator"], "warmup": 4}
    assert stored["caching"] == {**preset["caching"], "warmup": 2}
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


def test_set_items_are_grouped_by_section_into_read_only_overrides() -> None:
    items = ["network.num_users=4", "seed=3", "train.eval_every=2", "utility.alpha=0.5"]
    overrides = Overrides.parse([*items, "allocator.warmup=5", "caching.warmup=6"])
    assert dict(overrides.scenario) == {"seed": 3, "network.num_users": 4, "utility.alpha": 0.5}
    assert dict(overrides.train) == {"eval_every": 2}
    assert dict(overrides.allocator) == {"warmup": 5} and dict(overrides.caching) == {"warmup": 6}
    with pytest.raises(TypeError):
        overrides.scenario["seed"] = 1  # type: ignore[index]
    with pytest.raises(UsageError, match=r"--set train.eval_every: training options apply"):
        overrides.refuse_training()
    Overrides.parse(items[:2]).refuse_training()  # no training item: nothing to refuse
    swept = Overrides.parse(["network.num_users=3,4", "utility.alpha=0.5"], sweep=True)
    assert swept.swept == (("network.num_users", (3, 4)),)
    assert dict(swept.scenario) == {"utility.alpha": 0.5}
    allowed = "['seed', 'network.KEY', 'timing.KEY', 'catalogue.KEY', 'utility.KEY', "
    allowed += "'train.KEY', 'allocator.KEY', 'caching.KEY']"
    with pytest.raises(UsageError) as error:
        Overrides.parse(["trian.eval_every=2"])
    assert (
        str(error.value) == f"--set trian.eval_every: unknown section 'trian'; allowed: {allowed}"
    )


def test_set_items_are_parsed_once_per_run(tmp_path: Path, monkeypatch) -> None:
    parsed: list[list[str]] = []
    parse = Overrides.parse.__func__  # type: ignore[attr-defined]

    def counting(cls, items, sweep=False):
        parsed.append(list(items))
        return parse(cls, items, sweep)

    monkeypatch.setattr(Overrides, "parse", classmethod(counting))
    sets = ["--set", "allocator.warmup=4", "--set", "caching.warmup=2"]
    assert _train(tmp_path / "run", *sets) == 0
    scenario = ["timing.num_frames=2", "timing.slots_per_frame=3"]
    assert parsed == [[*scenario, "allocator.warmup=4", "caching.warmup=2"]]
    parsed.clear()
    args = ["train", "--resume", str(tmp_path / "run"), "--episodes", "2", "--quiet", *sets]
    assert main(args) == 0  # the resume checks and the scenario read the same object
    assert len(parsed) == 1


def test_the_preset_choices_are_the_agents_presets() -> None:
    from agents.t2drl import PRESETS

    assert PRESET_CHOICES == tuple(PRESETS)


@pytest.mark.parametrize(
    ("raised", "code", "stopped"),
    [(KeyboardInterrupt(), 130, "Ctrl-C"), (Interrupted(signal.SIGTERM), 143, "SIGTERM")],
)
def test_an_interrupted_command_says_what_it_kept(
    tmp_path: Path, monkeypatch, capsys, raised, code: int, stopped: str
) -> None:
    import testbed.sim.runner

    def interrupted(*args, **kwargs):
        raise raised

    monkeypatch.setattr(testbed.sim.runner, "run", interrupted)
    out = tmp_path / "run"
    assert main(["simulate", "--policy", "rcars", "--out", str(out), *TINY]) == code
    kept = f"every finished episode is in {out / 'trace.parquet'} and metrics.csv"
    assert capsys.readouterr().err == f"testbed: stopped by {stopped}; {kept}\n"


def test_a_command_interrupted_before_writing_says_so(tmp_path: Path, monkeypatch, capsys):
    import testbed.sim.policies

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(testbed.sim.policies, "make_policies", interrupted)
    out = tmp_path / "run"
    assert main(["simulate", "--policy", "rcars", "--out", str(out), *TINY]) == 130
    assert capsys.readouterr().err == "testbed: stopped by Ctrl-C; nothing had been written yet\n"
    assert not out.exists()

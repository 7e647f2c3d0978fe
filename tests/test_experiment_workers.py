"""`testbed experiment --workers N`: an experiment's runs are pure tasks, each
a seeded function of its config to its run folder, so N processes give the numbers of one
and a resumed experiment skips the runs it finished."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from runs import mtimes, numbers, tiny_fig8

from testbed.lab.experiments import run_experiment

# SCHRS's evaluation is most of the time of fig8 and trains nothing: the learned agents,
# one baseline and the optimiser still make both kinds of task
POLICIES = ("t2drl", "ddpg-t2drl", "rcars", "optimal")


def _fig8(out: Path, workers: int) -> None:
    tiny_fig8(out, POLICIES, workers=workers)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("fig8")
    for workers in (1, 2):
        _fig8(root / f"workers{workers}", workers)
    return {workers: root / f"workers{workers}" for workers in (1, 2)}


def test_two_workers_give_the_numbers_of_one(runs) -> None:
    for name in ("fig8.csv", "fig8_summary.csv"):
        one, two = numbers(runs[1] / name), numbers(runs[2] / name)
        assert len(one) == 7 * len(POLICIES)  # one seed: a row per point and policy
        pd.testing.assert_frame_equal(one, two)
    assert set(pd.read_csv(runs[2] / "fig8.csv")["policy"]) == set(POLICIES)
    for png in ("fig8a.png", "fig8b.png"):
        assert (runs[2] / png).stat().st_size > 0


def test_a_resumed_experiment_runs_only_what_it_had_not_finished(runs, tmp_path) -> None:
    out = tmp_path / "moved"  # a run folder is its own: the experiment may move
    shutil.copytree(runs[1], out)
    work = out / "work"
    before = mtimes(work)
    _fig8(out, workers=1)
    assert mtimes(work) == before  # nothing trained or evaluated again
    pd.testing.assert_frame_equal(pd.read_csv(out / "fig8.csv"), pd.read_csv(runs[1] / "fig8.csv"))

    # an interrupted experiment: one learned run lost its evaluation, another is unfinished
    evaluated = work / "capacity_gb20" / "t2drl_seed0"
    unfinished = work / "capacity_gb32" / "ddpg-t2drl_seed0"
    (evaluated / "eval.json").unlink()
    (unfinished / "checkpoint" / "manifest.json").unlink()
    _fig8(out, workers=1)
    after = mtimes(work)

    def kept(files: dict[Path, int]) -> dict[Path, int]:
        return {
            p: t
            for p, t in files.items()
            if not p.is_relative_to(unfinished) and p != evaluated / "eval.json"
        }

    assert (evaluated / "eval.json").is_file()
    assert (unfinished / "checkpoint" / "manifest.json").is_file()  # trained again
    assert after[evaluated / "eval.json"] > before[evaluated / "eval.json"]
    assert kept(after) == kept(before)  # every other file untouched: finished runs skipped
    pd.testing.assert_frame_equal(numbers(out / "fig8.csv"), numbers(runs[1] / "fig8.csv"))


def test_training_curves_of_two_workers_are_those_of_one(tmp_path) -> None:
    for workers in (1, 2):
        run_experiment(
            "fig6b",
            tmp_path / f"workers{workers}",
            quick=True,
            log=lambda message: None,
            seeds=1,
            episodes=2,
            workers=workers,
        )
    for name in ("fig6b.csv", "fig6b_summary.csv", "fig6b_eval_summary.csv"):
        one, two = (numbers(tmp_path / f"workers{w}" / name) for w in (1, 2))
        pd.testing.assert_frame_equal(one, two)
    assert list(pd.read_csv(tmp_path / "workers2" / "fig6b.csv")["variant"].unique()) == [
        "t2drl",
        "ddpg-t2drl",
    ]


def test_a_dead_worker_costs_only_its_runs(tmp_path, caplog) -> None:
    """SIGKILL a worker of the pool mid-experiment: a new pool runs the unfinished runs and
    every result equals that of one process."""
    import json
    import multiprocessing
    import os
    import signal

    from testbed.core.config import ScenarioConfig
    from testbed.lab.tasks import RunTask
    from testbed.lab.workers import Workers

    def tasks(root: Path) -> list[RunTask]:
        return [
            RunTask(
                run_dir=str(root / f"{policy}_seed{seed}"),
                scenario=ScenarioConfig().replace(seed=seed).to_dict(),
                policy=policy,
                seed=seed,
                eval_episodes=1,
            )
            for seed in range(4)
            for policy in ("optimal", "rcars")
        ]

    def result(task: RunTask) -> dict:
        record = json.loads((Path(task.run_dir) / "eval.json").read_text())["result"]
        return {k: v for k, v in record.items() if k not in ("wall_s", "decision_ms_per_slot")}

    one = tasks(tmp_path / "one")
    Workers(1).run("one", one, lambda index: None)
    killed: list[int] = []

    def done(index: int) -> None:
        if not killed:  # the first finished run kills a worker of the pool
            worker = multiprocessing.active_children()[0]
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)

    two = tasks(tmp_path / "two")
    with caplog.at_level("WARNING", logger="testbed.lab.workers"):
        Workers(2).run("two", two, done)
    assert killed and "a worker process died" in caplog.text
    assert [result(t) for t in two] == [result(t) for t in one]


def test_a_failed_run_stops_the_runs_in_flight(tmp_path) -> None:
    """A run that fails in a pool of two stops the other worker at once: its long run is
    killed, not waited for, and no worker process is left behind."""
    import multiprocessing

    from testbed.core.config import ScenarioConfig
    from testbed.lab.tasks import RunTask
    from testbed.lab.workers import Workers
    from testbed.sim.policies import PolicyError

    scenario = ScenarioConfig().to_dict()
    long = RunTask(str(tmp_path / "long"), scenario, "rcars", 0, eval_episodes=300)  # ~1 min
    failing = RunTask(str(tmp_path / "failing"), scenario, "no-such-policy", 0, eval_episodes=1)
    before = set(multiprocessing.active_children())
    with pytest.raises(PolicyError, match="no-such-policy"):
        Workers(2).run("failing", [long, failing], lambda index: None)
    assert not (tmp_path / "long" / "eval.json").exists()
    assert set(multiprocessing.active_children()) <= before

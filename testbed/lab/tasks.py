"""One run of an experiment as a task: a seeded, picklable function of its config to its
folder, so that any process (or Ray worker) runs it with the numbers of any other.

A task trains a learned run once (a finished training in its folder is kept) and then
evaluates the policy, exploration off, on evaluation episodes no policy trained on; its
metrics go to the folder's ``eval.json`` beside the task that produced them, so a resumed
experiment skips every finished folder.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import CheckpointError, UsageError
from testbed.core.seeding import EVAL_SEED_OFFSET
from testbed.runs.folder import TRAIN, RunFolder
from testbed.sim.policies import make_policies
from testbed.sim.runner import run

if TYPE_CHECKING:
    from agents.t2drl import TrainConfig

EVAL = "eval.json"
"""A task's evaluation in its run folder: ``{"task": ..., "result": {metric: value}}``."""


@dataclass(frozen=True)
class RunTask:
    """One run of an experiment, a pure function of these fields to the folder ``run_dir``
    (:func:`run_task`): picklable and seeded, sharing no state with any other run, so that
    it runs in any process. A folder that already holds the run, finished, is kept: a
    resumed experiment skips it."""

    run_dir: str
    """The run's folder (under the experiment's ``work/``)."""
    scenario: dict[str, Any]
    """``ScenarioConfig.to_dict()`` of the run, its seed the run's seed."""
    policy: str
    """The evaluated policy, or the agent of a training run."""
    seed: int
    train: TrainConfig | None = None
    """The learned run trained into ``run_dir`` first (None: a baseline, nothing to train)."""
    eval_episodes: int = 0
    """Evaluation episodes, exploration off, on run seed ``seed + EVAL_SEED_OFFSET``, their
    metrics written to ``run_dir/eval.json``; 0 for a training run only (the curves)."""


def run_task(task: RunTask) -> Path:
    """Train (if ``task.train``) and evaluate (if ``task.eval_episodes``) into
    ``task.run_dir``, unless it already holds them, finished; returns the folder."""
    run_dir = Path(task.run_dir)
    scenario = ScenarioConfig.from_dict(task.scenario)
    start = time.perf_counter()
    if task.train is not None and not training_finished(task):
        from testbed.training.trainer import train

        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished run trains from scratch
        train(task.train, scenario, run_dir)
    if task.eval_episodes and not _evaluated(task):
        result = _evaluate(task, scenario)
        run_dir.mkdir(parents=True, exist_ok=True)
        result["wall_s"] = time.perf_counter() - start
        RunFolder(run_dir).write_json(EVAL, {"task": _identity(task), "result": result})
    return run_dir


def _evaluate(task: RunTask, scenario: ScenarioConfig) -> dict[str, float]:
    """The metrics of ``task.policy`` over its evaluation episodes (a learned policy from
    the run trained into ``task.run_dir``)."""
    eval_config = scenario.replace(seed=task.seed + EVAL_SEED_OFFSET)
    catalogue = build_catalogue(scenario.catalogue)
    if task.train is not None:
        checkpoint = Path(task.run_dir)
        caching, allocation = make_policies(task.policy, scenario, catalogue, checkpoint)
    else:
        caching, allocation = make_policies(task.policy, eval_config, catalogue)
    summary, _ = run(eval_config, caching, allocation, task.eval_episodes, catalogue=catalogue)
    return {
        "utility": summary.utility,
        "hit_ratio": summary.hit_ratio,
        "violation_rate": summary.violation_rate,
        "mean_slot_reward": summary.mean_slot_reward,
        "decision_ms_per_slot": summary.decision_ms_per_slot,
    }


def evaluation(task: RunTask) -> dict[str, float]:
    """The metrics that :func:`run_task` stored for ``task`` (with its ``wall_s``)."""
    return RunFolder(task.run_dir).read_json(EVAL)["result"]


def _identity(task: RunTask) -> dict[str, Any]:
    """What an evaluation's results depend on: the task without its folder (a moved
    experiment keeps its runs), as it reads back from JSON."""
    fields = {k: v for k, v in asdict(task).items() if k != "run_dir"}
    return json.loads(json.dumps(fields))


def training_finished(task: RunTask) -> bool:
    """Whether ``task.run_dir`` holds the training run of ``task.train``, finished: the same
    hyperparameters and a verified checkpoint of the last episode."""
    if task.train is None:
        return False
    folder = RunFolder(task.run_dir)
    try:
        if not folder.has(TRAIN) or folder.read_train() != task.train:
            return False
        scenario = ScenarioConfig.from_dict(task.scenario)
        manifest = folder.verify_checkpoint(task.train.agent, scenario)
    except (CheckpointError, UsageError):
        return False
    return manifest["episode"] == task.train.episodes


def _evaluated(task: RunTask) -> bool:
    """Whether ``task.run_dir`` holds this task's evaluation. The stored training settings
    are compared as a ``TrainConfig``, so that an evaluation stored before a preset's
    choices were written out in full still counts."""
    folder = RunFolder(task.run_dir)
    if not folder.has(EVAL):
        return False
    stored, wanted = folder.read_json(EVAL)["task"], _identity(task)
    stored_train = stored.pop("train", None)
    wanted.pop("train")
    return stored == wanted and _same_train(stored_train, task.train)


def _same_train(stored: dict[str, Any] | None, train: TrainConfig | None) -> bool:
    """Whether stored training settings (``train.json``'s form) are those of ``train``."""
    if stored is None or train is None:
        return stored is None and train is None
    from agents.t2drl import TrainConfig

    try:
        return TrainConfig.from_json(stored) == train
    except (ValueError, TypeError):
        return False


def task_complete(task: RunTask) -> bool:
    """Whether ``task.run_dir`` already holds the task's results, finished (then a run of
    it would change nothing)."""
    trained = task.train is None or training_finished(task)
    return trained and (not task.eval_episodes or _evaluated(task))

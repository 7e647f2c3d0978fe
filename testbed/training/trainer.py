"""Training T2DRL (Algorithm 1) in the frame/slot driver, and its run folder.

``train(TrainConfig, scenario, out) -> dict`` plays H episodes x T frames x K slots with
the two learners of ``agents.t2drl.learners`` in the one driver (each learns from its own
buffer: E per slot, F per frame) and writes a run folder:

* ``config.toml`` (the scenario), ``train.json`` (the hyperparameters, resolved against
  the preset), ``run.json`` (git revision, package versions, device);
* ``metrics.csv`` (one row per episode) and TensorBoard events under ``tb/``
  (tags ``charts/``, ``losses/``, ``eval/``), both through the one recorder;
* ``checkpoint/``: every network, optimizer, replay buffer and random state as
  safetensors (never pickle) plus ``state.json``; :func:`resume` continues from it and
  reproduces the uninterrupted run exactly.

Training worlds are seeded apart from the evaluation worlds of ``testbed simulate``
(``testbed.core.seeding``): the same run seed never trains and evaluates on one episode.
Every ``eval_every`` episodes the agents are evaluated with exploration off on one fixed
unseen episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.t2drl import (
    LOSS_KEYS,
    METRIC_COLUMNS,
    AllocationLearner,
    CachingLearner,
    GreedyCredit,
    LearnedAllocation,
    LearnedCaching,
    T2DRLAgents,
    TrainConfig,
)
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.metrics import SlotMetrics
from testbed.core.seeding import EVAL_SEED_OFFSET, training_world_seed
from testbed.runs.checkpoints import load_training_state
from testbed.runs.folder import RunFolder
from testbed.runs.interrupts import DeferredInterrupt
from testbed.runs.recorder import ProgressSpec, Recorder
from testbed.sim.executor import simulated_driver
from testbed.sim.runner import MetricsHook, run

log = logging.getLogger(__name__)


class Trainer:
    """The two learners of one T2DRL instance in the driver, with their checkpoint."""

    def __init__(self, scenario: ScenarioConfig, train: TrainConfig, out: Path) -> None:
        torch.set_num_threads(train.threads)
        self.scenario, self.train, self.folder = scenario, train, RunFolder(out)
        self.catalogue = build_catalogue(scenario.catalogue)
        self.driver = simulated_driver(scenario, self.catalogue, check=False)
        self.agents = T2DRLAgents(scenario, train)
        self.allocation = AllocationLearner(
            self.agents.allocator, scenario, self.catalogue, train.agent, train.steps_amender
        )
        greedy = None
        if train.credit == "greedy":
            greedy = GreedyCredit(self._greedy_allocation(), scenario, self.catalogue)
        self.caching = CachingLearner(
            self.agents.caching,
            scenario.timing.num_frames,
            train.episodes,
            greedy,
            train.counterfactuals,
        )
        self.episode = 0

    def play_episode(self) -> dict[str, float]:
        """One episode of Algorithm 1 (lines 4-47); returns its metrics."""
        metrics = MetricsHook(SlotMetrics())
        for learner in (self.allocation, self.caching):
            for values in learner.losses.values():
                values.clear()
        self.driver.play_episode(
            self.episode,
            training_world_seed(self.train.seed, self.episode),
            self.caching,
            self.allocation,
            hooks=(self.caching, self.allocation, metrics),
        )
        self.episode += 1
        totals = metrics.metrics
        means = totals.means()
        losses = {**self.allocation.losses, **self.caching.losses}
        return {
            "episode_reward": totals.frame_reward,
            "mean_slot_reward": means["mean_slot_reward"],
            "utility": means["utility"],
            "hit_ratio": means["hit_ratio"],
            "violation_rate": means["violation_rate"],
            **{k: float(np.mean(losses[k])) if losses[k] else float("nan") for k in LOSS_KEYS},
            "epsilon": self.agents.caching.epsilon,
        }

    def evaluate(self) -> dict[str, float]:
        """The current agents with exploration off, on one fixed unseen episode."""
        caching = LearnedCaching(self.agents.caching, self.train.agent)
        allocation = self._greedy_allocation()
        eval_config = self.scenario.replace(seed=self.train.seed + EVAL_SEED_OFFSET)
        summary, _ = run(eval_config, caching, allocation, 1, catalogue=self.catalogue)
        return {
            "eval_mean_slot_reward": summary.mean_slot_reward,
            "eval_utility": summary.utility,
            "eval_hit_ratio": summary.hit_ratio,
        }

    def _greedy_allocation(self) -> LearnedAllocation:
        """The allocator in training acting with exploration off."""
        return LearnedAllocation(
            self.agents.allocator,
            self.scenario,
            self.catalogue,
            self.train.agent,
            self.train.steps_amender,
        )

    def save(self) -> None:
        """Checkpoint the state between two episodes (``testbed.runs.checkpoints``)."""
        state = {
            "episode": self.episode,
            "rng": {
                "allocator": self.agents.allocator.rng.bit_generator.state,
                "caching": self.agents.caching.rng.bit_generator.state,
            },
            "epsilon": self.agents.caching.epsilon,
        }
        self.folder.write_checkpoint(self.agents, self.train, self.scenario, state)

    def load(self) -> None:
        """Continue from the verified checkpoint (kind, shape, checksums, finite weights)."""
        manifest = self.folder.verify_checkpoint(self.train.agent, self.scenario)
        state = load_training_state(Path(manifest["path"]), self.agents)
        self.episode = int(state["episode"])
        self.agents.allocator.rng.bit_generator.state = state["rng"]["allocator"]
        self.agents.caching.rng.bit_generator.state = state["rng"]["caching"]
        self.agents.caching.epsilon = float(state["epsilon"])


def train(
    train_config: TrainConfig,
    scenario: ScenarioConfig,
    out: str | Path,
    progress: bool = False,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run Algorithm 1 into the (claimed) run folder ``out``: its ``config.toml`` and
    ``train.json`` are written first; returns the last episode's metrics and the folder.

    ``on_episode`` is called with each episode's metrics row after it is written. Ctrl-C or
    SIGTERM stops the run at the end of the episode in progress, saves a checkpoint there
    (so :func:`resume` continues exactly) and raises :class:`Interrupted`; a second signal
    stops at once, keeping the last checkpoint.
    """
    folder = RunFolder(out)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_scenario(scenario)
    folder.write_train(train_config)
    return _play(Trainer(scenario, train_config, folder.path), progress, on_episode)


def resume(
    out: str | Path,
    episodes: int | None = None,
    progress: bool = False,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Continue the training run in ``out`` from its checkpoint, with its stored
    hyperparameters and scenario, up to ``episodes`` (the new total, stored in
    ``train.json``; default the stored one). Reproduces the uninterrupted run exactly."""
    folder = RunFolder(out)
    train_config = folder.read_train()
    if episodes is not None:
        train_config = replace(train_config, episodes=episodes)  # checked when built
    folder.write_train(train_config)
    trainer = Trainer(folder.read_scenario(), train_config, folder.path)
    trainer.load()
    return _play(trainer, progress, on_episode, resumed=True)


def _play(
    trainer: Trainer,
    progress: bool,
    on_episode: Callable[[dict[str, Any]], None] | None,
    resumed: bool = False,
) -> dict[str, Any]:
    """Episodes until the configured total, recorded and checkpointed."""
    train_config = trainer.train
    start = time.perf_counter()
    last: dict[str, Any] = {}
    recorder = Recorder(
        trainer.folder.path,
        METRIC_COLUMNS,
        resume_step=trainer.episode if resumed else None,
        progress=ProgressSpec(
            total=train_config.episodes,
            initial=trainer.episode,
            unit="episode",
            postfix={"reward": "{mean_slot_reward:.2f}", "hit": "{hit_ratio:.2f}"},
            enabled=progress,
        ),
    )
    with recorder, DeferredInterrupt() as interrupt:
        while trainer.episode < train_config.episodes:
            row = trainer.play_episode()
            if trainer.episode % train_config.eval_every == 0:
                row.update(trainer.evaluate())
            row = {"episode": trainer.episode - 1, **row, "wall_s": time.perf_counter() - start}
            recorder.record_many(row)
            last = recorder.dump(step=row["episode"])
            log.debug("episode %d: %s", row["episode"], row)
            if trainer.episode % train_config.checkpoint_every == 0 or interrupt.requested:
                trainer.save()
            if on_episode is not None:
                on_episode(last)
            interrupt.check()
    trainer.save()
    return {"out": str(trainer.folder.path), **last}

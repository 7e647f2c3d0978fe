"""``testbed train``: train T2DRL (DDQN + D3PG) or DDPG-based T2DRL into a run folder, or
continue an interrupted run with ``--resume``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from testbed.commands.common import (
    TRAINING_MODULES,
    Output,
    add_episodes,
    add_output_flags,
    add_preset,
    add_quiet,
    add_scenario_flags,
    add_threads,
    keeping,
    new_run_folder,
    output_options,
    require_modules,
    scenario_options,
    set_handler,
)
from testbed.commands.overrides import ScenarioOptions
from testbed.core.errors import UsageError
from testbed.runs.folder import CONFIG, TRAIN, RunFolder
from testbed.sim.policies import LEARNED

if TYPE_CHECKING:
    from agents.t2drl import TrainConfig

log = logging.getLogger("testbed")

DEFAULT_EPISODES = 500
"""H of Table 2: the episodes of a new training run."""
FLAGS = ("agent", "preset", "threads", "caching_agent", "credit")
"""The training flags, by their TrainConfig key."""
FLAG_NAMES = {"caching_agent": "caching"}
"""Training flags whose name differs from their TrainConfig key."""


@dataclass(frozen=True)
class TrainOptions:
    agent: str | None
    preset: str | None
    caching_agent: str | None
    credit: str | None
    threads: int | None
    episodes: int | None
    """H; None: :data:`DEFAULT_EPISODES` for a new run, the stored count to resume."""
    scenario: ScenarioOptions
    output: Output
    quiet: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainOptions:
        return cls(
            namespace.agent,
            namespace.preset,
            namespace.caching_agent,
            namespace.credit,
            namespace.threads,
            namespace.episodes,
            scenario_options(namespace),
            output_options(namespace),
            namespace.quiet,
        )

    def given_flags(self) -> dict[str, Any]:
        """The training flags that were given, by their TrainConfig key."""
        values = {flag: getattr(self, flag) for flag in FLAGS}
        return {flag: value for flag, value in values.items() if value is not None}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train T2DRL (DDQN + D3PG) or DDPG-based T2DRL")
    parser.add_argument("--agent", choices=list(LEARNED), default=None, help="default: t2drl")
    add_episodes(
        parser,
        None,
        f"H (default {DEFAULT_EPISODES}, Table 2; with --resume: the stored count)",
    )
    add_preset(
        parser,
        "`best` (the default): factored caching credited greedily, the allocator cloning "
        "the exact optimiser; `default`: the paper's agents with tuned learning rates; "
        "`paper`: Sec. 7.1 as printed (Adam at 1e-6, the paper's amender); docs/agents.md",
    )
    parser.add_argument(
        "--caching",
        dest="caching_agent",
        choices=["ddqn", "factored"],
        default=None,
        help="the caching agent: `ddqn` (the paper's, 2^M outputs) or `factored` "
        "(per-model values + exact knapsack); default: the preset's",
    )
    parser.add_argument(
        "--credit",
        choices=["explore", "greedy"],
        default=None,
        help="the caching learner's frame reward: the slots as the exploring allocator "
        "served them (`explore`, Algorithm 1) or re-scored under the greedy allocator "
        "(`greedy`); default: the preset's",
    )
    add_threads(parser, "torch CPU threads (default 1)")
    add_scenario_flags(parser, training=True)
    add_output_flags(
        parser,
        "runs/train__...",
        resume="continue an interrupted run (up to --episodes); other flags must agree with it",
    )
    add_quiet(parser)
    set_handler(parser, TrainOptions.from_namespace, handle)


def train_config(options: TrainOptions, seed: int) -> TrainConfig:
    """The :class:`agents.t2drl.TrainConfig` of the flags and the ``--set train.*``,
    ``allocator.*`` and ``caching.*`` items, checked before anything is written."""
    from agents.t2drl import TrainConfig

    overrides = options.scenario.overrides
    allowed = {f.name for f in fields(TrainConfig)} - {"allocator", "caching"}
    for name in overrides.train:
        if name not in allowed:
            raise UsageError(f"--set train.{name}: unknown key; allowed: {sorted(allowed)}")
    values: dict[str, Any] = {
        "episodes": options.episodes or DEFAULT_EPISODES,
        "seed": seed,
        **options.given_flags(),
        **overrides.train,
        "allocator": dict(overrides.allocator),
        "caching": dict(overrides.caching),
    }
    try:
        return TrainConfig.from_options(values)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"training options (--set train.*, allocator.*, caching.*): {exc}"
        ) from exc


def check_resume(options: TrainOptions, folder: RunFolder) -> None:
    """Refuse flags that contradict the stored run instead of silently dropping them."""
    stored = folder.read_train()
    stored_at = folder / TRAIN
    for flag, given in options.given_flags().items():
        if given != getattr(stored, flag):
            raise UsageError(
                f"--{FLAG_NAMES.get(flag, flag)} {given} contradicts the stored run ({flag} = "
                f"{getattr(stored, flag)!r} in {stored_at}); drop it to resume"
            )
    out = options.output.out
    if out is not None and out.resolve() != folder.path.resolve():
        raise UsageError(f"--out {out} contradicts --resume {folder.path}: a run resumes in place")
    for section, values in options.scenario.overrides.training().items():
        for name, value in values.items():
            # the value in force, so a key left at its default agrees with that default
            agent = {"allocator": stored.allocator_config, "caching": stored.caching_config}
            source = stored if section == "train" else agent[section]()
            current = getattr(source, name, None)
            if current != (tuple(value) if isinstance(value, list) else value):
                raise UsageError(
                    f"--set {section}.{name}={value!r} contradicts the stored run "
                    f"({current!r} in {stored_at}); drop it to resume"
                )
    stored_scenario = folder.read_scenario()
    if options.scenario.build(base=stored_scenario).to_dict() != stored_scenario.to_dict():
        raise UsageError(
            f"--config/--seed/--users/--set contradict the stored scenario "
            f"{folder / CONFIG}; drop them to resume"
        )


def _resume(options: TrainOptions, folder: RunFolder) -> dict[str, Any] | None:
    """Continue the run in ``folder``; None (nothing touched) when it is finished: its
    checkpoint holds the last of the episodes asked for (the stored count by default)."""
    from testbed.training.trainer import resume

    folder.require(TRAIN, CONFIG, command="train")
    check_resume(options, folder)
    manifest = folder.verify_checkpoint()
    episodes = options.episodes or folder.read_train().episodes
    if int(manifest["episode"]) >= episodes:
        return None
    with keeping(f"{folder.path} holds a checkpoint; --resume {folder.path} continues"):
        return resume(folder.path, options.episodes, progress=not options.quiet)


def _new_run(options: TrainOptions) -> tuple[RunFolder, dict[str, Any]]:
    from agents.t2drl import T2DRLAgents
    from testbed.training.trainer import train

    config = options.scenario.build()
    hyper = train_config(options, config.seed)
    try:  # the agents fit the scenario (e.g. the DDQN's 2^M outputs), checked up front
        T2DRLAgents(config, hyper)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    default = f"runs/train__{hyper.agent}__seed{config.seed}__{int(time.time())}"
    folder = new_run_folder(options.output, default)
    log.info("training %s", json.dumps(hyper.to_json()))
    with keeping(f"{folder.path} holds a checkpoint; --resume {folder.path} continues"):
        return folder, train(hyper, config, folder.path, progress=not options.quiet)


def handle(options: TrainOptions) -> int:
    require_modules("testbed train", TRAINING_MODULES)
    if options.output.resume is not None:
        folder = RunFolder(options.output.resume)
        result = _resume(options, folder)
        if result is None:
            print(
                f"{folder.path}: the run is finished (its checkpoint holds the last of its "
                "episodes); nothing to resume, nothing changed (more: --episodes N)"
            )
            return 0
    else:
        folder, result = _new_run(options)
    print(
        f"{folder.path}: {result.get('episode', -1) + 1} episodes, last episode utility "
        f"{result.get('utility', float('nan')):.3f}, hit ratio "
        f"{result.get('hit_ratio', float('nan')):.3f}"
    )
    return 0

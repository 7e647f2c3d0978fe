"""``testbed simulate``: play a policy on a scenario and write a run folder.

The folder holds ``trace.parquet`` (one row per user and slot), ``metrics.csv`` (one row per
episode), ``config.toml`` (the full scenario), ``summary.json`` (eq. (11) utility, hit ratio,
(11h) violation rate, decision time) and ``run.json`` (git revision, package versions,
device, command line).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from testbed.commands.common import (
    Output,
    add_episodes,
    add_output_flags,
    add_policy_flags,
    add_quiet,
    add_scenario_flags,
    keeping,
    new_run_folder,
    output_options,
    require_checkpoint,
    scenario_options,
    set_handler,
)
from testbed.commands.overrides import ScenarioOptions
from testbed.core.config import build_catalogue
from testbed.core.errors import UsageError
from testbed.sim.policies import LEARNED


@dataclass(frozen=True)
class SimulateOptions:
    policy: str
    checkpoint: str | None
    episodes: int
    scenario: ScenarioOptions
    output: Output
    quiet: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> SimulateOptions:
        return cls(
            namespace.policy,
            namespace.checkpoint,
            namespace.episodes,
            scenario_options(namespace),
            output_options(namespace),
            namespace.quiet,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="play a policy on a scenario and write a run folder"
    )
    add_policy_flags(parser)
    add_episodes(parser, 1, "episodes of T frames x K slots")
    add_scenario_flags(parser)
    add_output_flags(parser, "runs/simulate__...")
    add_quiet(parser)
    set_handler(parser, SimulateOptions.from_namespace, handle)


def handle(options: SimulateOptions) -> int:
    from testbed.sim.policies import make_policies
    from testbed.sim.runner import run

    config = options.scenario.build()
    options.scenario.overrides.refuse_training()
    catalogue = build_catalogue(config.catalogue)
    learned = require_checkpoint(options.policy, options.checkpoint)
    if options.checkpoint and not learned:
        raise UsageError(
            f"--checkpoint applies to {list(LEARNED)} (also as a part), "
            f"not --policy {options.policy}"
        )
    caching, allocation = make_policies(options.policy, config, catalogue, options.checkpoint)
    default = f"runs/simulate__{options.policy}__seed{config.seed}__{int(time.time())}"
    folder = new_run_folder(options.output, default, config, resumable=False)
    trace = folder / "trace.parquet"
    with keeping(f"every finished episode is in {trace} and metrics.csv"):
        summary, _ = run(
            config,
            caching,
            allocation,
            options.episodes,
            trace_path=trace,
            catalogue=catalogue,
            progress=not options.quiet,
            metrics_dir=folder.path,
        )
    folder.write_json("summary.json", {"policy": options.policy, **summary.to_dict()})
    print(
        f"{options.policy}: utility {summary.utility:.3f}  hit ratio {summary.hit_ratio:.3f}  "
        f"violation rate {summary.violation_rate:.3f}  "
        f"decision {summary.decision_ms_per_slot:.2f} ms/slot  "
        f"({summary.episodes} episodes, {summary.slots} slots) -> {folder.path}"
    )
    return 0

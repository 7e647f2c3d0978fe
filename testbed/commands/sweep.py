"""``testbed sweep``: any scenario key over a list of values (``--set SECTION.KEY=V1,V2,...``):
every policy at every value, the learned ones trained, a CSV and plots against the key."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from testbed.commands.common import (
    BudgetOptions,
    Output,
    add_budget_flags,
    add_output_flags,
    add_quiet,
    add_scenario_flags,
    finished_line,
    keeping,
    lab_log,
    new_run_folder,
    output_options,
    scenario_options,
    set_handler,
)
from testbed.commands.overrides import SEED, ScenarioOptions
from testbed.core.config import ScenarioConfig
from testbed.core.errors import UsageError
from testbed.runs.folder import RunFolder
from testbed.sim.policies import LEARNED

SWEEP = "sweep.json"
"""The sweep's identity (key, values, base scenario, budget): what ``--resume`` must match."""


@dataclass(frozen=True)
class SweepOptions:
    policies: tuple[str, ...]
    budget: BudgetOptions
    scenario: ScenarioOptions
    """The base scenario; its overrides hold the swept key apart (``swept``)."""
    output: Output
    quiet: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> SweepOptions:
        return cls(
            tuple(namespace.policies),
            BudgetOptions.from_namespace(namespace),
            scenario_options(namespace, sweep=True),
            output_options(namespace),
            namespace.quiet,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="any scenario key over a list of values: every policy at every value, "
        "learned ones trained, CSV + plots against the key",
    )
    add_scenario_flags(parser, seed_and_users=False)
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["optimal", "schrs", "rcars"],
        metavar="NAME",
        help="of t2drl, ddpg-t2drl, schrs, rcars, optimal (the learned ones are trained at "
        "every point and seed; default: optimal schrs rcars)",
    )
    add_budget_flags(
        parser, "training preset of the learned runs (default: `default`)", "processes (default 1)"
    )
    add_output_flags(parser, "runs/sweep__...", resume="continue an interrupted sweep")
    add_quiet(parser)
    set_handler(parser, SweepOptions.from_namespace, handle)


def swept_values(base: ScenarioConfig, key: str, values: tuple[Any, ...]) -> list[float]:
    """The swept values, each checked on the scenario (one line naming the key if bad)."""
    if key == SEED:
        raise UsageError("--set seed=...: the seeds are swept by --seeds N, not as a key")
    if len(set(values)) != len(values) or len(values) < 2:
        raise UsageError(
            f"--set {key}={list(values)}: give at least two distinct values, V1,V2,..."
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"--set {key}={value!r}: a sweep plots against numbers")
        try:
            base.replace(**{key: value})
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {key}={value!r}: {exc}") from exc
    return list(values)


def _folder(output: Output, identity: dict[str, Any], base: ScenarioConfig) -> RunFolder:
    """The sweep's folder: the one to resume (its identity must be this one), or new."""
    if output.resume is None:
        default = f"runs/sweep__{identity['key']}__{int(time.time())}"
        folder = new_run_folder(output, default, base)
        folder.write_json(SWEEP, identity)
        return folder
    folder = RunFolder(output.resume)
    if not folder.has(SWEEP):
        raise UsageError(f"--resume {folder.path}: no sweep to continue (no sweep.json)")
    if folder.read_json(SWEEP) != json.loads(json.dumps(identity)):
        raise UsageError(
            f"--resume {folder.path}: the key, values, scenario, policies or budget differ "
            f"from {folder / SWEEP}; drop them or start a new --out"
        )
    return folder


def handle(options: SweepOptions) -> int:
    from testbed.lab.experiments import make_budget, run_sweep

    overrides = options.scenario.overrides
    overrides.refuse_training()
    if len(overrides.swept) != 1:
        raise UsageError(
            "name exactly one swept key as --set SECTION.KEY=V1,V2,... "
            f"(got {len(overrides.swept)}: {[key for key, _ in overrides.swept]})"
        )
    key, raw = overrides.swept[0]
    base = options.scenario.build()
    values = swept_values(base, key, raw)
    given = options.budget
    given.require_modules("testbed sweep", trains=any(p in LEARNED for p in options.policies))
    try:
        budget = make_budget(
            given.quick, given.seeds, given.episodes, given.preset, list(options.policies)
        )
    except ValueError as exc:
        raise UsageError(f"--policies: {exc}") from exc
    identity = {"key": key, "values": values, "base": base.to_dict(), "budget": asdict(budget)}
    folder = _folder(options.output, identity, base)
    out = folder.path
    if options.output.resume is not None and (line := finished_line(folder, "sweep")):
        print(line)
        return 0
    with keeping(f"every finished run is in {out}; --resume {out} continues"):
        run_sweep(
            base,
            key,
            values,
            out,
            budget,
            lab_log(options.quiet),
            given.workers,
            not options.quiet,
            given.ray,
        )
    print(f"sweep of {key} over {values} -> {out}")
    return 0

"""``testbed compare``: several policies on the same worlds over seeds, with a 95% interval."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.commands.common import (
    LEARNED_MODULES,
    POLICY_HELP,
    Output,
    add_episodes,
    add_output_flags,
    add_quiet,
    add_scenario_flags,
    add_seeds,
    keeping,
    new_run_folder,
    output_options,
    require_modules,
    scenario_options,
    set_handler,
)
from testbed.commands.overrides import ScenarioOptions
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import UsageError
from testbed.runs.folder import CONFIG, RunFolder
from testbed.sim.policies import LEARNED, learned_parts, unique_policies

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_POLICIES = ("optimal", "schrs", "rcars")


@dataclass(frozen=True)
class CompareOptions:
    policies: tuple[str, ...]
    checkpoints: tuple[str, ...]
    """``NAME=RUN_DIR`` items, checked against the policies by :func:`checkpoint_folders`."""
    seeds: int
    episodes: int
    scenario: ScenarioOptions
    output: Output
    quiet: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> CompareOptions:
        return cls(
            tuple(namespace.policies),
            tuple(namespace.checkpoint),
            namespace.seeds,
            namespace.episodes,
            scenario_options(namespace),
            output_options(namespace),
            namespace.quiet,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="several policies on the same worlds over seeds")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=list(DEFAULT_POLICIES),
        metavar="NAME",
        help=f"{POLICY_HELP}; `t2drl optimal t2drl+optimal optimal+t2drl` splits a gap "
        "between the two timescales",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="a trained run for a learned policy, e.g. t2drl=runs/train_... "
        "(also used by the composites with a t2drl part)",
    )
    add_seeds(parser, 5, "number of seeds (from --seed on)")
    add_episodes(parser, 1, "episodes per seed")
    add_scenario_flags(parser, seed_help="first seed (default: the scenario's)")
    add_output_flags(parser, "runs/compare__...", resume="continue an interrupted comparison")
    add_quiet(parser)
    set_handler(parser, CompareOptions.from_namespace, handle)


def checkpoint_folders(items: tuple[str, ...], policies: list[str]) -> dict[str, Path]:
    """The run folder of each learned policy (or part) among ``policies``, from the
    ``--checkpoint NAME=RUN_DIR`` items; every learned one needs its item."""
    used = {policy: learned_parts(policy) for policy in policies}
    checkpoints = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in LEARNED:
            raise UsageError(
                f"--checkpoint {item!r}: expected NAME=RUN_DIR with NAME in {list(LEARNED)}"
            )
        if not any(name in parts for parts in used.values()):
            raise UsageError(
                f"--checkpoint {item!r}: {name} is not among --policies (nor a part of one)"
            )
        checkpoints[name] = Path(path)
    missing = [p for p, parts in used.items() if any(n not in checkpoints for n in parts)]
    if missing:
        names = list(dict.fromkeys(n for p in missing for n in used[p] if n not in checkpoints))
        raise UsageError(
            f"--policies {missing} need --checkpoint NAME=RUN_DIR with NAME in {names}"
        )
    return checkpoints


def _folder(output: Output, config: ScenarioConfig) -> RunFolder:
    """The comparison's folder: the one to resume (its scenario must be this one), or new."""
    if output.resume is None:
        default = f"runs/compare__seed{config.seed}__{int(time.time())}"
        return new_run_folder(output, default, config)
    folder = RunFolder(output.resume)
    if not folder.has(CONFIG):
        raise UsageError(f"--resume {folder.path}: no comparison to continue (no config.toml)")
    if folder.read_scenario().to_dict() != config.to_dict():
        raise UsageError(
            f"--resume {folder.path}: the scenario differs from the stored one; "
            "give the same --config/--seed/--users/--set"
        )
    return folder


def _finished(folder: RunFolder, policies: list[str], seeds: range) -> bool:
    """Whether the comparison in ``folder`` holds a row of every policy at every seed and
    its summary (written once the last run finished)."""
    import pandas as pd

    if not (folder.has("compare.csv") and folder.has("compare_summary.csv")):
        return False
    done = pd.read_csv(folder / "compare.csv")
    rows = set(zip(done["policy"], done["seed"], strict=True))
    return all((policy, seed) in rows for policy in policies for seed in seeds)


def handle(options: CompareOptions) -> int:
    from testbed.lab.compare import write_comparison
    from testbed.sim.policies import make_policies

    config = options.scenario.build()
    options.scenario.overrides.refuse_training()
    seeds = range(config.seed, config.seed + options.seeds)
    policies = unique_policies(list(options.policies))
    checkpoints = checkpoint_folders(options.checkpoints, policies)
    if checkpoints:
        require_modules(f"--policies {' '.join(sorted(checkpoints))}", LEARNED_MODULES)
    catalogue = build_catalogue(config.catalogue)
    for name, path in checkpoints.items():
        make_policies(name, config, catalogue, path)  # verified before anything is written
    folder = _folder(options.output, config)
    out = folder.path
    if options.output.resume is not None and _finished(folder, policies, seeds):
        print(
            f"{out}: the comparison is finished ({len(policies)} policies x {len(seeds)} "
            "seeds in compare.csv, compare_summary.csv written); nothing to resume, "
            "nothing changed"
        )
        return 0
    with keeping(f"every finished run is in {out / 'compare.csv'}; --resume {out} continues"):
        summary = write_comparison(
            config,
            policies,
            seeds,
            options.episodes,
            out,
            not options.quiet,
            checkpoints,
            resume=options.output.resume is not None,
        )
    _print_summary(summary, policies, options.seeds)
    print(f"-> {out}")
    return 0


def _print_summary(summary: pd.DataFrame, policies: list[str], seeds: int) -> None:
    width = max(10, *(len(p) for p in policies))
    for row in summary.itertuples():
        interval = f"+- {row.utility_ci95:.3f}" if seeds > 1 else "(1 seed: no 95% interval)"
        print(
            f"{row.policy:{width}s} utility {row.utility:8.3f} {interval}  "
            f"hit ratio {row.hit_ratio:.3f}  violation rate {row.violation_rate:.3f}  "
            f"decision {row.decision_ms_per_slot:.2f} ms"
        )

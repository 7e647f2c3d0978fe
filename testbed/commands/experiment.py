"""``testbed experiment``: the paper's Figs. 6-8 and Table 3, each a folder of training and
evaluation runs with their CSVs and plots; ``--resume`` skips the finished runs."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from testbed.commands.common import (
    BudgetOptions,
    Output,
    add_budget_flags,
    add_output_flags,
    add_quiet,
    finished_line,
    keeping,
    lab_log,
    new_run_folder,
    output_options,
    set_handler,
)
from testbed.core.errors import UsageError
from testbed.runs.folder import RunFolder


@dataclass(frozen=True)
class ExperimentOptions:
    name: str
    budget: BudgetOptions
    output: Output
    quiet: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> ExperimentOptions:
        return cls(
            namespace.name,
            BudgetOptions.from_namespace(namespace),
            output_options(namespace),
            namespace.quiet,
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    from testbed.lab.experiments import EXPERIMENTS

    parser = subparsers.add_parser("experiment", help="the paper's Figs. 6-8 and Table 3")
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    add_budget_flags(
        parser,
        "training preset of the learned runs (default: `default`, the paper's agents)",
        "run the training and evaluation runs in N processes, one torch thread each "
        "(default 1: one after the other; table3 always runs alone: it measures time)",
    )
    add_output_flags(parser, "runs/experiment__...", resume="continue an interrupted experiment")
    add_quiet(parser)
    set_handler(parser, ExperimentOptions.from_namespace, handle)


def handle(options: ExperimentOptions) -> int:
    from testbed.lab.experiments import run_experiment

    budget = options.budget
    budget.require_modules(f"testbed experiment {options.name}", trains=True)
    if budget.ray and budget.ray != "local":
        from testbed.lab.workers import check_ray_reachable

        check_ray_reachable(budget.ray)  # before the folder: a cluster that is not there
    size = "quick" if budget.quick else "full"
    if options.output.resume is not None:
        folder = RunFolder(options.output.resume)
        if not folder.path.is_dir():
            raise UsageError(f"--resume {folder.path}: no such experiment folder")
        if (line := finished_line(folder, "experiment")) is not None:
            print(line)
            return 0
    else:
        default = f"runs/experiment__{options.name}__{size}__{int(time.time())}"
        folder = new_run_folder(options.output, default)
    out = folder.path
    with keeping(f"every finished run is in {out}; --resume {out} continues"):
        run_experiment(
            options.name,
            out,
            budget.quick,
            lab_log(options.quiet),
            seeds=budget.seeds,
            episodes=budget.episodes,
            preset=budget.preset,
            workers=budget.workers,
            progress=not options.quiet,
            ray=budget.ray,
        )
    print(f"{options.name} ({size}) -> {out}")
    return 0

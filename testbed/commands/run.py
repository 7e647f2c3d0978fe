"""``testbed run``: the live testbed. The users', edge and cloud nodes serve one policy with
real RePaint; every slot is scored measured beside simulated (``testbed.live``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from edge_node.executor import DTYPES
from testbed.commands.common import (
    LEARNED_MODULES,
    NODE_MODULES,
    Output,
    add_episodes,
    add_output_flags,
    add_policy_flags,
    add_quiet,
    add_scenario_flags,
    add_security_flags,
    add_threads,
    keeping,
    new_run_folder,
    output_options,
    require_modules,
    scenario_options,
    security_options,
    set_handler,
)
from testbed.commands.overrides import ScenarioOptions
from testbed.core.config import ScenarioConfig
from testbed.live.options import LiveOptions, load_live_scenario
from testbed.sim.policies import learned_parts

RESUME_HELP = (
    "continue a run whose controller was killed, from its first unfinished slot, "
    "with its stored options (other flags are ignored)"
)


@dataclass(frozen=True)
class RunOptions:
    live: LiveOptions
    """The live run's options as given (checked with the scenario, before anything is
    written); with ``--resume`` only its progress bar, start timeout and security count."""
    scenario: ScenarioOptions
    frames: int | None
    """T (overrides the scenario's)."""
    slots: int | None
    """K (overrides the scenario's)."""
    output: Output

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> RunOptions:
        live = LiveOptions(
            policy=namespace.policy,
            checkpoint=namespace.checkpoint,
            episodes=namespace.episodes,
            time_scale=namespace.time_scale,
            request_timeout_s=namespace.request_timeout,
            gallery_users=namespace.gallery,
            device=namespace.device,
            dtype=namespace.dtype,
            threads=namespace.threads,
            inject=tuple(namespace.inject),
            restart_nodes=namespace.restart_nodes,
            edge=namespace.edge,
            users_node=namespace.users_node,
            start_timeout_s=namespace.start_timeout,
            max_failed_share=namespace.max_failed_share,
            progress=not namespace.quiet,
            security=security_options(namespace),
        )
        return cls(
            live,
            scenario_options(namespace),
            namespace.frames,
            namespace.slots,
            output_options(namespace),
        )

    def scenario_config(self) -> ScenarioConfig:
        """The scenario of ``--config`` (default: the live CPU scenario) with ``--set``,
        ``--seed``, ``--users``, ``--frames`` and ``--slots``."""
        config = self.scenario.build(base=load_live_scenario())
        overrides = {
            key: value
            for key, value in (
                ("timing.num_frames", self.frames),
                ("timing.slots_per_frame", self.slots),
            )
            if value is not None
        }
        return config.replace(**overrides) if overrides else config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="the live testbed: user, edge and cloud nodes with real RePaint, one policy"
    )
    add_policy_flags(parser)
    add_episodes(parser, 1, "episodes of T frames x K slots")
    parser.add_argument("--frames", type=int, default=None, help="T (overrides the scenario's)")
    parser.add_argument("--slots", type=int, default=None, help="K (overrides the scenario's)")
    add_scenario_flags(parser, default="the live CPU scenario")
    add_output_flags(parser, "runs/run__...", resume=RESUME_HELP)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="emulated seconds per wall second on the paced links (generation stays real)",
    )
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--gallery", type=int, default=2, help="users per slot kept as images")
    parser.add_argument("--device", default=None, help="cuda or cpu for the edge and the cloud")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="precision of the UNet at the edge and the cloud (float16 not on cpu)",
    )
    add_threads(parser, "torch threads per node (default 1)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds per node start")
    parser.add_argument("--edge", default=None, help="use a running edge node (HOST:PORT)")
    parser.add_argument("--users-node", default=None, help="use a running users' node (HOST:PORT)")
    parser.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="FAULT",
        help="edge-kill@SLOT, cloud-kill@SLOT (SIGKILL before that slot of the run) or "
        "link-loss=P (chunks lost and retransmitted on every paced link); repeatable",
    )
    parser.add_argument(
        "--restart-nodes",
        action="store_true",
        help="restart a dead edge at the next frame (its cache is refilled then)",
    )
    parser.add_argument(
        "--max-failed-share",
        type=float,
        default=0.5,
        metavar="SHARE",
        help="exit non-zero when more than this share of the user-slots failed (a run in "
        "which every user-slot failed always does); default 0.5",
    )
    add_quiet(parser)
    add_security_flags(parser)
    set_handler(parser, RunOptions.from_namespace, handle)


def require_live_modules(live: LiveOptions) -> None:
    """Refuse a run whose nodes (those it starts) or learned policy need a package that is
    not installed."""
    needs = () if live.external_nodes else NODE_MODULES
    if learned_parts(live.policy):
        needs = (*needs, *LEARNED_MODULES)
    require_modules("testbed run", needs)


def handle(options: RunOptions) -> int:
    from testbed.live.resume import ResumePoint, resume_run
    from testbed.live.session import default_out, outcome, plan_live, plan_resume, play

    if options.output.resume is not None:
        resumed = resume_run(options.output.resume, options.live)
        if resumed.finished:
            print(resumed.finished_line())
            return 0
        require_live_modules(resumed.options)
        plan, folder, resume = plan_resume(resumed)
    else:
        require_live_modules(options.live)
        config = options.scenario_config()
        options.scenario.overrides.refuse_training()
        plan = plan_live(options.live, config)
        plan.options.faults.check_within(plan.total_slots)
        folder = new_run_folder(options.output, default_out(plan), plan.config)
        plan.options.store(folder)
        resume = ResumePoint()
    trace = folder / "trace.parquet"
    with keeping(f"every finished slot is in {trace}; the nodes stopped"):
        summary = play(plan, folder, resume)
    code, line = outcome(summary, folder.path, plan.options.max_failed_share)
    print(line, file=sys.stderr if code else sys.stdout)
    return code

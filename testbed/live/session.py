"""One ``testbed run`` from its checked options to its summary: the run folder, the nodes,
the loop, ``summary.json`` and ``report.md``.

A new run checks every input (the scenario's models, the options, the security's files,
the policies and their checkpoints: :func:`plan_live`) before its folder is claimed and
written; a killed run continues in its folder from its first unfinished slot
(:func:`plan_resume`). :func:`play` starts the nodes (unless the options name running
ones), plays the run, stops the nodes and writes the summary and the report.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pandas as pd

from testbed.core.config import ScenarioConfig
from testbed.live.controller import LivePlan, run_live
from testbed.live.nodes import NodeAddresses, NodeSupervisor
from testbed.live.options import LiveOptions, check_live_catalogue
from testbed.live.report import loop_overhead, summarise_live, write_report
from testbed.live.resume import SUMMARY, LiveResume, ResumePoint
from testbed.live.world import REACH_TIMEOUT_S, check_nodes
from testbed.runs.folder import CONFIG, RunFolder
from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace


def plan_live(options: LiveOptions, config: ScenarioConfig) -> LivePlan:
    """The checked plan of a run: ``config``'s models are zoo models or checkpoint folders
    with an image source each, the options are checked, the security's files read, the
    policies built and their checkpoints verified; running nodes (``--edge``,
    ``--users-node``) answer within :data:`~testbed.live.world.REACH_TIMEOUT_S` (or the
    shorter ``--start-timeout``) and serve ``config``'s scenario. Nothing is written."""
    check_live_catalogue(config)
    plan = LivePlan.build(options, config)
    if options.external_nodes:
        assert options.edge is not None and options.users_node is not None
        nodes = NodeAddresses(options.users_node, options.edge, plan.security.security)
        check_nodes(nodes, config, timeout_s=min(REACH_TIMEOUT_S, options.start_timeout_s))
    return plan


def default_out(plan: LivePlan) -> str:
    """A new run's folder when ``--out`` is not given."""
    return f"runs/run__{plan.options.policy}__seed{plan.config.seed}__{int(time.time())}"


def plan_resume(resumed: LiveResume) -> tuple[LivePlan, RunFolder, ResumePoint]:
    """The plan of the killed run ``resumed`` (:func:`~testbed.live.resume.resume_run`: its
    stored options and scenario, with this command's progress bar, node start timeout and
    security), its folder and its first unfinished slot. Nothing is written."""
    return plan_live(resumed.options, resumed.config), resumed.folder, resumed.point


def play(plan: LivePlan, folder: RunFolder, resume: ResumePoint | None = None) -> dict:
    """Start the nodes (unless the options name running ones), play the run into
    ``folder`` (from ``resume`` on), stop the nodes; write and return the summary."""
    options = plan.options
    resume = resume if resume is not None else ResumePoint()
    resume.drop_unfinished(folder)
    supervisor = None
    try:
        if options.external_nodes:
            assert options.edge is not None and options.users_node is not None
            nodes = NodeAddresses(options.users_node, options.edge, plan.security.security)
        else:
            supervisor = NodeSupervisor(
                folder / "nodes",
                folder / CONFIG,
                device=options.device,
                dtype=options.dtype,
                threads=options.threads or 1,  # 2 cores: one torch thread per node
                timeout_s=options.start_timeout_s,
                security=plan.security,
            )
            nodes = supervisor.start()
            check_nodes(nodes, plan.config, labels=("the users' node", "the edge node"))
        info = run_live(plan, folder.path, nodes, supervisor, resume)
    finally:
        if supervisor is not None:
            supervisor.stop()
    return summarise_run(plan, folder, info)


def summarise_run(plan: LivePlan, folder: RunFolder, info: dict) -> dict:
    """The run's summary (what :func:`~testbed.live.controller.run_live` returned, simulated
    against measured, the refit comparison, the loop's overhead), written to
    ``summary.json`` with the report ``report.md`` beside it."""
    options, config = plan.options, plan.config
    trace = read_trace(folder / "trace.parquet", LIVE_TRACE_SCHEMA)
    net = config.network
    summary = {
        "policy": options.policy,
        "time_scale": options.time_scale,
        **info,
        **summarise_live(
            trace,
            config.utility.alpha,
            net.backhaul_up_rate_bps,
            net.backhaul_down_rate_bps,
            config.catalogue.quality_metric,
        ),
    }
    summary["refit"] = refit_comparison(config, summary)
    slots = pd.read_csv(folder / "metrics.csv")
    summary["loop_overhead"] = loop_overhead(trace, slots, options.time_scale)
    folder.write_json(SUMMARY, summary, default=float)
    write_report(folder.path, summary, trace, slots)
    return summary


def refit_comparison(config: ScenarioConfig, summary: dict) -> dict | None:
    """With a profile refitted from a live run (``calibrate --from-run``), that run's MAPE
    beside this one's: the fit before and after."""
    if not config.catalogue.profile:
        return None
    try:
        with open(config.catalogue.profile, "rb") as fh:
            source = tomllib.load(fh).get("meta", {}).get("from_run")
        before = RunFolder(source).read_json(SUMMARY) if source else None
    except (OSError, ValueError, TypeError):
        return None
    if before is None:
        return None
    return {
        "from_run": source,
        "mape_before_percent": before["mape_percent"],
        "mape_after_percent": summary["mape_percent"],
    }


def outcome(summary: dict, out: Path, max_failed_share: float = 0.5) -> tuple[int, str]:
    """The exit code of a finished run and its one line: the measured utility beside the
    simulated (code 0, for stdout), or why the run ended early or failed (code 1, for
    stderr): every user-slot failed, or more than ``max_failed_share`` of them."""
    if summary["ended_early"]:
        return 1, (
            f"testbed: the run ended early: {summary['ended_early']}; the "
            f"{summary['slots']} finished slots are kept in {out}"
        )
    failed, total = summary["failed_user_slots"], summary["user_slots"]
    if total == 0:
        return 1, f"testbed: the run played no user-slot; {out} holds what it wrote"
    if failed == total or failed > max_failed_share * total:
        return 1, (
            f"testbed: {failed} of {total} user-slots failed (allowed: a share of "
            f"{max_failed_share:g}, --max-failed-share; most often: "
            f"{summary['most_frequent_failure'][:80] or 'none'}); the run is kept in {out}"
        )
    sim, meas = summary["simulated"], summary["measured"]
    return 0, (
        f"{summary['policy']} live: measured utility {meas['utility']:.3f} (simulated "
        f"{sim['utility']:.3f}, MAPE of G {summary['mape_percent']['G']:.1f}%)  hit ratio "
        f"{meas['hit_ratio']:.3f}  violation rate {meas['violation_rate']:.3f} "
        f"({summary['slots']} slots, {summary['wall_s']:.0f} s) -> {out}"
    )

"""The live loop end to end: the users', edge and cloud nodes on loopback (in this process),
real RePaint, the controller in the one frame/slot driver, simulated beside measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nodes import live_run, start_live_nodes

from testbed.cli import main
from testbed.core.config import build_catalogue, load_config
from testbed.core.system_model import round_steps
from testbed.live.options import LIVE_SCENARIO
from testbed.live.report import BREAKDOWN, summarise_live, write_report
from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace

SMALL = {
    "network.num_users": 3,
    "timing.num_frames": 1,
    "timing.slots_per_frame": 2,
}


@pytest.fixture(scope="module")
def config():
    return load_config(LIVE_SCENARIO).replace(**SMALL)


@pytest.fixture(scope="module")
def nodes(config):
    started = start_live_nodes(config)
    yield started
    for node in started.values():
        node.stop(0.5)


@pytest.fixture(scope="module")
def run(config, nodes, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("live")
    info = live_run(config, nodes, out, "optimal", gallery_users=1)
    return out, info


def test_live_run_writes_every_user_slot_beside_its_simulation(config, run) -> None:
    out, info = run
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    assert len(trace) == 2 * 3 and info["slots"] == 2
    assert list(trace.columns) == LIVE_TRACE_SCHEMA.names
    assert (trace["failure"] == "").all()
    edge = trace["served_by"] == "edge"
    # the edge holds the model exactly when the simulator counts a hit
    assert (edge == trace["cached"]).all()
    # edge requests ran the integer steps of the allocation (never more than L per slot)
    assert (trace.loc[edge, "steps_run"] == trace.loc[edge, "steps"].astype(int)).all()
    assert (trace.groupby("slot")["steps"].sum() <= config.catalogue.total_steps).all()
    for _, part in trace.groupby("slot"):
        np.testing.assert_array_equal(
            part["steps"].astype(int), round_steps(part["xi"], config.catalogue.total_steps)
        )
    cloud = ~edge
    a3 = build_catalogue(config.catalogue).a3_steps
    assert (trace.loc[cloud, "steps_run"] == np.ceil(a3[trace.loc[cloud, "service"]])).all()
    assert (trace.loc[cloud, "measured_D_bh_s"] > 0).all()
    # real transfers: the measured uplink is paced at eq. (2): never faster than the link
    # (the pacer's schedule is absolute), late only by what a busy machine adds (the ~10%
    # accuracy on a quiet machine is the benchmark's figure, benchmarks/bench_live.py)
    assert (trace["measured_D_up_s"] >= 0.97 * trace["D_up_s"]).all()
    assert (trace["measured_D_up_s"] <= 1.5 * trace["D_up_s"] + 0.05).all()
    # real generation: a positive time, waiting included; real images scored
    assert (trace["measured_D_gt_s"] >= trace["measured_wait_s"]).all()
    assert (trace["measured_D_gt_s"] > 0).all()
    assert trace["measured_psnr"].between(5, 60).all() and trace["measured_tv"].gt(0).all()
    # measured G is eq. (10) of the measured delay and TV
    alpha = config.utility.alpha
    np.testing.assert_allclose(
        trace["measured_G"],
        alpha * trace["measured_D_tl_s"] + (1 - alpha) * trace["measured_quality"],
    )
    slots = pd.read_csv(out / "metrics.csv")
    assert list(slots["slot"]) == [0, 1]
    assert len(list((out / "gallery").glob("*_output.png"))) == 2  # 1 user x 2 slots


def test_summary_breakdown_adds_up_and_report_is_written(config, run) -> None:
    out, info = run
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    net = config.network
    summary = summarise_live(
        trace, config.utility.alpha, net.backhaul_up_rate_bps, net.backhaul_down_rate_bps
    )
    parts = summary["gap_breakdown"]
    assert sum(parts[name] for name in BREAKDOWN) == pytest.approx(parts["total"], abs=1e-9)
    assert summary["measured"]["utility"] == pytest.approx(trace["measured_G"].mean())
    assert summary["simulated"]["utility"] == pytest.approx(trace["G"].mean())
    assert 0 <= summary["mape_percent"]["G"] < 1e4
    summary.update({"policy": "optimal", "time_scale": 1.0, **info})
    report = write_report(out, summary, trace, pd.read_csv(out / "metrics.csv"))
    text = report.read_text()
    assert "| utility (mean G) |" in text and "![gallery](gallery.png)" in text
    for png in ("measured_vs_simulated.png", "slots.png", "gap_breakdown.png", "gallery.png"):
        assert (out / png).stat().st_size > 0


def test_refit_from_the_live_run_writes_a_loadable_profile(config, run, tmp_path) -> None:
    out, _ = run
    refit = tmp_path / "refit"
    assert main(["calibrate", "--from-run", str(out), "--out", str(refit)]) == 0
    profile = refit / "profile.toml"
    scenario = config.replace(**{"catalogue.profile": str(profile)})
    catalogue = build_catalogue(scenario.catalogue)
    assert catalogue.names == build_catalogue(config.catalogue).names
    assert (refit / "measurements.csv").is_file()
    # a second refit into the same folder is refused (results are never overwritten unasked)
    assert main(["calibrate", "--from-run", str(out), "--out", str(refit)]) == 2


def test_live_cli_against_running_nodes(config, nodes, tmp_path) -> None:
    out = tmp_path / "cli"
    scenario = tmp_path / "small.toml"
    from testbed.core.config import save_config

    save_config(config, scenario)
    code = main(
        [
            "run",
            "--policy",
            "rcars",
            "--config",
            str(scenario),
            "--edge",
            nodes["edge"].address,
            "--users-node",
            nodes["users"].address,
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "rcars" and summary["slots"] == 2
    assert set(summary["mape_percent"]) == {"G", "D_up", "D_dw", "D_gt", "D_tl", "quality"}
    assert (out / "report.md").is_file()


# The live run's options, state and resume point, without nodes ------------------------------


def test_live_json_stores_the_options_as_given_and_resume_reads_them_back(tmp_path) -> None:
    from dataclasses import replace

    from testbed.live.options import LiveOptions
    from testbed.runs.folder import RunFolder

    given = LiveOptions(
        policy="rcars",
        time_scale=20.0,
        gallery_users=0,
        inject=("link-loss=.25", "edge-kill@3"),
        restart_nodes=True,
        progress=False,
        start_timeout_s=5.0,
    )
    folder = RunFolder(tmp_path)
    given.store(folder)
    stored = json.loads((tmp_path / "live.json").read_text())
    assert list(stored) == [
        "policy", "checkpoint", "episodes", "time_scale", "request_timeout", "gallery",
        "device", "dtype", "threads", "inject", "restart_nodes", "edge", "users_node",
    ]  # fmt: skip
    assert stored["inject"] == ["link-loss=.25", "edge-kill@3"]  # as given, in order
    assert stored["request_timeout"] == 120.0 and stored["gallery"] == 0
    # a resumed run takes the stored options and keeps this command's unstored ones
    current = LiveOptions(policy="optimal", time_scale=1.0, start_timeout_s=9.0)
    assert current.stored_in(folder) == replace(given, progress=True, start_timeout_s=9.0)
    assert given.faults.link_loss == 0.25 and given.faults.kills_before(3) == ("edge",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time_scale": float("inf")}, "--time-scale = inf: allowed finite values > 0"),
        ({"request_timeout_s": 0.0}, "--request-timeout = 0.0: allowed finite values > 0"),
        ({"users_node": "127.0.0.1:1"}, "--edge and --users-node go together"),
        ({"policy": "t2drl+optimal"}, "needs --checkpoint RUN_DIR (for its part t2drl)"),
        ({"inject": ("edge-kill@x",)}, "--inject edge-kill@x: SLOT must be a whole number"),
        (
            {"edge": "127.0.0.1:1", "users_node": "127.0.0.1:2", "inject": ("cloud-kill@0",)},
            "--inject edge-kill/cloud-kill needs the nodes `testbed run` starts",
        ),
        (
            {"edge": "127.0.0.1:1", "users_node": "127.0.0.1:2", "restart_nodes": True},
            "--restart-nodes needs the nodes `testbed run` starts",
        ),
    ],
)
def test_bad_live_options_are_refused_naming_the_flag(options, message) -> None:
    from testbed.core.errors import UsageError
    from testbed.live.options import LiveOptions

    with pytest.raises(UsageError) as refused:
        LiveOptions(**options).check()
    assert message in str(refused.value)


class _Edge:
    """The edge's health check as the state sees it, and a supervisor that restarts it."""

    def __init__(self) -> None:
        self.answers, self.restarts = True, 0

    def edge_serving(self) -> bool:
        return self.answers

    def restart(self, name: str) -> None:
        assert name == "edge"
        self.restarts += 1
        self.answers = True


def test_live_state_marks_the_edge_down_once_and_restarts_it_at_the_next_frame() -> None:
    from testbed.live.state import LiveState

    edge = _Edge()
    state = LiveState(nodes=edge, supervisor=edge, restart_edge=True)
    assert not state.check_edge("edge down (x)")  # it answers: nothing happens
    state.slot_played()
    edge.answers = False
    assert state.check_edge("edge down (x)") and state.edge_down
    assert state.check_edge("edge down: relaying to the cloud")  # logged once only
    state.slot_played()
    state.restart_edge_if_down()
    assert not state.edge_down and edge.restarts == 1
    assert state.events == [
        {"slot": 1, "event": "edge down (x)"},
        {"slot": 2, "event": "edge restarted"},
    ]
    unsupervised = LiveState(nodes=edge, restart_edge=True)  # nodes started elsewhere
    edge.answers = False
    unsupervised.check_edge("edge down")
    unsupervised.restart_edge_if_down()
    assert unsupervised.edge_down and edge.restarts == 1


def test_the_resume_point_is_the_first_slot_without_both_its_part_and_its_row(tmp_path) -> None:
    from testbed.live.resume import ResumePoint
    from testbed.live.state import LiveState
    from testbed.runs.folder import RunFolder

    parts = tmp_path / "trace.parquet"
    parts.mkdir()
    for slot in range(3):
        (parts / f"part-{slot:05d}.parquet").write_bytes(b"")
    (tmp_path / "metrics.csv").write_text("slot,episode\n0,0\n1,0\n")  # slot 2: no row
    folder = RunFolder(tmp_path)
    point = ResumePoint.of(folder)
    assert point == ResumePoint(2) and point.resumes
    point.drop_unfinished(folder)
    assert sorted(p.name for p in parts.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    # 2 slots a frame: the first frame is replayed whole, the second is served from slot 2
    state = LiveState(point)
    assert state.replays_frame(2) and state.replays_slot() and state.slots_finished == 2
    state.slot_played()
    state.slot_played()
    assert not state.replays_frame(2) and not state.replays_slot()
    assert ResumePoint.of(RunFolder(tmp_path / "new")) == ResumePoint(0)


def test_a_run_folder_from_before_dtype_resumes_in_float32(tmp_path: Path) -> None:
    """live.json written before --dtype existed lacks it: such a run ran in float32."""
    from testbed.live.options import LiveOptions
    from testbed.runs.folder import RunFolder

    given = LiveOptions(policy="rcars", dtype="bfloat16")
    folder = RunFolder(tmp_path)
    given.store(folder)
    stored = json.loads((tmp_path / "live.json").read_text())
    assert stored["dtype"] == "bfloat16"
    del stored["dtype"]
    (tmp_path / "live.json").write_text(json.dumps(stored))
    assert LiveOptions().stored_in(folder).dtype == "float32"

"""The live testbed under faults: a node dying, the controller killed, lossy links.

Items 1-4 and 8 of the faults issue. The nodes run in this process (started fresh for each
test that kills one); the controller-kill test runs the controller as its own process and
kills it with SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nodes import live_run, start_live_nodes

from testbed.cli import main
from testbed.core.config import load_config, save_config
from testbed.core.errors import UsageError
from testbed.core.protocols import Hooks
from testbed.core.records import SlotStep
from testbed.live.faults import Faults, parse_faults
from testbed.live.options import LIVE_SCENARIO
from testbed.proto.runtime import Pacer
from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace

SMALL = {"network.num_users": 3, "timing.num_frames": 2, "timing.slots_per_frame": 2}


@pytest.fixture(scope="module")
def config():
    return load_config(LIVE_SCENARIO).replace(**SMALL)


@pytest.fixture
def nodes(config) -> Iterator[dict]:
    started = start_live_nodes(config)
    yield started
    for node in started.values():
        node.stop(0.2)


class StopAfter(Hooks):
    """Stops a node (as a crash would: no more answers) once ``slots`` slots are served."""

    def __init__(self, node, slots: int) -> None:
        self.node, self.slots, self.seen = node, slots, 0

    def on_slot(self, step: SlotStep) -> None:
        self.seen += 1
        if self.seen == self.slots:
            self.node.server.stop(0).wait()


def _live(config, nodes, out: Path, policy: str = "rcars", **kwargs) -> tuple[dict, pd.DataFrame]:
    """A live run of ``policy``; the links run 20x real time (cache fills take 0.3 s, not 7)."""
    time_scale = kwargs.pop("time_scale", 20.0)
    info = live_run(config, nodes, out, policy, gallery_users=0, time_scale=time_scale, **kwargs)
    return info, read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)


def test_item1_edge_dies_the_run_completes_through_the_cloud(config, nodes, tmp_path) -> None:
    info, trace = _live(config, nodes, tmp_path, hooks=(StopAfter(nodes["edge"], 1),))
    assert info["slots"] == 4 and not info["ended_early"] and len(trace) == 4 * 3
    assert any("edge down" in e["event"] for e in info["events"])
    after = trace[(trace["frame"] > 0) | (trace["slot"] > 1)]
    # the frame after the edge died: nothing cached, every request relayed to the cloud
    assert (after[after["frame"] == 1]["served_by"] == "cloud").all()
    assert (after[after["frame"] == 1]["failure"] == "").all()
    assert (after[after["frame"] == 1]["measured_D_bh_s"] > 0).all()  # over the backhaul
    failed = trace[trace["failure"] != ""]
    assert failed["failure"].str.match("UNAVAILABLE|DEADLINE_EXCEEDED").all()
    assert (failed["served_by"] == "").all()
    assert info["frames"][1]["failure"].startswith("edge down")


def test_item2_cloud_dies_misses_fail_with_their_status(config, nodes, tmp_path) -> None:
    info, trace = _live(config, nodes, tmp_path, hooks=(StopAfter(nodes["cloud"], 1),))
    assert info["slots"] == 4 and not info["ended_early"] and len(trace) == 12
    later = trace.iloc[3:]
    misses = later[~later["cached"]]
    assert len(misses) > 0 and (misses["failure"] != "").all()
    assert misses["failure"].str.match("UNAVAILABLE|DEADLINE_EXCEEDED").all()
    hits = later[later["cached"] & (later["frame"] == 0)]
    assert (hits["failure"] == "").all()  # the edge still serves what it holds


def test_item3_users_node_dies_the_run_ends_cleanly(config, nodes, tmp_path) -> None:
    info, trace = _live(config, nodes, tmp_path, hooks=(StopAfter(nodes["users"], 2),))
    assert "users' node stopped answering" in info["ended_early"]
    assert info["slots"] == 2 and len(trace) == 2 * 3  # every finished slot kept
    assert list(pd.read_csv(tmp_path / "metrics.csv")["slot"]) == [0, 1]


def test_item4_controller_killed_resume_equals_an_uninterrupted_run(config, tmp_path) -> None:
    nodes = start_live_nodes(config)
    try:
        _, whole_trace = _live(config, nodes, tmp_path / "whole")
        scenario = tmp_path / "scenario.toml"
        save_config(config, scenario)
        out = tmp_path / "killed"
        argv = [
            sys.executable, "-m", "testbed.cli", "run", "--policy", "rcars", "--config",
            str(scenario), "--edge", nodes["edge"].address, "--users-node",
            nodes["users"].address, "--gallery", "0", "--time-scale", "20", "--quiet",
            "--out", str(out),
        ]  # fmt: skip
        controller = subprocess.Popen(argv, stderr=subprocess.PIPE)
        parts = out / "trace.parquet"
        deadline = time.time() + 120
        while len(list(parts.glob("part-*.parquet"))) < 2:
            assert time.time() < deadline and controller.poll() is None
            time.sleep(0.05)
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        kept = len(list(parts.glob("part-*.parquet")))
        assert 2 <= kept < 4
        assert main(["run", "--resume", str(out), "--quiet"]) == 0
    finally:
        for node in nodes.values():
            node.stop(0.2)
    resumed = read_trace(parts, LIVE_TRACE_SCHEMA)
    assert len(resumed) == len(whole_trace) == 12  # nothing lost, nothing twice
    assert not resumed.duplicated(["episode", "frame", "slot", "user"]).any()
    same = [c for c in LIVE_TRACE_SCHEMA.names if not c.startswith("measured_")]
    same.remove("unet_calls")  # a batch's calls depend on who was ready together
    pd.testing.assert_frame_equal(resumed[same], whole_trace[same])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slots"] == 4


def test_item8_link_loss_retransmits_and_costs_measured_delay() -> None:
    chunk, count, rate = 1_000, 200, 8e6  # 200 chunks of 1 ms each, run 20x real time
    elapsed = {}
    for name, loss in (("lossless", 0.0), ("lossy", 0.5)):
        pacer = Pacer(rate, 20.0, loss=loss, seed=3)
        for _ in range(count):
            pacer.sent(chunk)
        elapsed[name] = pacer.emulated_s()
        if name == "lossless":
            lossless = pacer
    lossy = pacer
    assert lossless.retransmissions == 0
    # each chunk is sent until it gets through: 1 / (1 - p) = 2 sends on average
    assert 0.7 * count < lossy.retransmissions < 1.3 * count
    assert lossy.bits == 8 * chunk * (count + lossy.retransmissions)
    # and the link's time is the time of every copy (the retransmissions' measured delay)
    assert elapsed["lossy"] >= lossy.bits / rate
    assert elapsed["lossy"] > 1.5 * elapsed["lossless"]
    again = Pacer(rate, 20.0, loss=0.5, seed=3)
    for _ in range(count):
        again.sent(chunk)
    assert again.retransmissions == lossy.retransmissions  # seeded
    with pytest.raises(ValueError, match="link_loss"):
        Pacer(rate, 1.0, loss=1.0)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["edge-kill@3"], Faults(edge_kill_slot=3)),
        (["cloud-kill@0", "link-loss=0.25"], Faults(cloud_kill_slot=0, link_loss=0.25)),
    ],
)
def test_item8_inject_flags_parse(items, expected) -> None:
    assert parse_faults(items) == expected


@pytest.mark.parametrize(
    "item", ["edge-kill@x", "edge-kill@-1", "link-loss=2", "link-loss=nan", "users-kill@1", "x"]
)
def test_item8_bad_inject_is_one_line(item) -> None:
    with pytest.raises(UsageError, match="--inject"):
        parse_faults([item])


class _Killer:
    def __init__(self) -> None:
        self.killed: list[str] = []

    def kill(self, name: str) -> None:
        self.killed.append(name)


def test_item8_injected_kills_strike_before_their_slot_and_are_logged() -> None:
    from testbed.live.faults import FaultInjector
    from testbed.live.state import LiveState

    state, killer = LiveState(), _Killer()
    injector = FaultInjector(parse_faults(["edge-kill@1", "cloud-kill@1"]), killer, state)
    injector.before_slot(0)
    state.slot_played()
    injector.before_slot(1)
    assert killer.killed == ["edge", "cloud"]
    assert state.events == [
        {"slot": 1, "event": "edge killed (injected)"},
        {"slot": 1, "event": "cloud killed (injected)"},
    ]
    FaultInjector(parse_faults(["edge-kill@0"]), None, state).before_slot(0)  # no supervisor
    assert len(state.events) == 2


def test_item8_link_loss_through_the_nodes_adds_delay(config, nodes, tmp_path) -> None:
    _, clean_trace = _live(config, nodes, tmp_path / "clean")
    lossy, lossy_trace = _live(config, nodes, tmp_path / "lossy", inject=("link-loss=0.4",))
    assert (lossy_trace["failure"] == "").all()
    up_clean = clean_trace["measured_D_up_s"].to_numpy()
    up_lossy = lossy_trace["measured_D_up_s"].to_numpy()
    # every upload carries the same bytes at the same rate: losses only add time
    assert np.median(up_lossy / up_clean) > 1.2
    assert lossy["faults"]["link_loss"] == 0.4


@pytest.mark.slow
def test_item7_sixty_four_users_lose_and_repeat_no_row(tmp_path) -> None:
    out = tmp_path / "load"
    args = ["run", "--users", "64", "--frames", "1", "--slots", "5", "--quiet", "--out", str(out)]
    assert main(args) == 0
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    assert len(trace) == 64 * 5
    assert not trace.duplicated(["episode", "frame", "slot", "user"]).any()
    assert (trace["failure"] == "").all()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["node_memory"]) == {"cloud", "edge", "users"}
    assert 0 <= summary["loop_overhead"]["median_share"] < 1

"""Bounded waits, and nodes that agree with the controller on the scenario.

Reaching Ray, a node or a peer ends within a stated time with one line naming the address;
SIGTERM ends a command within seconds. The users' node and the edge describe the scenario
they serve (``Describe``), and ``testbed run --edge --users-node`` refuses nodes that serve
another one, naming the differing keys, before anything is written.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from nodes import assert_serving, start_live_nodes, user_allocations

from testbed.core.config import build_catalogue, load_config, save_config
from testbed.live.nodes import NodeAddresses, NodeStartError, start_node
from testbed.live.options import LIVE_SCENARIO
from testbed.live.world import NodeUnreachable, check_nodes
from testbed.proto import common_pb2, edge_pb2_grpc, users_pb2, users_pb2_grpc
from testbed.proto.runtime import channel
from testbed.proto.scenario import describe, differing_keys, scenario_hash, world_keys
from testbed.proto.slots import slot_from_message

SMALL = {"network.num_users": 2, "timing.num_frames": 1, "timing.slots_per_frame": 1}
CLI = [sys.executable, "-m", "testbed.cli"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def config():
    return load_config(LIVE_SCENARIO).replace(**SMALL)


@pytest.fixture(scope="module")
def nodes(config) -> Iterator[dict]:
    started = start_live_nodes(config)
    yield started
    for node in started.values():
        node.stop(0.2)


# The scenario's description --------------------------------------------------------------


def test_description_names_world_keys_and_hashes_them(config) -> None:
    keys = world_keys(config)
    assert keys["network.num_users"] == "2"
    assert keys["timing.slots_per_frame"] == "1"
    assert keys["catalogue.quality_metric"] == '"tv"'
    assert "seed" not in keys and not any(key.startswith("utility.") for key in keys)
    assert "catalogue.profile" not in keys and "catalogue.model_names" in keys
    assert describe(config).scenario_sha256 == scenario_hash(keys)
    # the seed and the controller's scoring do not change what the nodes serve
    same = config.replace(seed=7, **{"utility.alpha": 0.1})
    assert describe(same).scenario_sha256 == describe(config).scenario_sha256
    other = describe(config.replace(**{"network.num_users": 3}))
    assert differing_keys(other, describe(config)) == ["network.num_users = 2 there, 3 here"]


@pytest.mark.parametrize(
    ("name", "stub"), [("users", users_pb2_grpc.UsersStub), ("edge", edge_pb2_grpc.EdgeStub)]
)
def test_describe_answers_and_a_bad_payload_leaves_the_node_serving(
    config, nodes, name, stub
) -> None:
    address = nodes[name].address
    service = "testbed.v1.Users" if name == "users" else "testbed.v1.Edge"
    with channel(address) as chan:
        raw = chan.unary_unary(f"/{service}/Describe")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xff\xff\xff", timeout=5)  # not a DescribeRequest
        assert refused.value.code() == grpc.StatusCode.INTERNAL
        reply = stub(chan).Describe(common_pb2.DescribeRequest(), timeout=5)
    assert reply.scenario_sha256 == describe(config).scenario_sha256
    assert dict(reply.keys) == world_keys(config)
    assert_serving(address, service)
    with channel(address) as chan:
        database = ProtoReflectionDescriptorDatabase(chan)
        assert {service, "grpc.health.v1.Health"} <= set(database.get_services())
        methods = DescriptorPool(database).FindServiceByName(service).methods
        assert "Describe" in [method.name for method in methods]


# The controller's check before the first slot ----------------------------------------------


def test_check_nodes_passes_nodes_of_the_same_scenario(config, nodes) -> None:
    check_nodes(NodeAddresses(nodes["users"].address, nodes["edge"].address), config)


def test_check_nodes_names_the_differing_keys(config, nodes) -> None:
    addresses = NodeAddresses(nodes["users"].address, nodes["edge"].address)
    other = config.replace(**{"network.num_users": 3, "timing.num_frames": 2})
    with pytest.raises(NodeUnreachable) as refused:
        check_nodes(addresses, other)
    assert str(refused.value) == (
        f"--users-node {addresses.users} serves another scenario: network.num_users = 2 "
        "there, 3 here; timing.num_frames = 1 there, 2 here (start the nodes with this "
        "run's --config and --set, or give the run theirs)"
    )


def test_check_nodes_gives_up_on_a_closed_port_in_its_deadline(config) -> None:
    users = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(NodeUnreachable) as refused:
        check_nodes(NodeAddresses(users, users), config, timeout_s=1.0)
    assert str(refused.value) == f"--users-node {users}: no node answered SERVING within 1 s"
    assert time.monotonic() - start < 5


def test_run_refuses_nodes_of_another_scenario_before_writing(config, nodes, tmp_path) -> None:
    scenario = tmp_path / "scenario.toml"
    save_config(config.replace(**{"network.num_users": 3}), scenario)
    out = tmp_path / "run"
    users, edge = nodes["users"].address, nodes["edge"].address
    argv = ["run", "--policy", "rcars", "--config", str(scenario), "--quiet", "--out", str(out)]
    done = subprocess.run(
        [*CLI, *argv, "--edge", edge, "--users-node", users],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"testbed: error: --users-node {users} serves another scenario: network.num_users = "
        "2 there, 3 here (start the nodes with this run's --config and --set, or give the "
        "run theirs)"
    )
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_run_refuses_closed_ports_in_seconds_before_writing(tmp_path) -> None:
    users, edge = f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"
    out = tmp_path / "run"
    start = time.monotonic()
    argv = ["run", "--policy", "rcars", "--quiet", "--out", str(out), "--start-timeout", "1"]
    done = subprocess.run(
        [*CLI, *argv, "--edge", edge, "--users-node", users],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"testbed: error: --users-node {users}: no node answered SERVING within 1 s"
    )
    assert not out.exists()
    assert time.monotonic() - start < 30  # the interpreter's imports included


def test_a_user_whose_edge_is_unreachable_names_it_within_its_deadline(config) -> None:
    from ue_emulator.server import serve

    edge = f"127.0.0.1:{closed_port()}"
    node = serve(config, edge=edge)
    try:
        with channel(node.address) as chan:
            stub = users_pb2_grpc.UsersStub(chan)
            seed = common_pb2.Seed(entropy=[1])
            stub.BeginEpisode(users_pb2.EpisodeRequest(world_seed=seed), timeout=5)
            stub.BeginFrame(users_pb2.FrameRequest(), timeout=5)
            slot = slot_from_message(stub.NextSlot(users_pb2.SlotRequest(), timeout=5))
            catalogue = build_catalogue(config.catalogue)
            start = time.monotonic()
            report = stub.ServeSlot(
                users_pb2.SlotAllocation(
                    frame=slot.frame,
                    slot=slot.slot,
                    users=user_allocations(slot, catalogue, steps=1, rate_bps=1e9),
                    backhaul_up_rate_bps=1e9,
                    backhaul_down_rate_bps=1e9,
                    time_scale=1.0,
                    request_timeout_s=2.0,
                ),
                timeout=10,
            )
            elapsed_s = time.monotonic() - start
        assert_serving(node.address, "testbed.v1.Users")
    finally:
        node.stop(0)
    assert elapsed_s < 5
    for user in report.users:
        assert user.failure.startswith(
            (f"UNAVAILABLE: the edge at {edge}: ", f"DEADLINE_EXCEEDED: the edge at {edge}: ")
        ), user.failure


# Node starts --------------------------------------------------------------------------------


def test_a_node_that_exits_before_it_listens_is_named(tmp_path) -> None:
    log = tmp_path / "edge.log"
    with pytest.raises(NodeStartError) as refused:
        start_node(["edge-node", "--no-such-flag"], "edge", log, timeout_s=60)
    assert str(refused.value) == (f"the edge node exited with code 2 before it listened; see {log}")
    # argparse's own line, kept for the user
    assert "error: the following arguments are required: --cloud" in log.read_text()


def test_a_node_that_does_not_listen_in_time_is_killed_and_named(tmp_path) -> None:
    log = tmp_path / "users.log"
    start = time.monotonic()
    with pytest.raises(NodeStartError) as refused:
        start_node(["ue-emulator"], "users", log, timeout_s=0.5)  # its imports take longer
    assert str(refused.value) == (
        f"the users node did not listen within 0.5 s (--start-timeout); see {log}"
    )
    assert time.monotonic() - start < 5


# Ray -----------------------------------------------------------------------------------------


def test_ray_with_nothing_listening_is_refused_in_seconds(tmp_path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{closed_port()}"
    out = tmp_path / "experiment"
    start = time.monotonic()
    done = subprocess.run(
        [*CLI, "experiment", "fig6a", "--quick", "--quiet", "--ray", address, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    port = address.rpartition(":")[2]
    assert re.fullmatch(
        rf"testbed: error: --ray {re.escape(address)}: nothing answers at [\d.]+:{port} "
        r"within 10 s \(Connection refused\); start the cluster \(ray start --head\) or use "
        r"--ray local",
        line,
    ), line
    assert not out.exists()
    assert time.monotonic() - start < 30


# Signals -------------------------------------------------------------------------------------

TINY_SIM = ["--set", "timing.num_frames=2", "--set", "timing.slots_per_frame=50", "--users", "3"]
SIGTERM_COMMANDS = {
    "run": ["run", "--policy", "rcars", "--slots", "50", "--gallery", "0", "--quiet"],
    "experiment": ["experiment", "fig6a", "--quick", "--workers", "2", "--quiet"],
    "compare": ["compare", "--policies", "rcars", "schrs", "--episodes", "50", *TINY_SIM],
    "train": ["train", "--episodes", "1000", "--quiet", *TINY_SIM],
    "calibrate": ["calibrate", "--models", "brick", "--images", "64", "--threads", "1"],
}


SIGNALS = [(name, signal.SIGTERM) for name in sorted(SIGTERM_COMMANDS)] + [
    ("run", signal.SIGINT),
    ("train", signal.SIGINT),
]
STOPPED = {signal.SIGTERM: (143, "SIGTERM"), signal.SIGINT: (130, "Ctrl-C")}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "signum"), SIGNALS)
def test_a_signal_ends_a_command_within_seconds(name: str, signum: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = subprocess.Popen(
        [*CLI, "--log-level", "warning", *SIGTERM_COMMANDS[name], "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not out.exists():  # the command is at work: its folder is made
        assert command.poll() is None, f"{name} ended before the signal"
        assert time.monotonic() < deadline, f"{name} made no --out within 60 s"
        time.sleep(0.1)
    time.sleep(2)
    assert command.poll() is None, f"{name} ended before the signal"
    command.send_signal(signum)
    start = time.monotonic()
    try:
        _, stderr = command.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        command.kill()
        raise AssertionError(f"{name} still running 10 s after {signum!r}") from None
    assert time.monotonic() - start < 10
    assert "Traceback" not in stderr, stderr
    code, said = STOPPED[signum]
    assert command.returncode == code, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"testbed: stopped by {said}; "), stderr
    assert out.is_dir()  # what finished is kept

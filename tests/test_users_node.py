"""The users' node over the wire: the simulator's world, slot by slot; real paced requests to
an edge; failures that stay with their users; and a status naming the field for bad input."""

from __future__ import annotations

import io
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import matplotlib.image as mpimg
import numpy as np
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from nodes import user_allocations

from testbed.core.config import ConfigError, ScenarioConfig, build_catalogue, load_config
from testbed.core.records import SlotState
from testbed.core.seeding import episode_seed, request_seed
from testbed.proto import common_pb2, edge_pb2_grpc, users_pb2, users_pb2_grpc
from testbed.proto.runtime import (
    MAX_MESSAGE_BYTES,
    MAX_TRANSFER_BYTES,
    NodeServer,
    channel,
    make_server,
)
from testbed.proto.slots import slot_from_message
from testbed.proto.streams import Refusal, receive_upload, reply_messages
from ue_emulator.quality import score_outputs
from ue_emulator.requests import make_requests
from ue_emulator.server import NO_BANDWIDTH, UsersServicer, serve
from ue_emulator.world import World

ROOT = Path(__file__).resolve().parents[1]
LIVE = load_config(ROOT / "testbed" / "scenarios" / "live_cpu.toml")
CATALOGUE = build_catalogue(LIVE.catalogue)
SHAPES = dict.fromkeys(CATALOGUE.names, (32, 32, 3))
DEADLINE_S = 10.0


class EchoEdge(edge_pb2_grpc.EdgeServicer):
    """A minimal ``testbed.v1.Edge`` on the shared stream code: its "generated" image is the
    corrupted upload, paced back at the header's eq. (5) rate.

    Models in ``cloud_models`` are reported as forwarded (served by "cloud", with the eq. (4)
    and (6) backhaul seconds of their sizes, computed rather than paced). ``faults`` maps a
    user index to a broken reply: "abort" (RESOURCE_EXHAUSTED) or "shape" (a wrong header).
    """

    def __init__(self) -> None:
        self.cloud_models: set[str] = set()
        self.faults: dict[int, str] = {}
        self.headers: list[common_pb2.RequestHeader] = []

    def Generate(
        self, request_iterator: Iterator[common_pb2.UploadChunk], context: grpc.ServicerContext
    ) -> Iterator[common_pb2.DownloadChunk]:
        try:
            upload = receive_upload(request_iterator, SHAPES, LIVE.catalogue.total_steps)
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        header = upload.header
        self.headers.append(header)
        fault = self.faults.get(int(header.request_id.rpartition("-u")[2]))
        if fault == "abort":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "edge full")
        forwarded = header.model in self.cloud_models
        result = common_pb2.ResultHeader(
            request_id=header.request_id,
            served_by="cloud" if forwarded else "edge",
            steps_run=header.steps,
            unet_calls=2 * header.steps,
            batch_size=1,
            generation_s=time.perf_counter() - upload.completed_s,
            height_px=header.height_px // 2 if fault == "shape" else header.height_px,
            width_px=header.width_px,
            channels=header.channels,
            output_bytes=header.output_bytes,
        )
        if forwarded:
            result.backhaul_up_s = 8 * header.input_bytes / header.backhaul_up_rate_bps
            result.backhaul_down_s = 8 * header.output_bytes / header.backhaul_down_rate_bps
        yield from reply_messages(
            result, upload.masked_image, header.downlink_rate_bps, header.time_scale
        )


def seed_message(seed: np.random.SeedSequence) -> common_pb2.Seed:
    return common_pb2.Seed(
        entropy=[int(e) for e in np.atleast_1d(seed.entropy)], spawn_key=list(seed.spawn_key)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[EchoEdge, NodeServer]]:
    servicer = EchoEdge()
    node = make_server(
        [lambda server: edge_pb2_grpc.add_EdgeServicer_to_server(servicer, server)],
        ["testbed.v1.Edge"],
    )
    yield servicer, node
    node.stop(0)


@pytest.fixture(scope="module")
def users_node(echo: tuple[EchoEdge, NodeServer]) -> Iterator[NodeServer]:
    node = serve(LIVE, edge=echo[1].address)
    yield node
    node.stop(0)


@pytest.fixture(scope="module")
def stub(users_node: NodeServer) -> Iterator[users_pb2_grpc.UsersStub]:
    with channel(users_node.address) as chan:
        yield users_pb2_grpc.UsersStub(chan)


def draw_slot(stub: users_pb2_grpc.UsersStub, episode: int = 0) -> SlotState:
    """BeginEpisode, BeginFrame, NextSlot: the first slot of an episode of the live scenario."""
    seed = seed_message(episode_seed(LIVE.seed, episode))
    stub.BeginEpisode(users_pb2.EpisodeRequest(episode=episode, world_seed=seed), timeout=5)
    stub.BeginFrame(users_pb2.FrameRequest(), timeout=5)
    return slot_from_message(stub.NextSlot(users_pb2.SlotRequest(), timeout=5))


def allocation(slot: SlotState, **fields: float) -> users_pb2.SlotAllocation:
    """A valid allocation of ``slot``: one step per user, fast links (a few ms per transfer)."""
    defaults = {"time_scale": 1.0, "request_timeout_s": 5.0}
    return users_pb2.SlotAllocation(
        frame=slot.frame,
        slot=slot.slot,
        users=user_allocations(slot, CATALOGUE, steps=1, rate_bps=1e9, cached=True),
        backhaul_up_rate_bps=LIVE.network.backhaul_up_rate_bps,
        backhaul_down_rate_bps=LIVE.network.backhaul_down_rate_bps,
        **(defaults | fields),
    )


def the_request(slot: SlotState, user: int, episode: int = 0):
    seed = request_seed(episode_seed(LIVE.seed, episode), slot.frame, slot.slot, user)
    return make_requests(CATALOGUE.names[slot.services[user]], 1, seed)[0]


def test_the_wire_gives_the_simulators_world_bit_for_bit(stub: users_pb2_grpc.UsersStub) -> None:
    local = World(LIVE)
    timing = LIVE.timing
    for episode in range(2):
        reply = stub.BeginEpisode(
            users_pb2.EpisodeRequest(
                episode=episode, world_seed=seed_message(episode_seed(LIVE.seed, episode))
            ),
            timeout=5,
        )
        assert reply.num_users == LIVE.network.num_users
        local.reset(episode_seed(LIVE.seed, episode))
        for _ in range(timing.num_frames):
            frame = stub.BeginFrame(users_pb2.FrameRequest(), timeout=5)
            want = local.begin_frame()
            assert (frame.frame, frame.popularity_index, frame.gamma) == (
                want.frame,
                want.popularity_index,
                want.gamma,
            )
            for _ in range(timing.slots_per_frame):
                got = slot_from_message(stub.NextSlot(users_pb2.SlotRequest(), timeout=5))
                want_slot = local.next_slot()
                for name in ("frame", "slot", "popularity_index", "gamma", "location_state"):
                    assert getattr(got, name) == getattr(want_slot, name), name
                for name in (
                    "positions_m",
                    "distance_m",
                    "fading_power",
                    "channel_gain",
                    "services",
                    "input_bits",
                ):
                    want_array = getattr(want_slot, name)
                    got_array = getattr(got, name).astype(want_array.dtype)
                    assert got_array.shape == want_array.shape, name
                    assert got_array.tobytes() == want_array.tobytes(), name


def test_request_seeds_follow_the_world_seed_and_differ_per_user_slot_and_frame() -> None:
    world = episode_seed(3, 1)
    seeds = {
        request_seed(world, frame, slot, user)
        for frame in range(3)
        for slot in range(4)
        for user in range(5)
    }
    assert len(seeds) == 60
    assert request_seed(episode_seed(3, 1), 2, 3, 4) == request_seed(world, 2, 3, 4)
    assert request_seed(episode_seed(3, 2), 0, 0, 0) != request_seed(world, 0, 0, 0)


def test_a_slot_uploads_and_downloads_at_the_allocated_rates_and_scores_the_reply(
    stub: users_pb2_grpc.UsersStub, echo: tuple[EchoEdge, NodeServer]
) -> None:
    edge, _ = echo
    slot = draw_slot(stub)
    num_users = len(slot.services)
    message = allocation(slot, time_scale=2.0, gallery_users=2)
    edge.cloud_models = {CATALOGUE.names[slot.services[1]]}
    steps = [0, 1, 1, 1, 1, 2]
    for u, user in enumerate(message.users):
        # emulated 240-340 ms each way: 120-170 ms of wall time at time_scale 2
        user.steps = steps[u]
        user.uplink_rate_bps = 8 * user.input_bytes / (0.24 + 0.02 * u)
        user.downlink_rate_bps = 8 * user.output_bytes / (0.24 + 0.02 * u)
    message.users[0].uplink_rate_bps = 0.0
    edge.headers.clear()
    start = time.perf_counter()
    report = stub.ServeSlot(message, timeout=DEADLINE_S)
    wall_s = time.perf_counter() - start
    assert len(report.users) == num_users
    assert wall_s < 1.0  # the users ran together: the slowest takes ~0.35 s of wall time
    no_bandwidth = report.users[0]
    assert no_bandwidth.failure == NO_BANDWIDTH and no_bandwidth.uplink_s == 0.0
    assert not no_bandwidth.output_png and no_bandwidth.upload_png and no_bandwidth.truth_png
    assert len(edge.headers) == num_users - 1  # the user without bandwidth sent nothing
    headers = {h.request_id.rpartition("-u")[2]: h for h in edge.headers}
    for u in range(1, num_users):
        got, wanted = report.users[u], message.users[u]
        made = the_request(slot, u)
        assert got.failure == "", got.failure
        forwarded = wanted.model in edge.cloud_models
        assert got.served_by == ("cloud" if forwarded else "edge")
        assert (got.steps_run, got.unet_calls) == (steps[u], 2 * steps[u])
        header = headers[str(u)]
        assert header.noise_seed == made.request.seed and header.steps == steps[u]
        assert header.input_bytes == wanted.input_bytes == math.ceil(slot.input_bits[u] / 8)
        backhaul_up_s = 8 * wanted.input_bytes / LIVE.network.backhaul_up_rate_bps
        backhaul_down_s = 8 * wanted.output_bytes / LIVE.network.backhaul_down_rate_bps
        assert got.backhaul_up_s == pytest.approx(backhaul_up_s if forwarded else 0.0)
        assert got.backhaul_down_s == pytest.approx(backhaul_down_s if forwarded else 0.0)
        assert got.backhaul_s == pytest.approx(got.backhaul_up_s + got.backhaul_down_s)
        radio_up_s = got.uplink_s - got.backhaul_up_s
        radio_down_s = got.downlink_s - got.backhaul_down_s
        up_s = 8 * wanted.input_bytes / wanted.uplink_rate_bps  # eq. (2)'s delay
        down_s = 8 * wanted.output_bytes / wanted.downlink_rate_bps  # eq. (5)'s
        # never faster than the link (the pacer's schedule is absolute); late by at most a
        # scheduler hiccup on a busy 2-core machine (the 2% accuracy figure is the
        # benchmark's, benchmarks/bench_live.py, measured on a quiet machine)
        assert up_s * 0.99 <= radio_up_s <= up_s * 1.10
        assert down_s * 0.98 <= radio_down_s <= down_s * 1.10
        # the echoed output is the corrupted upload: its scores are the upload's own
        scores = score_outputs(
            made.request.masked_image[None], made.ground_truth[None], made.request.mask[None]
        )
        assert got.psnr_db == pytest.approx(float(scores.psnr_db[0]), rel=1e-6)
        assert got.ssim == pytest.approx(float(scores.ssim[0]), rel=1e-6)
        assert got.tv == pytest.approx(float(scores.tv[0]), rel=1e-6)
        assert got.hole_mae == pytest.approx(float(scores.hole_mae[0]), rel=1e-6)
        assert got.hole_mae > 1.0  # the upload's grey hole is far from the ground truth
        assert bool(got.output_png) == (u < 2)
    gallery = report.users[1]
    upload = mpimg.imread(io.BytesIO(gallery.upload_png))
    output = mpimg.imread(io.BytesIO(gallery.output_png))
    truth = mpimg.imread(io.BytesIO(gallery.truth_png))
    assert upload.shape[:2] == truth.shape[:2] == (32, 32)
    np.testing.assert_array_equal(output, upload)  # the echo edge returned the upload


def test_a_failing_edge_fails_only_its_users(
    stub: users_pb2_grpc.UsersStub, echo: tuple[EchoEdge, NodeServer]
) -> None:
    edge, server = echo
    edge.cloud_models = set()
    edge.faults = {2: "abort", 4: "shape"}
    try:
        report = stub.ServeSlot(allocation(draw_slot(stub)), timeout=DEADLINE_S)
    finally:
        edge.faults = {}
    failures = [user.failure for user in report.users]
    # the status, the peer it came from, the edge's details
    assert failures[2] == f"RESOURCE_EXHAUSTED: the edge at {server.address}: edge full"
    assert failures[4].startswith("BAD_REPLY: header: reply of (16, 32, 3)")
    assert [f for u, f in enumerate(failures) if u not in (2, 4)] == [""] * 4


def test_an_unreachable_edge_fails_every_user_and_the_slot_still_reports() -> None:
    node = serve(LIVE, edge=f"127.0.0.1:{free_port()}")
    try:
        with channel(node.address) as chan:
            stub = users_pb2_grpc.UsersStub(chan)
            report = stub.ServeSlot(
                allocation(draw_slot(stub), request_timeout_s=2.0), timeout=DEADLINE_S
            )
    finally:
        node.stop(0)
    assert len(report.users) == LIVE.network.num_users
    for user in report.users:
        assert user.failure.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")), user.failure


def test_begin_frame_before_any_episode_is_refused(echo: tuple[EchoEdge, NodeServer]) -> None:
    node = serve(LIVE, edge=echo[1].address)
    try:
        with channel(node.address) as chan:
            with pytest.raises(grpc.RpcError) as caught:
                users_pb2_grpc.UsersStub(chan).BeginFrame(users_pb2.FrameRequest(), timeout=5)
    finally:
        node.stop(0)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "BeginEpisode" in caught.value.details()


def test_a_catalogue_without_image_sources_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"catalogue.profile: models \['model0'"):
        UsersServicer(ScenarioConfig(), "127.0.0.1:1")


Stub = users_pb2_grpc.UsersStub
Call = Callable[[Stub, SlotState], object]


def _serve_with(change: Callable[[users_pb2.SlotAllocation, SlotState], None]) -> Call:
    def call(stub: Stub, slot: SlotState) -> object:
        message = allocation(slot)
        change(message, slot)
        return stub.ServeSlot(message, timeout=DEADLINE_S)

    return call


def _set_user(user: int, field: str, value: float) -> Call:
    return _serve_with(lambda m, _: setattr(m.users[user], field, value))


def _set(field: str, value: float) -> Call:
    return _serve_with(lambda m, _: setattr(m, field, value))


def _other_model(message: users_pb2.SlotAllocation, slot: SlotState) -> None:
    message.users[2].model = CATALOGUE.names[(slot.services[2] + 1) % CATALOGUE.num_models]


def _every_user_two_steps(message: users_pb2.SlotAllocation, slot: SlotState) -> None:
    for user in message.users:
        user.steps = 2


def _serve_twice(stub: Stub, slot: SlotState) -> object:
    stub.ServeSlot(allocation(slot), timeout=DEADLINE_S)
    return stub.ServeSlot(allocation(slot), timeout=DEADLINE_S)


def _slots_past_k(stub: Stub, slot: SlotState) -> object:
    for _ in range(LIVE.timing.slots_per_frame):
        stub.NextSlot(users_pb2.SlotRequest(), timeout=DEADLINE_S)
    return None


def _serve_before_next_slot(stub: Stub, slot: SlotState) -> object:
    stub.BeginFrame(users_pb2.FrameRequest(), timeout=DEADLINE_S)
    return stub.ServeSlot(allocation(slot), timeout=DEADLINE_S)


def _next_slot_before_begin_frame(stub: Stub, slot: SlotState) -> object:
    seed = seed_message(episode_seed(LIVE.seed, 0))
    stub.BeginEpisode(users_pb2.EpisodeRequest(world_seed=seed), timeout=DEADLINE_S)
    return stub.NextSlot(users_pb2.SlotRequest(), timeout=DEADLINE_S)


def _begin_episode(seed: common_pb2.Seed | None) -> Call:
    return lambda stub, _: stub.BeginEpisode(
        users_pb2.EpisodeRequest(world_seed=seed), timeout=DEADLINE_S
    )


INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
L = LIVE.catalogue.total_steps
BAD_CALLS: dict[str, tuple[Call, grpc.StatusCode, str]] = {
    "no world seed": (_begin_episode(None), INVALID, "world_seed"),
    "empty entropy": (_begin_episode(common_pb2.Seed(spawn_key=[1])), INVALID, "world_seed"),
    "NextSlot before BeginFrame": (_next_slot_before_begin_frame, PRECONDITION, "BeginFrame"),
    "more than K slots": (_slots_past_k, PRECONDITION, "already has 5 slots"),
    "ServeSlot before NextSlot": (_serve_before_next_slot, PRECONDITION, "before NextSlot"),
    "ServeSlot twice": (_serve_twice, PRECONDITION, "already served"),
    "another slot": (_set("slot", 3), PRECONDITION, "slot = 0, 3"),
    "wrong user count": (_serve_with(lambda m, _: m.users.pop()), INVALID, "users: 5 alloc"),
    "NaN uplink rate": (_set_user(0, "uplink_rate_bps", math.nan), INVALID, "users[0].uplink"),
    "negative uplink rate": (_set_user(1, "uplink_rate_bps", -1.0), INVALID, "users[1].uplink"),
    "inf uplink rate": (_set_user(5, "uplink_rate_bps", math.inf), INVALID, "users[5].uplink"),
    "zero downlink rate": (_set_user(3, "downlink_rate_bps", 0.0), INVALID, "users[3].downlink"),
    "NaN downlink": (_set_user(0, "downlink_rate_bps", math.nan), INVALID, "users[0].downlink"),
    "steps over L": (_set_user(4, "steps", L + 1), INVALID, "users[4].steps"),
    "steps over L in all": (_serve_with(_every_user_two_steps), INVALID, "users[*].steps"),
    "model mismatch": (_serve_with(_other_model), INVALID, "users[2].model"),
    "oversize input": (
        _set_user(0, "input_bytes", MAX_TRANSFER_BYTES + 1),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "users[0].input_bytes",
    ),
    "no output bytes": (_set_user(1, "output_bytes", 0), INVALID, "users[1].output_bytes"),
    "NaN time scale": (_set("time_scale", math.nan), INVALID, "time_scale"),
    "negative time scale": (_set("time_scale", -2.0), INVALID, "time_scale"),
    "inf request timeout": (_set("request_timeout_s", math.inf), INVALID, "request_timeout_s"),
    "negative backhaul": (_set("backhaul_up_rate_bps", -1.0), INVALID, "backhaul_up_rate_bps"),
    "gallery over U": (_set("gallery_users", 7), INVALID, "gallery_users"),
}


def check_still_serving(stub: Stub, address: str) -> None:
    with channel(address) as chan:
        health = health_pb2_grpc.HealthStub(chan)
        for service in ("", "testbed.v1.Users"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    report = stub.ServeSlot(allocation(draw_slot(stub)), timeout=DEADLINE_S)
    assert [user.failure for user in report.users] == [""] * len(report.users)


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_is_refused_naming_the_field_and_the_node_keeps_serving(
    case: str, stub: Stub, users_node: NodeServer
) -> None:
    call, code, named = BAD_CALLS[case]
    slot = draw_slot(stub)
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as caught:
        call(stub, slot)
    assert time.perf_counter() - start < DEADLINE_S
    assert caught.value.code() == code, caught.value.details()
    assert named in caught.value.details()
    check_still_serving(stub, users_node.address)


def test_a_message_over_the_size_limit_is_refused(stub: Stub, users_node: NodeServer) -> None:
    slot = draw_slot(stub)
    message = allocation(slot)
    message.users[0].model = "x" * (MAX_MESSAGE_BYTES + 1)
    # a client with a larger limit than ours, so that the node's own limit is what refuses
    options = [("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(users_node.address, options=options) as chan:
        with pytest.raises(grpc.RpcError) as caught:
            users_pb2_grpc.UsersStub(chan).ServeSlot(message, timeout=DEADLINE_S)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    check_still_serving(stub, users_node.address)


def test_health_and_reflection(users_node: NodeServer) -> None:
    with channel(users_node.address) as chan:
        database = ProtoReflectionDescriptorDatabase(chan)
        services = set(database.get_services())
        assert {"testbed.v1.Users", "grpc.health.v1.Health"} <= services
        users = DescriptorPool(database).FindServiceByName("testbed.v1.Users")
        assert [m.name for m in users.methods] == [
            "BeginEpisode",
            "BeginFrame",
            "NextSlot",
            "ServeSlot",
            "Describe",
        ]
        health = health_pb2_grpc.HealthStub(chan)
        reply = health.Check(health_pb2.HealthCheckRequest(service="testbed.v1.Users"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_node_imports_without_torch() -> None:
    code = "import sys, ue_emulator.server; print('torch' in sys.modules, 'piq' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]

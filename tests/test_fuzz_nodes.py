"""Hostile input to every RPC of the three live nodes, by property-based fuzzing.

The users', edge and cloud nodes run once, in this process, on loopback: the live CPU
scenario cut to U = 3 users and 1 frame x 2 slots, one torch thread. Every RPC
(Users.BeginEpisode, BeginFrame, NextSlot, ServeSlot; Edge.ApplyCache, Generate;
Cloud.Generate, FetchWeights) is sent

* random bytes as its serialized request, the protobuf layer bypassed;
* well-typed but hostile messages that hypothesis draws field by field from the messages'
  descriptors (so a field added to a .proto is fuzzed too): NaN, +-inf, 1e308, -0.0 and
  denormal floats; zero and largest integers; empty, 10k-character, unicode, NUL and
  path-like model names; missing fields and repeated fields of the wrong length; sizes over
  ``MAX_TRANSFER_BYTES`` and data beyond the announced size;
* messages near and over ``MAX_MESSAGE_BYTES``;
* upload streams that end half-way, raise half-way or are cancelled, and replies the client
  walks away from.

Every call has a deadline of :data:`CALL_DEADLINE_S` and must end before it with a status in
:data:`ALLOWED`: never DEADLINE_EXCEEDED (a node that ran out the clock), UNAVAILABLE (a node
that died) or UNKNOWN (a handler that raised). Two statuses of gRPC's own are accepted with
their exact details and counted apart (with a star): INTERNAL for bytes that do not
deserialize, and the client's UNKNOWN when its request iterator raised (gRPC cancels the
call; the node sees a cancellation). After each test every node says SERVING,
serves a known-good request and runs no handler any more (none outlives its call). A node
refusing a 200 MB announcement allocates no more than a few chunks (traced). The last test
checks that every RPC was fuzzed with several outcomes and that this process's memory (the
three nodes') stayed bounded, resident and held, and prints the cases and statuses per RPC
(``pytest -s``).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import math
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from nodes import (
    FAST_BPS,
    PAYLOAD_BYTES,
    assert_serving,
    good_upload,
    live_config,
    read_reply,
    reply_image,
    request_arrays,
    request_header,
    upload_chunks,
    user_allocations,
)

from cloud_node import server as cloud_server
from edge_node import server as edge_server
from edge_node.zoo import MODELS_DIR, ZOO_DIR
from testbed.core.config import build_catalogue
from testbed.core.seeding import episode_seed
from testbed.proto import (
    cloud_pb2,
    cloud_pb2_grpc,
    common_pb2,
    edge_pb2,
    edge_pb2_grpc,
    streams,
    users_pb2,
    users_pb2_grpc,
)
from testbed.proto.common_pb2 import RequestHeader, UploadChunk
from testbed.proto.runtime import (
    MAX_MESSAGE_BYTES,
    MAX_TRANSFER_BYTES,
    NodeServer,
    channel,
    encode_array,
)
from ue_emulator import server as users_server

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


SMALL = {"network.num_users": 3, "timing.num_frames": 1, "timing.slots_per_frame": 2}
CALL_DEADLINE_S = 10.0
"""Deadline of every fuzzed call: far above any valid request here (a 32x32 RePaint of a few
steps, a 4 MB weight stream on loopback), so a call that reaches it is a node that hung."""
HANDLER_GRACE_S = 5.0
"""How long after its call a node's handler may still run (a pacer finishing its chunk)."""
MAX_EXAMPLES = 50
"""Hypothesis examples per fuzz test (and per RPC where a test is parametrized by RPC)."""
MIN_CASES_PER_RPC = 100
"""Fuzz cases every RPC must have had over the module (each gets 119 or more here)."""
RSS_GROWTH_BOUND_BYTES = 300 * 1024 * 1024
"""Bound of the resident memory grown over the module, every model already loaded before
it starts (`load_every_model`). What grows is glibc keeping the buffers of freed 8 MB
messages in its per-thread arenas (its mmap threshold rises after the first one is freed):
170-230 MB here, 50 MB when run with ``MALLOC_MMAP_THRESHOLD_=1048576``. A node that buffered
what hostile headers announce would add up to 256 MB per call, over hundreds of calls."""
HEAP_GROWTH_BOUND_BYTES = 64 * 1024 * 1024
"""Bound of the memory held (malloc'd and not freed) grown over the module: 10-20 MB here
(hypothesis's own records, gRPC's channel state); one buffer a node kept of a 200 MB
announcement would exceed it."""
TRACED_PEAK_BOUND_BYTES = 16 * 1024 * 1024
"""Bound of the Python allocations at their peak while a node refuses a 200 MB announcement:
a few 32 KB chunks, one image and mask, far from the 200 MB it must not buffer."""

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    # no shrinking: a failing case may take a call's whole deadline, so the failure is
    # reported as drawn (derandomized: the same on every run)
    phases=[Phase.explicit, Phase.generate],
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the per-test node check is meant per test
    ],
)

OK = grpc.StatusCode.OK
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
ALLOWED = REFUSALS | {OK}
"""What a node may answer hostile but deserializable input with."""
UNDESERIALIZABLE = "Exception deserializing request!"
"""gRPC's own INTERNAL details for request bytes that are no message of the method's type."""
CLIENT_GAVE_UP = "Exception iterating requests!"
"""gRPC's client-side details when the request iterator raised: the client cancelled."""


@dataclass(frozen=True)
class Rpc:
    """One method of a node: which node serves it, its path and its streaming kind."""

    node: str
    path: str
    kind: str
    """"unary", "unary_stream" or "stream_stream"."""


RPCS = {
    "Users.BeginEpisode": Rpc("users", "/testbed.v1.Users/BeginEpisode", "unary"),
    "Users.BeginFrame": Rpc("users", "/testbed.v1.Users/BeginFrame", "unary"),
    "Users.NextSlot": Rpc("users", "/testbed.v1.Users/NextSlot", "unary"),
    "Users.ServeSlot": Rpc("users", "/testbed.v1.Users/ServeSlot", "unary"),
    "Edge.ApplyCache": Rpc("edge", "/testbed.v1.Edge/ApplyCache", "unary"),
    "Edge.Generate": Rpc("edge", "/testbed.v1.Edge/Generate", "stream_stream"),
    "Cloud.Generate": Rpc("cloud", "/testbed.v1.Cloud/Generate", "stream_stream"),
    "Cloud.FetchWeights": Rpc("cloud", "/testbed.v1.Cloud/FetchWeights", "unary_stream"),
}
SERVICES = {"users": "testbed.v1.Users", "edge": "testbed.v1.Edge", "cloud": "testbed.v1.Cloud"}

STATUSES: defaultdict[str, Counter[str]] = defaultdict(Counter)
"""Per RPC, how many fuzz cases ended with each status (filled as the tests run)."""
USER_FAILURES: Counter[str] = Counter()
"""Per status, the users of fuzzed ServeSlot calls that recorded it as their failure."""

CONFIG = live_config().replace(**SMALL)
CATALOGUE = build_catalogue(CONFIG.catalogue)
ZOO_MODEL = "grass"
"""The model of the known-good weight stream."""

# Hostile values, by protobuf field type ------------------------------------------------------

HOSTILE_FLOATS = (
    math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    5e-324,  # the smallest denormal
    2.2250738585072014e-308,  # the smallest normal
    1e-300,
    1.0,
    1e12,
    1e308,
    sys.float_info.max,
    -1.0,
    -1e308,
)
UINT32_EDGES = (0, 1, 2, 3, 6, 7, 255, 2**31 - 1, 2**31, 2**32 - 1)
UINT64_EDGES = (
    0,
    1,
    PAYLOAD_BYTES - 1,
    PAYLOAD_BYTES,
    MAX_TRANSFER_BYTES,
    MAX_TRANSFER_BYTES + 1,
    2**32,
    2**63,
    2**64 - 1,
)
OUTSIDE_NAMES = (
    "",
    " ",
    ".",
    "..",
    "~",
    "~/brick",
    "../../etc/passwd",
    "brick/../text",
    "./brick",
    "brick/",
    "brick/unet",
    "brick\\..\\text",
    "/abs",
    "/etc/passwd",
    str(MODELS_DIR / "brick"),
    "brick\x00",
    "\x00",
    "BRICK",
    " brick",
    "brick ",
    "bríck",
    "模型",
    "\U0001f4a5",
    "x" * 10_000,
)
"""Model names that are no catalogue model: empty, paths, case and unicode variants, NUL."""

floats = st.sampled_from(HOSTILE_FLOATS) | st.floats()
uint32s = st.sampled_from(UINT32_EDGES) | st.integers(0, 2**32 - 1)
uint64s = st.sampled_from(UINT64_EDGES) | st.integers(0, 2**64 - 1)
names = st.sampled_from(OUTSIDE_NAMES + CATALOGUE.names) | st.text(max_size=40)

SCALARS: dict[int, st.SearchStrategy[object]] = {
    FieldDescriptor.TYPE_DOUBLE: floats,
    FieldDescriptor.TYPE_FLOAT: st.sampled_from((math.nan, math.inf, -1.0, 0.0, 1.0)),
    FieldDescriptor.TYPE_UINT32: uint32s,
    FieldDescriptor.TYPE_UINT64: uint64s,
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: names,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=256),
}


def field_values(field: FieldDescriptor, depth: int = 0) -> st.SearchStrategy[object]:
    """Hostile values of one field: its type's extremes; lists of them (empty and of the wrong
    length included) for a repeated field; a hostile message or none for a message field."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        element: st.SearchStrategy[object] = hostile_messages(field.message_type, depth + 1)
    else:
        element = SCALARS[field.type]
    if field.is_repeated:
        return st.lists(element, max_size=8)
    return st.none() | element if field.type == FieldDescriptor.TYPE_MESSAGE else element


def hostile_fields(
    descriptor: Descriptor, depth: int = 0, most: int = 3
) -> st.SearchStrategy[dict[str, object]]:
    """Up to ``most`` of a message's fields with hostile values (the others left at their
    base): few at a time, so that a hostile value gets past the checks of the valid others."""
    if depth > 2:
        return st.just({})
    fields = {field.name: field for field in descriptor.fields}
    return st.lists(st.sampled_from(sorted(fields)), max_size=most, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: field_values(fields[name], depth) for name in chosen}
        )
    )


def hostile_messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with hostile values in any subset of their fields."""
    cls = message_factory.GetMessageClass(descriptor)
    return hostile_fields(descriptor, depth).map(lambda fields: overridden(cls(), fields))


def overridden(message: Message, fields: dict[str, object]) -> Message:
    """``message`` with ``fields`` set (a repeated field replaced, a None message cleared)."""
    for name, value in fields.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            repeated = getattr(message, name)
            del repeated[:]
            repeated.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            message.ClearField(name)
            if value is not None:
                getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# The nodes ------------------------------------------------------------------------------------


@dataclass
class Nodes:
    """The three running nodes, a channel to each and where the edge keeps its cache."""

    servers: dict[str, NodeServer]
    channels: dict[str, grpc.Channel]
    cache_dir: Path
    rss_start_bytes: int = 0
    heap_start_bytes: int | None = None

    @property
    def users(self) -> users_pb2_grpc.UsersStub:
        return users_pb2_grpc.UsersStub(self.channels["users"])

    @property
    def edge(self) -> edge_pb2_grpc.EdgeStub:
        return edge_pb2_grpc.EdgeStub(self.channels["edge"])

    @property
    def cloud(self) -> cloud_pb2_grpc.CloudStub:
        return cloud_pb2_grpc.CloudStub(self.channels["cloud"])


def resident_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_in_use_bytes() -> int | None:
    """Bytes malloc has handed out and not had back, in every arena (glibc's ``mallinfo2``:
    ``uordblks`` + ``hblkhd``): what the nodes and this client hold, without what the
    allocator keeps of the buffers they freed. None where libc has no ``mallinfo2``."""
    mallinfo2 = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    threads = torch.get_num_threads()
    cache_dir = tmp_path_factory.mktemp("fuzz_edge_cache")
    cloud = cloud_server.serve(CONFIG, device="cpu", threads=1)
    edge = edge_server.serve(
        CONFIG, cloud=cloud.address, device="cpu", threads=1, cache_dir=cache_dir
    )
    users = users_server.serve(CONFIG, edge=edge.address, cloud=cloud.address)
    servers = {"users": users, "edge": edge, "cloud": cloud}
    channels = {name: channel(server.address) for name, server in servers.items()}
    try:
        started = Nodes(servers, channels, cache_dir)
        load_every_model(started)
        started.rss_start_bytes = resident_bytes()
        started.heap_start_bytes = heap_in_use_bytes()
        yield started
    finally:
        for chan in channels.values():
            chan.close()
        for server in (users, edge, cloud):
            server.stop(0.5)
        torch.set_num_threads(threads)
        # the 20 pipelines the nodes loaded are freed now, not by a collection that would
        # pause a later module's timed transfer
        gc.collect()


def capacity_groups() -> list[list[str]]:
    """The catalogue in consecutive groups whose sizes c_m fit the cache capacity C."""
    groups: list[list[str]] = [[]]
    for name, size_gb in zip(CATALOGUE.names, CATALOGUE.size_gb, strict=True):
        used_gb = sum(CATALOGUE.size_gb[CATALOGUE.names.index(held)] for held in groups[-1])
        if used_gb + size_gb > CONFIG.catalogue.cache_capacity_gb:
            groups.append([])
        groups[-1].append(name)
    return groups


def load_every_model(nodes: Nodes) -> None:
    """Load every catalogue model once, in the cloud (a request each) and in the edge (fills,
    a group at a time): the memory measured after this is what the fuzz adds, not models."""
    for name in CATALOGUE.names:
        header = request_header(name, 0)
        read_reply(nodes.cloud.Generate(iter(good_upload(header)), timeout=60))
    for group in capacity_groups():
        request = edge_pb2.CacheRequest(
            models=group, backhaul_down_rate_bps=FAST_BPS, time_scale=1.0
        )
        assert list(nodes.edge.ApplyCache(request, timeout=60).cached) == group


NODE_CODE = frozenset(
    str(Path(module.__file__).resolve())
    for module in (users_server, edge_server, cloud_server, streams)
)


def running_handlers() -> list[str]:
    """Threads of this process running node code (a handler, or a users' node upload): once
    every call has ended there must be none left."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    busy = []
    for ident, frame in sys._current_frames().items():
        stack = frame
        while stack is not None:
            if stack.f_code.co_filename in NODE_CODE:
                busy.append(f"{names.get(ident, ident)} in {stack.f_code.co_name}")
                break
            stack = stack.f_back
    return busy


def assert_no_handler_outlives_its_call() -> None:
    deadline_s = time.monotonic() + HANDLER_GRACE_S
    while busy := running_handlers():
        assert time.monotonic() < deadline_s, f"handlers still running: {busy}"
        time.sleep(0.05)


def seed_message(episode: int) -> common_pb2.Seed:
    seed = episode_seed(CONFIG.seed, episode)
    return common_pb2.Seed(
        entropy=[int(e) for e in np.atleast_1d(seed.entropy)], spawn_key=list(seed.spawn_key)
    )


def draw_slot(stub: users_pb2_grpc.UsersStub, episode: int = 0) -> users_pb2.SlotState:
    """BeginEpisode, BeginFrame, NextSlot: the first slot of an episode."""
    reply = stub.BeginEpisode(
        users_pb2.EpisodeRequest(episode=episode, world_seed=seed_message(episode)),
        timeout=CALL_DEADLINE_S,
    )
    assert reply.num_users == SMALL["network.num_users"]
    stub.BeginFrame(users_pb2.FrameRequest(), timeout=CALL_DEADLINE_S)
    return stub.NextSlot(users_pb2.SlotRequest(), timeout=CALL_DEADLINE_S)


def base_allocation(slot: users_pb2.SlotState) -> users_pb2.SlotAllocation:
    """A valid allocation of ``slot``: no steps (the edge returns the upload, the cloud runs
    its own), fast links, each user's own d_in and d_op."""
    return users_pb2.SlotAllocation(
        frame=slot.frame,
        slot=slot.slot,
        users=user_allocations(slot, CATALOGUE, steps=0, rate_bps=FAST_BPS),
        backhaul_up_rate_bps=FAST_BPS,
        backhaul_down_rate_bps=FAST_BPS,
        time_scale=1.0,
        request_timeout_s=CALL_DEADLINE_S / 2,
    )


def fetch_files(stub: cloud_pb2_grpc.CloudStub, model: str) -> dict[str, bytes]:
    """A model's weight stream, read whole at a fast rate: path -> bytes, hashes checked."""
    request = cloud_pb2.WeightsRequest(model=model, rate_bps=FAST_BPS, time_scale=1.0)
    files: dict[str, bytearray] = {}
    hashes: dict[str, str] = {}
    current = ""
    for chunk in stub.FetchWeights(request, timeout=CALL_DEADLINE_S):
        if chunk.WhichOneof("part") == "file":
            current = chunk.file.path
            files[current], hashes[current] = bytearray(), chunk.file.sha256
        else:
            files[current] += chunk.data
    for path, data in files.items():
        assert hashlib.sha256(data).hexdigest() == hashes[path], path
    return {path: bytes(data) for path, data in files.items()}


def assert_nodes_serve(nodes: Nodes) -> None:
    """Every node SERVING and answering a known-good request; no handler left running."""
    for name, server in nodes.servers.items():
        assert_serving(server.address, SERVICES[name])
    slot = draw_slot(nodes.users)
    assert len(slot.services) == SMALL["network.num_users"]
    header = request_header("brick", 0)
    result, data, _ = read_reply(nodes.edge.Generate(iter(good_upload(header)), timeout=30))
    reply_image(result, data)
    assert result.served_by in ("edge", "cloud")
    files = fetch_files(nodes.cloud, ZOO_MODEL)
    assert any(path.endswith(".safetensors") for path in files)
    assert files == {path: (MODELS_DIR / ZOO_MODEL / path).read_bytes() for path in files}
    assert_no_handler_outlives_its_call()


@pytest.fixture(autouse=True)
def nodes_still_serve(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test (not each example): the nodes still serve, nothing left running."""
    yield
    if "nodes" in request.fixturenames:
        assert_nodes_serve(request.getfixturevalue("nodes"))


# Calls ---------------------------------------------------------------------------------------


@dataclass
class Streamed:
    """A reply stream as the fuzz keeps it: its headers, and its data only counted (a valid
    hostile request may ask for 256 MB of reply)."""

    headers: list[Message]
    """Every message but the data chunks (a `ResultHeader`, each `FileHeader`)."""
    data_bytes: int


def drained(replies: Iterator[object]) -> Streamed:
    """Read a reply stream to its end, keeping its headers and counting its data bytes."""
    streamed = Streamed([], 0)
    for message in replies:
        if isinstance(message, bytes):  # a raw call's reply
            streamed.data_bytes += len(message)
        elif message.WhichOneof("part") == "data":
            streamed.data_bytes += len(message.data)
        else:
            streamed.headers.append(message)
    return streamed


def finish(
    rpc: str,
    call: Callable[[float], object],
    allowed: frozenset[grpc.StatusCode] = ALLOWED,
    also: dict[grpc.StatusCode, str] | None = None,
) -> tuple[grpc.StatusCode, object]:
    """Run ``call(deadline_s)``, a reply stream read to its end; count the status it ended with
    under ``rpc`` and check it came before the deadline and is ``allowed``, or is one of
    ``also``'s statuses with exactly its details: a status gRPC itself gives, not a node
    (counted with a star).

    Returns the status and the reply (a stream's as `Streamed`; None on error).
    """
    start_s = time.perf_counter()
    reply: object = None
    try:
        result = call(CALL_DEADLINE_S)
        reply = drained(result) if isinstance(result, Iterator) else result
        code, details = OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
    elapsed_s = time.perf_counter() - start_s
    by_grpc = also is not None and code in also
    STATUSES[rpc][code.name + ("*" if by_grpc else "")] += 1
    assert elapsed_s < CALL_DEADLINE_S, f"{rpc}: {code.name} after {elapsed_s:.1f} s"
    if by_grpc:
        assert details == also[code], f"{rpc}: {code.name}: {details}"
    else:
        assert code in allowed, f"{rpc}: {code.name}: {details}"
    return code, reply


def raw_call(chan: grpc.Channel, rpc: str, messages: list[bytes]) -> Callable[[float], object]:
    """``rpc`` called with ``messages`` as its serialized requests (only the first for a unary
    request) and its replies left as bytes: no protobuf on the client side."""
    path, kind = RPCS[rpc].path, RPCS[rpc].kind
    as_is: dict[str, Callable[[bytes], bytes]] = {
        "request_serializer": lambda data: data,
        "response_deserializer": lambda data: data,
    }
    if kind == "unary":
        unary = chan.unary_unary(path, **as_is)
        return lambda timeout: unary(messages[0], timeout=timeout)
    if kind == "unary_stream":
        unary_stream = chan.unary_stream(path, **as_is)
        return lambda timeout: unary_stream(messages[0], timeout=timeout)
    stream_stream = chan.stream_stream(path, **as_is)
    return lambda timeout: stream_stream(iter(messages), timeout=timeout)


def generate_stub(nodes: Nodes, rpc: str) -> edge_pb2_grpc.EdgeStub | cloud_pb2_grpc.CloudStub:
    return nodes.edge if rpc == "Edge.Generate" else nodes.cloud


def check_users_failures(report: users_pb2.SlotReport) -> None:
    """A served slot's users: served, or failed with a status a node may give (a user's own
    deadline included: hostile timeouts are the caller's to set), never a crash or a hang of
    a node (UNKNOWN, INTERNAL, UNAVAILABLE) nor a reply that broke the protocol."""
    for user in report.users:
        status = user.failure.partition(":")[0] or "served"
        USER_FAILURES[status] += 1
        assert status in {
            "served",
            users_server.NO_BANDWIDTH,
            grpc.StatusCode.DEADLINE_EXCEEDED.name,
            *(code.name for code in REFUSALS),
        }, user.failure


# Random bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", list(RPCS))
@FUZZ
@given(messages=st.lists(st.binary(max_size=2048), min_size=1, max_size=4))
def test_random_bytes_are_answered_with_a_status(
    nodes: Nodes, rpc: str, messages: list[bytes]
) -> None:
    call = raw_call(nodes.channels[RPCS[rpc].node], rpc, messages)
    finish(rpc, call, also={grpc.StatusCode.INTERNAL: UNDESERIALIZABLE})


# Hostile messages, RPC by RPC ---------------------------------------------------------------


@FUZZ
@given(request=hostile_messages(users_pb2.EpisodeRequest.DESCRIPTOR))
def test_hostile_episode_requests(nodes: Nodes, request: users_pb2.EpisodeRequest) -> None:
    finish("Users.BeginEpisode", lambda timeout: nodes.users.BeginEpisode(request, timeout=timeout))


def longest_seed(words: str) -> common_pb2.Seed:
    """A world seed with as many entropy or spawn-key words as a message holds (7.6 MB)."""
    if words == "entropy":
        return common_pb2.Seed(entropy=[2**64 - 1] * 800_000)
    return common_pb2.Seed(entropy=[1], spawn_key=[2**32 - 1] * 1_600_000)


@pytest.mark.parametrize("words", ["entropy", "spawn_key"])
def test_seeds_as_long_as_a_message_allows_are_refused_at_once(nodes: Nodes, words: str) -> None:
    """Hashing such a seed would hold the users' world for seconds (6 s for the entropy on
    this machine): it is refused before, naming world_seed."""
    request = users_pb2.EpisodeRequest(world_seed=longest_seed(words))
    assert request.ByteSize() < MAX_MESSAGE_BYTES
    start_s = time.perf_counter()
    code, _ = finish(
        "Users.BeginEpisode", lambda timeout: nodes.users.BeginEpisode(request, timeout=timeout)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert time.perf_counter() - start_s < 2.0


USERS_CALLS = ("BeginEpisode", "BeginFrame", "NextSlot", "ServeSlot")


@FUZZ
@given(calls=st.lists(st.sampled_from(USERS_CALLS), min_size=1, max_size=8), episode=uint32s)
def test_users_calls_in_any_order(nodes: Nodes, calls: list[str], episode: int) -> None:
    """Frames and slots asked for out of order, slots served twice or never drawn: refused
    with FAILED_PRECONDITION, never a crash. ServeSlot here gives every user no bandwidth
    (nothing is sent), so only the order is under test."""
    stub = nodes.users
    slot: users_pb2.SlotState | None = None
    for name in calls:
        if name == "BeginEpisode":
            request = users_pb2.EpisodeRequest(episode=episode, world_seed=seed_message(episode))
            finish("Users.BeginEpisode", lambda t, r=request: stub.BeginEpisode(r, timeout=t))
        elif name == "BeginFrame":
            finish(
                "Users.BeginFrame", lambda t: stub.BeginFrame(users_pb2.FrameRequest(), timeout=t)
            )
        elif name == "NextSlot":
            code, reply = finish(
                "Users.NextSlot", lambda t: stub.NextSlot(users_pb2.SlotRequest(), timeout=t)
            )
            slot = reply if code == OK else slot
        else:
            allocation = base_allocation(slot) if slot is not None else users_pb2.SlotAllocation()
            for user in allocation.users:
                user.uplink_rate_bps = 0.0
            code, reply = finish(
                "Users.ServeSlot", lambda t, a=allocation: stub.ServeSlot(a, timeout=t)
            )
            if code == OK:
                assert [user.failure for user in reply.users] == [users_server.NO_BANDWIDTH] * 3


# The explicit examples below hold rates valid on their own (finite, > 0) at which no
# transfer can finish: 1 bit/s (a 50 kB image takes 4.6 days) and the smallest denormal (its
# product with a time_scale below 1 underflows to 0).


@FUZZ
@given(
    fields=hostile_fields(users_pb2.SlotAllocation.DESCRIPTOR, most=2),
    users=st.dictionaries(
        st.integers(0, 2), hostile_fields(users_pb2.UserAllocation.DESCRIPTOR, most=2), max_size=1
    ),
)
@example(fields={}, users={0: {"uplink_rate_bps": 1.0}})
@example(fields={}, users={1: {"downlink_rate_bps": 1.0}})
@example(fields={"time_scale": 0.5}, users={2: {"uplink_rate_bps": 5e-324}})
@example(fields={"request_timeout_s": 1e308}, users={0: {"downlink_rate_bps": 5e-324}})
@example(fields={"request_timeout_s": 5e-324}, users={})
@example(fields={"relay_to_cloud": True, "backhaul_up_rate_bps": 1.0}, users={})
@example(fields={"relay_to_cloud": True}, users={2: {"uplink_rate_bps": 1.0}})
@example(fields={"users": [users_pb2.UserAllocation()] * 1000}, users={})
def test_hostile_slot_allocations(
    nodes: Nodes, fields: dict[str, object], users: dict[int, dict[str, object]]
) -> None:
    """A fresh slot, then its valid allocation with hostile values in a few of its fields or
    a user's (users replaced by a list of the wrong length included)."""
    allocation = base_allocation(draw_slot(nodes.users))
    for user, user_fields in users.items():
        overridden(allocation.users[user], user_fields)
    overridden(allocation, fields)
    code, reply = finish(
        "Users.ServeSlot", lambda timeout: nodes.users.ServeSlot(allocation, timeout=timeout)
    )
    if code == OK:
        check_users_failures(reply)


@FUZZ
@given(fields=hostile_fields(edge_pb2.CacheRequest.DESCRIPTOR))
@example(fields={"models": ["text"], "backhaul_down_rate_bps": 1.0})
@example(fields={"models": ["coins"], "backhaul_down_rate_bps": 5e-324, "time_scale": 0.5})
@example(fields={"models": ["coffee"], "backhaul_down_rate_bps": 1e308, "time_scale": 1e308})
@example(fields={"models": ["brick", "brick"]})
@example(fields={"models": list(CATALOGUE.names)})
def test_hostile_cache_decisions(nodes: Nodes, fields: dict[str, object]) -> None:
    request = edge_pb2.CacheRequest(
        models=["brick"], backhaul_down_rate_bps=FAST_BPS, time_scale=1.0
    )
    overridden(request, fields)
    finish("Edge.ApplyCache", lambda timeout: nodes.edge.ApplyCache(request, timeout=timeout))
    # only catalogue models ever land in the cache folder
    assert {path.name for path in nodes.cache_dir.iterdir()} <= set(CATALOGUE.names)


SENT_CAP_BYTES = 256 * 1024
"""Most data an upload of these tests sends: an announcement beyond it is a stream that
stops half-way."""
BODIES = (
    "whole",
    "half",
    "one byte more",
    "header only",
    "header twice",
    "data first",
    "NaN image",
    "mask not 0 or 1",
    "a chunk near the message limit",
)


def upload_with(header: RequestHeader, body: str | bytes) -> list[UploadChunk]:
    """The messages of an upload of ``header``: a named body (a valid image and mask with
    filler up to what the header announces, at most `SENT_CAP_BYTES`, or a broken variant),
    or the header and ``body`` as its only data."""
    image, mask = request_arrays()
    if body == "NaN image":
        image[3, 4, 1] = np.nan
    if body == "mask not 0 or 1":
        mask[0, 0] = 0.5
    payload = encode_array(image) + encode_array(mask)
    announced = min(header.input_bytes, SENT_CAP_BYTES)
    whole = upload_chunks(header, payload, announced)
    if isinstance(body, bytes):
        return [UploadChunk(header=header), UploadChunk(data=body)]
    if body == "half":
        return upload_chunks(header, payload, announced // 2)
    if body == "one byte more":
        return upload_chunks(header, payload, announced + 1)
    if body == "header only":
        return whole[:1]
    if body == "header twice":
        return [*whole, UploadChunk(header=header)]
    if body == "data first":
        return [*whole[1:], whole[0]]
    if body == "a chunk near the message limit":
        return [UploadChunk(header=header), UploadChunk(data=bytes(MAX_MESSAGE_BYTES - 64))]
    return whole


@pytest.mark.parametrize("rpc", ["Edge.Generate", "Cloud.Generate"])
@FUZZ
@given(
    fields=hostile_fields(RequestHeader.DESCRIPTOR),
    body=st.just("whole") | st.sampled_from(BODIES) | st.binary(max_size=4096),
)
@example(fields={"downlink_rate_bps": 1.0}, body="whole")
@example(fields={"backhaul_down_rate_bps": 1.0}, body="whole")
@example(fields={"model": "text", "backhaul_up_rate_bps": 1.0}, body="whole")
@example(fields={"backhaul_down_rate_bps": 5e-324, "time_scale": 0.5}, body="whole")
@example(fields={"downlink_rate_bps": 5e-324, "time_scale": 0.5}, body="whole")
@example(fields={"steps": 2**32 - 1}, body="whole")
@example(fields={"input_bytes": 200 * 1024 * 1024}, body="whole")
@example(fields={"output_bytes": 2**64 - 1}, body="whole")
@example(fields={}, body="a chunk near the message limit")
def test_hostile_uploads(
    nodes: Nodes, rpc: str, fields: dict[str, object], body: str | bytes
) -> None:
    header = overridden(request_header("brick", 0), fields)
    messages = upload_with(header, body)
    stub = generate_stub(nodes, rpc)
    code, reply = finish(rpc, lambda timeout: stub.Generate(iter(messages), timeout=timeout))
    if code == OK:
        (first,) = reply.headers
        assert first.header.output_bytes == reply.data_bytes == header.output_bytes


@FUZZ
@given(fields=hostile_fields(cloud_pb2.WeightsRequest.DESCRIPTOR))
@example(fields={"rate_bps": 1.0})
@example(fields={"rate_bps": 5e-324, "time_scale": 0.5})
@example(fields={"rate_bps": 1e308, "time_scale": 1e308})
@example(fields={"model": "x" * (MAX_MESSAGE_BYTES - 1024)})
def test_hostile_weight_requests(nodes: Nodes, fields: dict[str, object]) -> None:
    request = cloud_pb2.WeightsRequest(model=ZOO_MODEL, rate_bps=FAST_BPS, time_scale=1.0)
    overridden(request, fields)
    code, reply = finish(
        "Cloud.FetchWeights", lambda timeout: nodes.cloud.FetchWeights(request, timeout=timeout)
    )
    if code == OK:
        assert request.model in CATALOGUE.names
        paths = [chunk.file.path for chunk in reply.headers]
        assert all(Path(path).suffix in (".json", ".safetensors") for path in paths)


# Streams that stop half-way ----------------------------------------------------------------


class HalfUpload:
    """A valid upload's header and first ``cut`` data bytes, then: "end" (the stream ends),
    "raise" (the iterator raises: the client's gRPC cancels the call) or "cancel" (the
    stream stays open until the test cancels the call)."""

    def __init__(self, cut: int, ending: str) -> None:
        self.messages = upload_chunks(request_header("brick", 0), b"", cut)
        self.ending = ending
        self.sent = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[UploadChunk]:
        yield from self.messages
        self.sent.set()
        if self.ending == "raise":
            raise ConnectionAbortedError("the client gave up half-way")
        if self.ending == "cancel":
            self.release.wait(CALL_DEADLINE_S)


@pytest.mark.parametrize("rpc", ["Edge.Generate", "Cloud.Generate"])
@settings(FUZZ, max_examples=15)
@given(cut=st.integers(0, 59_999), ending=st.sampled_from(("end", "raise", "cancel")))
def test_uploads_that_stop_half_way(nodes: Nodes, rpc: str, cut: int, ending: str) -> None:
    upload = HalfUpload(cut, ending)
    call = generate_stub(nodes, rpc).Generate(iter(upload), timeout=CALL_DEADLINE_S)
    if ending == "cancel":
        assert upload.sent.wait(CALL_DEADLINE_S)
        call.cancel()
        upload.release.set()
    code, _ = finish(
        rpc,
        lambda timeout: call,
        also={grpc.StatusCode.UNKNOWN: CLIENT_GAVE_UP},
        allowed=ALLOWED | {grpc.StatusCode.CANCELLED},
    )
    expected = {
        "end": grpc.StatusCode.INVALID_ARGUMENT,
        "raise": grpc.StatusCode.UNKNOWN,
        "cancel": grpc.StatusCode.CANCELLED,
    }
    assert code == expected[ending]


@pytest.mark.parametrize("rpc", ["Edge.Generate", "Cloud.Generate", "Cloud.FetchWeights"])
def test_replies_the_client_walks_away_from(nodes: Nodes, rpc: str) -> None:
    """The client cancels after the reply's first message; the node stops sending (checked
    after the test: no handler left running)."""
    if rpc == "Cloud.FetchWeights":
        # 4.3 MB at 10 Mbit/s: 3.4 s of stream
        request = cloud_pb2.WeightsRequest(model=ZOO_MODEL, rate_bps=1e7, time_scale=1.0)
        call = nodes.cloud.FetchWeights(request, timeout=CALL_DEADLINE_S)
    else:
        # 4 MB at 10 Mbit/s: 3.4 s of reply
        header = request_header(
            "brick",
            0,
            output_bytes=4_000_000,
            downlink_rate_bps=1e7,
            backhaul_down_rate_bps=1e7,
        )
        call = generate_stub(nodes, rpc).Generate(
            iter(good_upload(header)), timeout=CALL_DEADLINE_S
        )
    next(call)
    call.cancel()
    code, _ = finish(rpc, lambda timeout: call, allowed=ALLOWED | {grpc.StatusCode.CANCELLED})
    assert code == grpc.StatusCode.CANCELLED


# Oversize ------------------------------------------------------------------------------------


def traced_peak_bytes(run: Callable[[], object]) -> int:
    """The peak of Python's traced allocations while ``run`` runs (every thread's: the nodes'
    handlers run in this process)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def endless_data(stop: threading.Event) -> Iterator[UploadChunk]:
    """32 KB data chunks until ``stop`` (or 64 MB): an upload that would not end."""
    for _ in range(2048):
        if stop.is_set():
            return
        yield UploadChunk(data=bytes(32 * 1024))


@pytest.mark.parametrize("rpc", ["Edge.Generate", "Cloud.Generate"])
def test_oversize_announcements_are_refused_without_buffering(nodes: Nodes, rpc: str) -> None:
    stub = generate_stub(nodes, rpc)
    image, mask = request_arrays()
    payload = encode_array(image) + encode_array(mask)

    # 200 MB announced (under the limit), 1 KB sent, then the stream ends
    announced = request_header("brick", 0, input_bytes=200 * 1024 * 1024)
    short = [UploadChunk(header=announced), UploadChunk(data=payload[:1024])]
    outcome: list[grpc.StatusCode] = []
    peak_bytes = traced_peak_bytes(
        lambda: outcome.append(
            finish(rpc, lambda timeout: stub.Generate(iter(short), timeout=timeout))[0]
        )
    )
    assert outcome == [grpc.StatusCode.INVALID_ARGUMENT]
    assert peak_bytes < TRACED_PEAK_BOUND_BYTES, peak_bytes

    # over the limit, then data without end: refused on the header, not after the data
    stop = threading.Event()
    oversize = request_header("brick", 0, input_bytes=MAX_TRANSFER_BYTES + 1)

    def oversize_upload() -> Iterator[UploadChunk]:
        yield UploadChunk(header=oversize)
        yield from endless_data(stop)

    start_s = time.perf_counter()
    outcome.clear()
    peak_bytes = traced_peak_bytes(
        lambda: outcome.append(
            finish(rpc, lambda timeout: stub.Generate(oversize_upload(), timeout=timeout))[0]
        )
    )
    stop.set()
    assert outcome == [grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert time.perf_counter() - start_s < 2.0
    assert peak_bytes < TRACED_PEAK_BOUND_BYTES, peak_bytes

    # a reply over the limit: refused before anything is generated
    too_big = request_header("brick", 0, output_bytes=MAX_TRANSFER_BYTES + 1)
    code, _ = finish(
        rpc, lambda timeout: stub.Generate(iter(good_upload(too_big)), timeout=timeout)
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def varint(value: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def padded(message: Message, total_bytes: int) -> bytes:
    """``message`` serialized, plus an unknown field (number 10000) that brings it to
    ``total_bytes``: still a valid message of its type."""
    head = message.SerializeToString()
    tag = varint((10_000 << 3) | 2)
    filler = total_bytes - len(head) - len(tag) - len(varint(total_bytes))
    data = head + tag + varint(filler) + bytes(filler)
    assert abs(len(data) - total_bytes) <= 2
    return data


def near_limit_requests() -> dict[str, Message]:
    """A request of each RPC to pad: valid where that is cheap, else refused early."""
    return {
        "Users.BeginEpisode": users_pb2.EpisodeRequest(world_seed=seed_message(0)),
        "Users.BeginFrame": users_pb2.FrameRequest(),
        "Users.NextSlot": users_pb2.SlotRequest(),
        "Users.ServeSlot": users_pb2.SlotAllocation(),
        "Edge.ApplyCache": edge_pb2.CacheRequest(
            models=["brick"], backhaul_down_rate_bps=FAST_BPS, time_scale=1.0
        ),
        "Edge.Generate": UploadChunk(header=request_header("brick", 0)),
        "Cloud.Generate": UploadChunk(header=request_header("brick", 0)),
        "Cloud.FetchWeights": cloud_pb2.WeightsRequest(
            model=ZOO_MODEL, rate_bps=FAST_BPS, time_scale=1.0
        ),
    }


@pytest.mark.parametrize("rpc", list(RPCS))
def test_messages_near_and_over_the_size_limit(nodes: Nodes, rpc: str) -> None:
    """A request just under the 8 MB message limit gets the node's answer; one just over it
    is refused by the node itself (RESOURCE_EXHAUSTED), through a client allowed to send it."""
    message = near_limit_requests()[rpc]
    address = nodes.servers[RPCS[rpc].node].address
    options = [("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(address, options=options) as chan:
        near = padded(message, MAX_MESSAGE_BYTES - 1024)
        finish(rpc, raw_call(chan, rpc, [near]))
        over = padded(message, MAX_MESSAGE_BYTES + 1024)
        code, _ = finish(rpc, raw_call(chan, rpc, [over]))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


# Model names are matched against the registry only ------------------------------------------

OPENED: list[str] = []
"""Paths this process opened while :data:`RECORDING_OPENS` is set (an audit hook's record)."""
RECORDING_OPENS = threading.Event()


def _record_open(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and RECORDING_OPENS.is_set() and isinstance(args[0], str | Path):
        OPENED.append(os.path.abspath(args[0]))


@pytest.fixture(scope="module")
def opens_recorded() -> Iterator[list[str]]:
    """Every file opened by this process (the nodes included) while the fixture's user runs.
    An audit hook cannot be removed: it is installed once and records only while asked."""
    sys.addaudithook(_record_open)
    yield OPENED


def outside_model(root: Path) -> Path:
    """A model folder outside the zoo and the cache, with a sentinel in every file a node
    would read: no node may ever open it."""
    folder = root / "outside_model"
    for relative in ("model_index.json", "unet/config.json", "secret.txt"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text('{"sentinel": true}')
    return folder


def test_path_like_model_names_are_not_found_and_nothing_outside_is_read(
    nodes: Nodes, tmp_path: Path, opens_recorded: list[str]
) -> None:
    folder = outside_model(tmp_path)
    traversals = [
        "../../etc/passwd",
        "brick/../text",
        "/abs",
        "~",
        "brick\x00",
        "x" * 10_000,
        str(folder),
        os.path.relpath(folder, MODELS_DIR),
        os.path.relpath(folder, ZOO_DIR),
        os.path.relpath(folder, nodes.cache_dir),
        os.path.relpath(folder),
        os.path.relpath(folder / "secret.txt", MODELS_DIR),
        str(MODELS_DIR / "brick"),
        str(nodes.cache_dir / "brick"),
    ]
    calls: dict[str, Callable[[str], Callable[[float], object]]] = {
        "Edge.ApplyCache": lambda name: (
            lambda timeout: nodes.edge.ApplyCache(
                edge_pb2.CacheRequest(
                    models=[name], backhaul_down_rate_bps=FAST_BPS, time_scale=1.0
                ),
                timeout=timeout,
            )
        ),
        "Edge.Generate": lambda name: (
            lambda timeout: nodes.edge.Generate(
                iter(good_upload(request_header(name, 0))), timeout=timeout
            )
        ),
        "Cloud.Generate": lambda name: (
            lambda timeout: nodes.cloud.Generate(
                iter(good_upload(request_header(name, 0))), timeout=timeout
            )
        ),
        "Cloud.FetchWeights": lambda name: (
            lambda timeout: nodes.cloud.FetchWeights(
                cloud_pb2.WeightsRequest(model=name, rate_bps=FAST_BPS, time_scale=1.0),
                timeout=timeout,
            )
        ),
    }
    before = {path.name for path in nodes.cache_dir.iterdir()}
    opens_recorded.clear()
    RECORDING_OPENS.set()
    try:
        for rpc, call in calls.items():
            for name in traversals:
                code, reply = finish(rpc, call(name))
                assert (code, reply) == (grpc.StatusCode.NOT_FOUND, None), (rpc, name)
    finally:
        RECORDING_OPENS.clear()
    outside = [path for path in opens_recorded if Path(path).is_relative_to(folder)]
    assert outside == [], outside
    assert not [path for path in opens_recorded if "passwd" in path]
    assert {path.name for path in nodes.cache_dir.iterdir()} == before


# Coverage and memory -------------------------------------------------------------------------


def test_every_rpc_was_fuzzed_and_memory_stayed_bounded(
    nodes: Nodes, request: pytest.FixtureRequest
) -> None:
    """Runs last: each RPC got its cases and more than one outcome, and the process (the three
    nodes and this client) grew by less than the bounds over the module. Prints the cases and
    statuses per RPC (``pytest -s``)."""
    module = sys.modules[__name__]
    ran = {item.originalname for item in request.session.items if item.module is module}
    defined = {name for name in vars(module) if name.startswith("test_")}
    if ran != defined:
        pytest.skip(f"the whole module must run; not selected: {sorted(defined - ran)}")
    rss_growth_bytes = resident_bytes() - nodes.rss_start_bytes
    heap_now_bytes = heap_in_use_bytes()
    width = max(map(len, RPCS))
    lines = [f"{'RPC':<{width}}  cases  statuses"]
    for rpc in RPCS:
        seen = STATUSES[rpc]
        counts = ", ".join(f"{name} {count}" for name, count in seen.most_common())
        lines.append(f"{rpc:<{width}}  {sum(seen.values()):>5}  {counts}")
    total = sum(sum(seen.values()) for seen in STATUSES.values())
    lines += [
        f"{'all':<{width}}  {total:>5}",
        "* gRPC's own status, not a node's: INTERNAL* for request bytes that do not "
        "deserialize, UNKNOWN* for a client whose request iterator raised (gRPC cancels)",
        "users of the fuzzed ServeSlot calls served or failed: "
        + ", ".join(f"{name} {count}" for name, count in USER_FAILURES.most_common()),
        f"resident memory growth over the module: {rss_growth_bytes / 2**20:.1f} MB",
    ]
    heap_growth_bytes = 0
    if heap_now_bytes is not None and nodes.heap_start_bytes is not None:
        heap_growth_bytes = heap_now_bytes - nodes.heap_start_bytes
        lines.append(f"memory held (malloc'd) growth: {heap_growth_bytes / 2**20:.1f} MB")
    print("\n" + "\n".join(lines))
    for rpc in RPCS:
        assert sum(STATUSES[rpc].values()) >= MIN_CASES_PER_RPC, rpc
        assert len(STATUSES[rpc]) >= 2, (rpc, STATUSES[rpc])
    assert rss_growth_bytes < RSS_GROWTH_BOUND_BYTES, rss_growth_bytes
    assert heap_growth_bytes < HEAP_GROWTH_BOUND_BYTES, heap_growth_bytes

"""A test helper for the node servers: the live scenario, raw upload streams, raw replies,
refusal checks, health and reflection.

Uploads and replies are built and read here message by message (not through
`testbed.proto.streams`), so the tests see the bytes on the wire as a foreign client would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from testbed.core.config import ScenarioConfig, load_config
from testbed.proto.common_pb2 import DownloadChunk, RequestHeader, ResultHeader, UploadChunk
from testbed.proto.runtime import (
    CHUNK_BYTES,
    MAX_TRANSFER_BYTES,
    channel,
    decode_array,
    encode_array,
)

LIVE_SCENARIO = Path(__file__).resolve().parents[1] / "testbed" / "scenarios" / "live_cpu.toml"
SHAPE = (32, 32, 3)
"""Height, width, channels of the zoo's images."""
PAYLOAD_BYTES = 4 * 32 * 32 * 3 + 4 * 32 * 32
"""Bytes of a zoo request's image and mask."""
FAST_BPS = 1e12
"""A link rate at which pacing costs nothing measurable."""


def live_config() -> ScenarioConfig:
    return load_config(LIVE_SCENARIO)


def request_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A corrupted 32x32 RGB upload in [0, 1] (a box hole at mid-grey) and its mask."""
    rng = np.random.default_rng(seed)
    mask = np.ones(SHAPE[:2], dtype=np.float32)
    mask[8:20, 10:24] = 0.0
    image = rng.random(SHAPE, dtype=np.float32) * mask[:, :, None] + 0.5 * (1 - mask[:, :, None])
    return image.astype(np.float32), mask


def request_header(model: str = "brick", steps: int = 1, **fields: object) -> RequestHeader:
    """A valid header (fast links unless overridden); ``fields`` override any field."""
    values: dict[str, object] = {
        "request_id": "r0",
        "model": model,
        "steps": steps,
        "height_px": SHAPE[0],
        "width_px": SHAPE[1],
        "channels": SHAPE[2],
        "noise_seed": 7,
        "input_bytes": 60_000,
        "output_bytes": 50_000,
        "downlink_rate_bps": FAST_BPS,
        "backhaul_up_rate_bps": FAST_BPS,
        "backhaul_down_rate_bps": FAST_BPS,
        "time_scale": 1.0,
    }
    values.update(fields)
    return RequestHeader(**values)


def upload_chunks(header: RequestHeader, payload: bytes, total_bytes: int) -> list[UploadChunk]:
    """Header, then ``payload`` and zero filler up to ``total_bytes`` (which may differ from
    the header's input_bytes, to test the checks), in unpaced chunks."""
    data = payload + bytes(max(0, total_bytes - len(payload)))
    data = data[:total_bytes]
    parts = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    return [UploadChunk(header=header), *(UploadChunk(data=part) for part in parts)]


def good_upload(header: RequestHeader, seed: int = 0) -> list[UploadChunk]:
    image, mask = request_arrays(seed)
    return upload_chunks(header, encode_array(image) + encode_array(mask), header.input_bytes)


def bad_uploads(model: str) -> dict[str, tuple[list[UploadChunk], grpc.StatusCode, str]]:
    """Malformed uploads for ``model``: (messages, the status expected, the field it names)."""
    image, mask = request_arrays()
    payload = encode_array(image) + encode_array(mask)
    good = request_header(model)
    nan_image = image.copy()
    nan_image[3, 4, 1] = np.nan
    half_mask = mask.copy()
    half_mask[0, 0] = 0.5
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED

    def header_with(**fields: object) -> list[UploadChunk]:
        return upload_chunks(request_header(**{"model": model, **fields}), payload, 60_000)

    return {
        "no message at all": ([], invalid, "header"),
        "data before the header": (upload_chunks(good, payload, 60_000)[1:], invalid, "header"),
        "a second header": (
            [*upload_chunks(good, payload, 60_000), upload_chunks(good, b"", 0)[0]],
            invalid,
            "header",
        ),
        "unknown model": (header_with(model="nope"), not_found, "model"),
        "path-traversal model": (header_with(model="../../etc/passwd"), not_found, "model"),
        "wrong height": (header_with(height_px=16), invalid, "height_px"),
        "zero channels": (header_with(channels=0), invalid, "channels"),
        "input_bytes over the limit": (
            header_with(input_bytes=MAX_TRANSFER_BYTES + 1),
            exhausted,
            "input_bytes",
        ),
        "input_bytes below the image and mask": (
            header_with(input_bytes=PAYLOAD_BYTES - 4),
            invalid,
            "input_bytes",
        ),
        "output_bytes over the limit": (
            header_with(output_bytes=MAX_TRANSFER_BYTES + 1),
            exhausted,
            "output_bytes",
        ),
        "output_bytes below the image": (header_with(output_bytes=100), invalid, "output_bytes"),
        "NaN backhaul rate": (
            header_with(backhaul_down_rate_bps=math.nan),
            invalid,
            "backhaul_down_rate_bps",
        ),
        "negative downlink rate": (
            header_with(downlink_rate_bps=-1.0),
            invalid,
            "downlink_rate_bps",
        ),
        "zero time_scale": (header_with(time_scale=0.0), invalid, "time_scale"),
        "NaN in the image": (
            upload_chunks(good, encode_array(nan_image) + encode_array(mask), 60_000),
            invalid,
            "image",
        ),
        "image outside [0, 1]": (
            upload_chunks(good, encode_array(image * 3) + encode_array(mask), 60_000),
            invalid,
            "image",
        ),
        "mask values not 0 or 1": (
            upload_chunks(good, encode_array(image) + encode_array(half_mask), 60_000),
            invalid,
            "mask",
        ),
        "more bytes than input_bytes": (upload_chunks(good, payload, 60_001), invalid, "data"),
        "a stream that stops half-way": (upload_chunks(good, payload, 30_000), invalid, "data"),
    }


def read_reply(replies: Iterable[DownloadChunk]) -> tuple[ResultHeader, bytes, float]:
    """(result header, every data byte after it, wall seconds from header to stream end);
    asserts the header comes first and only once."""
    messages = iter(replies)
    first = next(messages)
    assert first.WhichOneof("part") == "header"
    start_s = time.perf_counter()
    data = bytearray()
    for message in messages:
        assert message.WhichOneof("part") == "data"
        data += message.data
    return first.header, bytes(data), time.perf_counter() - start_s


def reply_image(header: ResultHeader, data: bytes) -> np.ndarray:
    """The generated image at the start of a reply's data, checked (finite, in [0, 1])."""
    assert len(data) == header.output_bytes
    shape = (header.height_px, header.width_px, header.channels)
    image = decode_array(data[: 4 * int(np.prod(shape))], shape, "image")
    assert not any(data[4 * int(np.prod(shape)) :])  # the filler is zeros
    return image


def expect_refusal(
    call: Callable[[float], object], code: grpc.StatusCode, field: str, deadline_s: float = 10.0
) -> str:
    """Run ``call(timeout)``; assert it fails with ``code`` and a message that starts with
    ``field``, well within the deadline. Returns the message."""
    start_s = time.perf_counter()
    try:
        result = call(deadline_s)
        if hasattr(result, "__iter__"):
            list(result)
    except grpc.RpcError as exc:
        elapsed_s = time.perf_counter() - start_s
        details = exc.details()
        assert exc.code() == code, f"{exc.code()}: {details}"
        assert details.startswith(field), details
        assert elapsed_s < deadline_s / 2
        return details
    raise AssertionError(f"no error; expected {code} naming {field}")


def assert_serving(address: str, service: str) -> None:
    with channel(address) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        for name in ("", service):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def reflected_services(address: str) -> set[str]:
    """The services a node lists through server reflection."""
    with channel(address) as chan:
        return set(ProtoReflectionDescriptorDatabase(chan).get_services())


def start_live_nodes(config) -> dict:
    """The cloud, the edge and the users' node of ``config`` on loopback, in this process,
    one torch thread each, the users relaying to the cloud when the edge is down."""
    from cloud_node.server import serve as serve_cloud
    from edge_node.server import serve as serve_edge
    from ue_emulator.server import serve as serve_users

    cloud = serve_cloud(config, threads=1)
    edge = serve_edge(config, cloud=cloud.address, threads=1)
    users = serve_users(config, edge=edge.address, cloud=cloud.address)
    return {"cloud": cloud, "edge": edge, "users": users}


def live_run(config, nodes: dict, out, policy: str, hooks=(), **options) -> dict:
    """``policy`` played live on ``nodes`` (:func:`start_live_nodes`) into ``out``, the
    scenario saved there first as `testbed run` does; ``options`` are the run's
    ``LiveOptions`` (no progress bar unless asked), ``hooks`` see the loop too."""
    from testbed.core.config import save_config
    from testbed.live.controller import LivePlan, run_live
    from testbed.live.nodes import NodeAddresses
    from testbed.live.options import LiveOptions

    plan = LivePlan.build(LiveOptions(policy=policy, **{"progress": False, **options}), config)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.toml")
    addresses = NodeAddresses(users=nodes["users"].address, edge=nodes["edge"].address)
    return run_live(plan, out, addresses, hooks=hooks)


def user_allocations(slot, catalogue, steps: int, rate_bps: float, **fields) -> list:
    """One ``UserAllocation`` per user of ``slot`` (a wire or a world slot): its model,
    ``steps`` steps, both radio links at ``rate_bps``, its own d_in and d_op."""
    from testbed.proto import users_pb2

    return [
        users_pb2.UserAllocation(
            model=catalogue.names[service],
            steps=steps,
            uplink_rate_bps=rate_bps,
            downlink_rate_bps=rate_bps,
            input_bytes=math.ceil(slot.input_bits[user] / 8),
            output_bytes=math.ceil(catalogue.output_bits[service] / 8),
            **fields,
        )
        for user, service in enumerate(slot.services)
    ]

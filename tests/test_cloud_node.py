"""The cloud node on loopback: full-quality generation (ceil(A3) steps), paced weight streams,
refusals that name the field, health and reflection."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from nodes import (
    assert_serving,
    bad_uploads,
    expect_refusal,
    good_upload,
    live_config,
    read_reply,
    reflected_services,
    reply_image,
    request_arrays,
    request_header,
)

from cloud_node.server import SERVICE_NAME, serve
from edge_node.zoo import MODELS_DIR
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import TestbedError
from testbed.proto import cloud_pb2, cloud_pb2_grpc
from testbed.proto.runtime import NodeServer, channel

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

ZOO_FILES = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
]


@pytest.fixture(scope="module")
def cloud() -> Iterator[NodeServer]:
    # one torch thread: with two on a 2-core machine, any other busy process makes RePaint
    # stall for seconds; the process-wide setting is restored for the tests that follow
    threads = torch.get_num_threads()
    node = serve(live_config(), device="cpu", threads=1)
    yield node
    node.stop()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stub(cloud: NodeServer) -> Iterator[cloud_pb2_grpc.CloudStub]:
    with channel(cloud.address) as chan:
        yield cloud_pb2_grpc.CloudStub(chan)


def test_the_cloud_runs_ceil_a3_steps_whatever_the_header_asks(stub) -> None:
    catalogue = build_catalogue(live_config().catalogue)
    a3 = dict(zip(catalogue.names, catalogue.a3_steps, strict=True))["gravel"]
    header = request_header("gravel", steps=5, backhaul_down_rate_bps=4e6, output_bytes=50_000)
    result, data, reply_s = read_reply(stub.Generate(iter(good_upload(header)), timeout=30))
    assert (result.served_by, result.steps_run) == ("cloud", math.ceil(a3)) == ("cloud", 3)
    assert (result.unet_calls, result.batch_size) == (3, 1)  # jump_n_sample = 1
    assert 0 <= result.wait_s < result.generation_s < 5
    assert (result.backhaul_up_s, result.backhaul_down_s) == (0.0, 0.0)
    image = reply_image(result, data)  # exactly output_bytes, zero filler
    upload, mask = request_arrays()
    keep = mask.astype(bool)
    np.testing.assert_allclose(image[keep], upload[keep], atol=1e-5)
    assert not np.allclose(image[~keep], 0.5, atol=0.05)  # the hole was inpainted
    # the reply is paced at R_cb: 50 kB at 4 Mbit/s take 100 ms
    assert reply_s == pytest.approx(8 * 50_000 / 4e6, rel=0.1)


def test_fetch_weights_streams_the_model_files_sorted_hashed_and_paced(stub) -> None:
    rate_bps, time_scale = 20e6, 10.0
    chunks = stub.FetchWeights(
        cloud_pb2.WeightsRequest(model="brick", rate_bps=rate_bps, time_scale=time_scale),
        timeout=30,
    )
    files: dict[str, tuple[cloud_pb2.FileHeader, bytearray]] = {}
    current = ""
    start_s = math.nan
    for chunk in chunks:
        if not files:  # the link starts with the first message (files are hashed before)
            start_s = time.perf_counter()
        if chunk.WhichOneof("part") == "file":
            current = chunk.file.path
            files[current] = (chunk.file, bytearray())
        else:
            files[current][1].extend(chunk.data)
    wall_s = time.perf_counter() - start_s
    assert list(files) == ZOO_FILES
    total_bytes = 0
    for path, (header, data) in files.items():
        expected = (MODELS_DIR / "brick" / path).read_bytes()
        assert bytes(data) == expected
        assert header.size_bytes == len(expected)
        assert header.sha256 == hashlib.sha256(expected).hexdigest()
        total_bytes += len(expected)
    assert wall_s == pytest.approx(8 * total_bytes / (rate_bps * time_scale), rel=0.05)


BAD_WEIGHT_REQUESTS = {
    "unknown model": ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "model"),
    "empty name": ({"model": ""}, grpc.StatusCode.NOT_FOUND, "model"),
    "path traversal": ({"model": "../../etc/passwd"}, grpc.StatusCode.NOT_FOUND, "model"),
    "path inside the zoo": ({"model": "brick/../text"}, grpc.StatusCode.NOT_FOUND, "model"),
    "absolute path": ({"model": str(MODELS_DIR / "brick")}, grpc.StatusCode.NOT_FOUND, "model"),
    "zero rate": ({"rate_bps": 0.0}, grpc.StatusCode.INVALID_ARGUMENT, "rate_bps"),
    "negative rate": ({"rate_bps": -1e6}, grpc.StatusCode.INVALID_ARGUMENT, "rate_bps"),
    "NaN rate": ({"rate_bps": math.nan}, grpc.StatusCode.INVALID_ARGUMENT, "rate_bps"),
    "infinite time_scale": (
        {"time_scale": math.inf},
        grpc.StatusCode.INVALID_ARGUMENT,
        "time_scale",
    ),
    "zero time_scale": ({"time_scale": 0.0}, grpc.StatusCode.INVALID_ARGUMENT, "time_scale"),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHT_REQUESTS))
def test_bad_weight_requests_are_refused_naming_the_field(cloud, stub, case: str) -> None:
    fields, code, field = BAD_WEIGHT_REQUESTS[case]
    request = cloud_pb2.WeightsRequest(
        **{"model": "brick", "rate_bps": 20e6, "time_scale": 100.0, **fields}
    )
    expect_refusal(lambda timeout: stub.FetchWeights(request, timeout=timeout), code, field)
    assert_serving(cloud.address, SERVICE_NAME)
    good = cloud_pb2.WeightsRequest(model="grass", rate_bps=1e12, time_scale=1.0)
    assert sum(len(c.data) for c in stub.FetchWeights(good, timeout=10)) > 4_000_000


BAD_UPLOADS = bad_uploads("brick")


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_to_the_cloud_are_refused_naming_the_field(cloud, stub, case: str) -> None:
    messages, code, field = BAD_UPLOADS[case]
    expect_refusal(lambda timeout: stub.Generate(iter(messages), timeout=timeout), code, field)
    assert_serving(cloud.address, SERVICE_NAME)
    result, data, _ = read_reply(stub.Generate(iter(good_upload(request_header())), timeout=30))
    assert result.steps_run == 3 and len(data) == result.output_bytes


def test_health_and_reflection(cloud) -> None:
    assert_serving(cloud.address, SERVICE_NAME)
    services = reflected_services(cloud.address)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= services


def test_serve_refuses_a_catalogue_that_is_not_the_zoo() -> None:
    with pytest.raises(TestbedError, match="'model0' is not a zoo model"):
        serve(ScenarioConfig())

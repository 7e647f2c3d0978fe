"""The edge node on loopback with a real cloud: cache fills of real weights, generation with
the cached model, forwarding, batching, refusals that name the field, health and reflection;
and its parts (the worker, the weight-stream writer) on their own."""

from __future__ import annotations

import hashlib
import math
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

from cloud_node.server import serve as serve_cloud
from edge_node.cache import FillError, write_weights
from edge_node.executor import RePaintExecutor
from edge_node.server import SERVICE_NAME, serve
from edge_node.worker import InferenceWorker, wait_for
from edge_node.zoo import MODELS_DIR, ZOO_DIR, transfer_files
from testbed.core.config import build_catalogue
from testbed.core.errors import TestbedError
from testbed.proto import cloud_pb2, edge_pb2, edge_pb2_grpc
from testbed.proto.runtime import NodeServer, channel
from testbed.proto.streams import Refusal, Upload

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

R_CB_BPS = live_config().network.backhaul_down_rate_bps
"""The live scenario's cloud-to-edge rate (20 Mbit/s)."""
FILL_TIME_SCALE = 10.0
"""Fills in these tests run 10x faster than real time (171 ms per zoo model)."""
ZOO_MODEL_BYTES = sum(
    (MODELS_DIR / "brick" / path).stat().st_size for path in transfer_files(MODELS_DIR / "brick")
)


@pytest.fixture(scope="module")
def cloud() -> Iterator[NodeServer]:
    # one torch thread: with two on a 2-core machine, any other busy process makes RePaint
    # stall for seconds; the process-wide setting is restored for the tests that follow
    threads = torch.get_num_threads()
    node = serve_cloud(live_config(), device="cpu", threads=1)
    yield node
    node.stop()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge_cache")


@pytest.fixture(scope="module")
def edge(cloud: NodeServer, cache_dir: Path) -> Iterator[NodeServer]:
    node = serve(live_config(), cloud=cloud.address, device="cpu", threads=1, cache_dir=cache_dir)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def stub(edge: NodeServer) -> Iterator[edge_pb2_grpc.EdgeStub]:
    with channel(edge.address) as chan:
        yield edge_pb2_grpc.EdgeStub(chan)


def apply(stub, models: list[str], time_scale: float = FILL_TIME_SCALE) -> edge_pb2.CacheReport:
    request = edge_pb2.CacheRequest(
        frame=0, models=models, backhaul_down_rate_bps=R_CB_BPS, time_scale=time_scale
    )
    return stub.ApplyCache(request, timeout=60)


def refused_decision(stub, code: grpc.StatusCode, field: str, **fields: object) -> str:
    """The details of a cache decision that must be refused with ``code`` naming ``field``:
    brick at R_cb in real time unless ``fields`` say otherwise."""
    request = edge_pb2.CacheRequest(
        **{"models": ["brick"], "backhaul_down_rate_bps": R_CB_BPS, "time_scale": 1.0, **fields}
    )
    return expect_refusal(lambda timeout: stub.ApplyCache(request, timeout=timeout), code, field)


def generate(stub, model: str, steps: int, **fields: object):
    header = request_header(model, steps, **fields)
    return read_reply(stub.Generate(iter(good_upload(header)), timeout=30))


def test_a_fill_streams_real_weights_and_the_edge_generates_with_them(stub, cache_dir) -> None:
    apply(stub, [])
    report = apply(stub, ["brick"])
    assert list(report.cached) == ["brick"] and list(report.evicted) == []
    (fill,) = report.fills
    assert (fill.model, fill.bytes) == ("brick", ZOO_MODEL_BYTES)
    # emulated fill time: d / R_cb, 4.27 MB at 20 Mbit/s = 1.71 s
    assert fill.fill_s == pytest.approx(8 * ZOO_MODEL_BYTES / R_CB_BPS, rel=0.05)
    for path in transfer_files(MODELS_DIR / "brick"):
        assert (cache_dir / "brick" / path).read_bytes() == (
            MODELS_DIR / "brick" / path
        ).read_bytes()

    result, data, _ = generate(stub, "brick", 2, output_bytes=54_321)
    assert (result.served_by, result.steps_run, result.unet_calls) == ("edge", 2, 2)
    assert result.batch_size == 1 and 0 <= result.wait_s < result.generation_s
    assert (result.backhaul_up_s, result.backhaul_down_s) == (0.0, 0.0)
    image = reply_image(result, data)  # exactly output_bytes after the header
    upload, mask = request_arrays()
    keep = mask.astype(bool)
    np.testing.assert_allclose(image[keep], upload[keep], atol=1e-5)


def test_zero_steps_return_the_corrupted_upload_unchanged(stub) -> None:
    apply(stub, ["brick"])
    result, data, _ = generate(stub, "brick", 0)
    assert (result.served_by, result.steps_run, result.unet_calls) == ("edge", 0, 0)
    np.testing.assert_array_equal(reply_image(result, data), request_arrays()[0])


def test_an_uncached_model_is_forwarded_to_the_cloud(stub) -> None:
    apply(stub, ["brick"])
    catalogue = build_catalogue(live_config().catalogue)
    a3 = dict(zip(catalogue.names, catalogue.a3_steps, strict=True))["hubble_deep_field"]
    rates = {"backhaul_up_rate_bps": 8e6, "backhaul_down_rate_bps": 10e6, "time_scale": 2.0}
    header_fields = {"input_bytes": 200_000, "output_bytes": 150_000, **rates}
    result, data, _ = generate(stub, "hubble_deep_field", 0, **header_fields)
    assert result.served_by == "cloud"
    assert result.steps_run == result.unet_calls == math.ceil(a3) == 3
    # emulated backhaul times: d_in / R_bc = 200 ms, d_op / R_cb = 120 ms
    assert result.backhaul_up_s == pytest.approx(8 * 200_000 / 8e6, rel=0.1)
    assert result.backhaul_down_s == pytest.approx(8 * 150_000 / 10e6, rel=0.1)
    assert 0 <= result.wait_s < result.generation_s
    reply_image(result, data)


def test_jobs_of_one_model_and_step_count_ready_together_run_as_one_batch() -> None:
    # Deterministic: the worker is busy loading a model (hundreds of ms) while the jobs queue,
    # so they are ready together when it takes the next work, whatever the machine's load.
    worker = InferenceWorker(RePaintExecutor(device="cpu"))
    try:
        loading = worker.load(MODELS_DIR / "text")
        jobs = []
        for seed in (1, 2, 3):
            image, mask = request_arrays(seed)
            upload = Upload(request_header("brick", 2, noise_seed=seed), image, mask, 0.0)
            steps = 2 if seed < 3 else 1  # the third job has another step count
            jobs.append(worker.submit(MODELS_DIR / "brick", upload, steps, time.perf_counter()))
        assert not loading.done()  # the jobs really queued behind the load
        results = [wait_for(job, timeout_s=60) for job in jobs]
        assert [r.batch_size for r in results] == [2, 2, 1]
        assert [r.steps_run for r in results] == [2, 2, 1]
        assert results[0].unet_calls == results[1].unet_calls == 2
        assert all(0 < r.wait_s < r.generation_s for r in results)
    finally:
        worker.close()


def test_a_decision_evicts_what_it_leaves_out(stub, cache_dir) -> None:
    apply(stub, ["brick", "grass"])
    report = apply(stub, ["grass"])
    assert (list(report.cached), list(report.evicted), list(report.fills)) == (
        ["grass"],
        ["brick"],
        [],
    )
    assert not (cache_dir / "brick").exists() and (cache_dir / "grass").is_dir()
    assert generate(stub, "brick", 1)[0].served_by == "cloud"


def test_a_second_decision_during_a_fill_is_refused(stub) -> None:
    apply(stub, [])
    with ThreadPoolExecutor(1) as pool:
        # a fill of 4.27 MB at 20 Mbit/s x 2 takes 0.85 s
        first = pool.submit(apply, stub, ["coffee"], 2.0)
        time.sleep(0.3)
        details = refused_decision(
            stub, grpc.StatusCode.FAILED_PRECONDITION, "models", models=["coffee"], time_scale=2.0
        )
        assert "filling 'coffee'" in details
        assert [fill.model for fill in first.result().fills] == ["coffee"]


def test_a_cloud_that_is_down_is_unavailable_naming_the_model(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    node = serve(live_config(), cloud=dead, device="cpu", threads=1, cache_dir=tmp_path)
    try:
        with channel(node.address) as chan:
            edge = edge_pb2_grpc.EdgeStub(chan)
            details = refused_decision(edge, grpc.StatusCode.UNAVAILABLE, "cloud")
            assert "filling 'brick'" in details and not (tmp_path / "brick").exists()
            upload = good_upload(request_header("text"))
            details = expect_refusal(
                lambda timeout: edge.Generate(iter(upload), timeout=timeout),
                grpc.StatusCode.UNAVAILABLE,
                "cloud",
            )
            assert "'text'" in details
            assert_serving(node.address, SERVICE_NAME)
    finally:
        node.stop()


def _bad_decisions() -> dict[str, tuple[dict, grpc.StatusCode, str]]:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    not_found = grpc.StatusCode.NOT_FOUND
    return {
        "unknown model": ({"models": ["nope"]}, not_found, "models"),
        "path-traversal name": ({"models": ["../../etc/passwd"]}, not_found, "models"),
        "path inside the zoo": ({"models": ["brick/../text"]}, not_found, "models"),
        "absolute path": ({"models": [str(MODELS_DIR / "brick")]}, not_found, "models"),
        "duplicate model": ({"models": ["brick", "grass", "brick"]}, invalid, "models"),
        # c_m: brick 7.407 + text 8.396 + coins 9.966 = 25.769 GB > C = 20 GB
        "over capacity": (
            {"models": ["brick", "text", "coins"]},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "models",
        ),
        "NaN rate": ({"backhaul_down_rate_bps": math.nan}, invalid, "backhaul_down_rate_bps"),
        "negative rate": ({"backhaul_down_rate_bps": -2e7}, invalid, "backhaul_down_rate_bps"),
        "zero time_scale": ({"time_scale": 0.0}, invalid, "time_scale"),
        "infinite time_scale": ({"time_scale": math.inf}, invalid, "time_scale"),
    }


BAD_DECISIONS = _bad_decisions()


@pytest.mark.parametrize("case", list(BAD_DECISIONS))
def test_bad_cache_decisions_are_refused_naming_the_field(edge, stub, case: str) -> None:
    apply(stub, ["brick"])
    fields, code, field = BAD_DECISIONS[case]
    details = refused_decision(stub, code, field, **fields)
    if case == "over capacity":
        assert "25.769 GB" in details and "C = catalogue.cache_capacity_gb = 20 GB" in details
    assert_serving(edge.address, SERVICE_NAME)
    assert list(apply(stub, ["brick"]).cached) == ["brick"]  # untouched, and still working


BAD_UPLOADS = {
    **bad_uploads("brick"),
    "steps over L": (
        good_upload(request_header("brick", live_config().catalogue.total_steps + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "steps",
    ),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_to_the_edge_are_refused_naming_the_field(edge, stub, case: str) -> None:
    apply(stub, ["brick"])
    messages, code, field = BAD_UPLOADS[case]
    expect_refusal(lambda timeout: stub.Generate(iter(messages), timeout=timeout), code, field)
    assert_serving(edge.address, SERVICE_NAME)
    result, data, _ = generate(stub, "brick", 1)
    assert (result.served_by, result.steps_run, len(data)) == ("edge", 1, result.output_bytes)


def test_health_and_reflection(edge) -> None:
    assert_serving(edge.address, SERVICE_NAME)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= reflected_services(edge.address)


def test_serve_refuses_a_cache_folder_inside_the_zoo() -> None:
    with pytest.raises(TestbedError, match="cache_dir"):
        serve(live_config(), cache_dir=ZOO_DIR / "models")


# The parts on their own ------------------------------------------------------------------


def _weights(path: str, data: bytes, sha256: str | None = None, size: int | None = None):
    header = cloud_pb2.FileHeader(
        path=path,
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
    )
    return [cloud_pb2.WeightsChunk(file=header), cloud_pb2.WeightsChunk(data=data)]


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        (_weights("../escape.json", b"{}"), "file path '../escape.json'"),
        (_weights("unet/../../escape.json", b"{}"), "without '.' or '..'"),
        (_weights("/tmp/escape.json", b"{}"), "file path '/tmp/escape.json'"),
        (_weights("unet/diffusion_pytorch_model.bin", b"x"), "ending in .safetensors or .json"),
        (_weights("unet\\config.json", b"{}"), "file path"),
        (_weights("a.json", b"{}", sha256="0" * 64), "SHA-256 differs"),
        (_weights("a.json", b"{}", size=3), "2 of size_bytes = 3"),
        (_weights("a.json", b"{}", size=1), "more than size_bytes = 1"),
        (_weights("a.json", b"{}")[1:], "file header before each file's data"),
        ([*_weights("a.json", b"{}"), *_weights("a.json", b"{}")], "sent twice"),
        ([], "held no file"),
    ],
)
def test_weight_streams_that_break_the_rules_abort_the_fill(
    tmp_path: Path, chunks: list, message: str
) -> None:
    with pytest.raises(FillError, match=message.replace("(", r"\(").replace(".", r"\.")):
        write_weights(chunks, tmp_path / "model" / "brick")
    assert not (tmp_path / "escape.json").exists() and not Path("/tmp/escape.json").exists()


def test_a_failing_job_fails_its_caller_as_internal_and_the_worker_goes_on() -> None:
    worker = InferenceWorker(RePaintExecutor(device="cpu"))
    try:
        image, mask = request_arrays()
        upload = Upload(request_header(), image, mask, time.perf_counter())
        failed = worker.submit(Path("/nonexistent/model"), upload, 1, time.perf_counter())
        with pytest.raises(Refusal) as refusal:
            wait_for(failed, timeout_s=30)
        assert refusal.value.code == grpc.StatusCode.INTERNAL
        assert refusal.value.message.startswith("generation: failed: FileNotFoundError")
        served = wait_for(
            worker.submit(MODELS_DIR / "brick", upload, 1, time.perf_counter()), timeout_s=30
        )
        assert (served.steps_run, served.unet_calls, served.batch_size) == (1, 1, 1)
    finally:
        worker.close()

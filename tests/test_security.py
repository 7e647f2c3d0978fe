"""Issue 10, item 6, "nobody let in": loopback by default; any other address needs TLS and a
shared token; clients verify the server; model weights travel and load only as safetensors.

Certificates are made at test time with the ``openssl`` CLI (Debian ships it; no Python
dependency is added for it): a self-signed server certificate for ``DNS:localhost`` and
``IP:127.0.0.1`` that clients take as their CA, and a second, unrelated one as the wrong CA.
The nodes started here are cloud nodes (the lightest) and one edge, bound to ``0.0.0.0``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from nodes import live_config

from testbed.commands.common import add_security_flags, security_options
from testbed.core.errors import UsageError
from testbed.proto import cloud_pb2, cloud_pb2_grpc, edge_pb2, edge_pb2_grpc
from testbed.proto.runtime import NodeServer, channel, wait_until_serving
from testbed.proto.security import (
    LISTEN_REFUSAL,
    TOKEN_ENV,
    UNAUTHENTICATED_DETAILS,
    Security,
    SecurityOptions,
    check_target,
    is_loopback,
    redacted_argv,
)

TOKEN = "a1" + secrets.token_hex(31)
WRONG_TOKEN = "b2" + secrets.token_hex(31)
DASH_TOKEN = "-Xy_" + "7" * 40
"""``secrets.token_urlsafe`` can start with '-': such a token is given as ``--token=...``."""
ALLOWED_SUFFIXES = (".safetensors", ".json")
ZOO_FILES = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
]


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost and 127.0.0.1, and its key."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI makes the test certificates")
    folder = tmp_path_factory.mktemp("pki")
    cert, key = _self_signed(folder, "localhost")
    other_cert, other_key = _self_signed(folder, "stranger")
    return {"cert": cert, "key": key, "other_cert": other_cert, "other_key": other_key}


@pytest.fixture(scope="module")
def server_security(pki) -> Security:
    return Security.from_files(pki["cert"], pki["key"], ca=pki["cert"], token=TOKEN)


def _client(pki, ca: str | None = "cert", token: str | None = TOKEN) -> Security:
    return Security.from_files(ca=None if ca is None else pki[ca], token=token)


@pytest.fixture(scope="module")
def torch_threads() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def secured_cloud(torch_threads, server_security) -> Iterator[NodeServer]:
    """A cloud node on every interface, with TLS and the token."""
    from cloud_node.server import serve

    node = serve(
        live_config(), listen="0.0.0.0:0", device="cpu", threads=1, security=server_security
    )
    yield node
    node.stop()


@pytest.fixture(scope="module")
def loopback_token_cloud(torch_threads) -> Iterator[NodeServer]:
    """A cloud node on loopback with the token and no TLS."""
    from cloud_node.server import serve

    node = serve(live_config(), device="cpu", threads=1, security=Security(token=TOKEN))
    yield node
    node.stop()


def _local(node: NodeServer, host: str = "localhost") -> str:
    """The node's address as a client dials it (the certificate names localhost, 127.0.0.1)."""
    return f"{host}:{node.address.rpartition(':')[2]}"


def _health(address: str, security: Security | None, service: str = "") -> int:
    with channel(address, security) as chan:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(chan).Check(request, timeout=5).status


def _fetch(address: str, security: Security | None, model: str = "brick") -> list:
    with channel(address, security) as chan:
        request = cloud_pb2.WeightsRequest(model=model, rate_bps=1e12, time_scale=1.0)
        return list(cloud_pb2_grpc.CloudStub(chan).FetchWeights(request, timeout=10))


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refusal:
        call()
    return refusal.value


# Binding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("edge.example.org", False),
        ("128.0.0.1", False),
    ],
)
def test_loopback_is_127_slash_8_ipv6_one_and_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "parts",
    [(), ("token",), ("tls",), ("tls", "ca")],
    ids=["nothing", "token only", "tls only", "tls and ca, no token"],
)
def test_a_non_loopback_bind_without_tls_and_token_is_refused(pki, parts) -> None:
    from cloud_node.server import serve

    security = None
    if parts:
        tls = "tls" in parts
        security = Security.from_files(
            pki["cert"] if tls else None,
            pki["key"] if tls else None,
            pki["cert"] if "ca" in parts else None,
            TOKEN if "token" in parts else None,
        )
    for listen in ("0.0.0.0:0", "10.1.2.3:50051", "[::]:0"):
        with pytest.raises(UsageError) as refusal:
            serve(live_config(), listen=listen, security=security)
        assert str(refusal.value) == f"--listen {listen}: {LISTEN_REFUSAL}"
        assert LISTEN_REFUSAL == "a non-loopback address needs --tls-cert, --tls-key and --token"


# The secured node ----------------------------------------------------------------------------


def test_the_right_client_is_served_health_and_weights(secured_cloud, pki) -> None:
    from cloud_node.server import SERVICE_NAME

    assert secured_cloud.address.startswith("0.0.0.0:")
    client = _client(pki)
    for host in ("localhost", "127.0.0.1"):  # both SANs verify
        address = _local(secured_cloud, host)
        wait_until_serving(address, timeout_s=5, security=client)
        for service in ("", SERVICE_NAME):
            assert _health(address, client, service) == health_pb2.HealthCheckResponse.SERVING
    chunks = _fetch(_local(secured_cloud), client)
    headers = [chunk.file for chunk in chunks if chunk.WhichOneof("part") == "file"]
    assert [header.path for header in headers] == ZOO_FILES
    received = b"".join(chunk.data for chunk in chunks if chunk.WhichOneof("part") == "data")
    assert len(received) == sum(header.size_bytes for header in headers) > 1_000_000


@pytest.mark.parametrize("token", [None, WRONG_TOKEN], ids=["no token", "wrong token"])
def test_a_client_without_the_token_is_unauthenticated_on_every_method(
    secured_cloud, pki, token
) -> None:
    client = _client(pki, token=token)
    address = _local(secured_cloud)
    for call in (
        lambda: _health(address, client),
        lambda: _fetch(address, client),
        lambda: _fetch(address, client, model="../../etc/passwd"),  # refused before any check
    ):
        refusal = _refused(call)
        assert refusal.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refusal.details() == UNAUTHENTICATED_DETAILS
    with channel(address, client) as chan:  # reflection too: the node's surface stays hidden
        with pytest.raises(grpc.RpcError) as refusal:
            ProtoReflectionDescriptorDatabase(chan).get_services()
        assert refusal.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(UsageError, match="UNAUTHENTICATED: missing or wrong token"):
        wait_until_serving(address, timeout_s=5, security=client)


def test_a_client_with_a_wrong_ca_is_refused_by_the_tls_handshake(secured_cloud, pki) -> None:
    address = _local(secured_cloud)
    for client in (_client(pki, ca="other_cert"), _client(pki, ca=None)):  # wrong CA, plaintext
        for call in (partial(_health, address, client), partial(_fetch, address, client)):
            assert _refused(call).code() == grpc.StatusCode.UNAVAILABLE


def test_a_loopback_node_with_a_token_refuses_a_tokenless_client(loopback_token_cloud) -> None:
    address = loopback_token_cloud.address
    assert address.startswith("127.0.0.1:")
    for client in (None, Security(token=WRONG_TOKEN)):
        for call in (partial(_health, address, client), partial(_fetch, address, client)):
            refusal = _refused(call)
            assert refusal.code() == grpc.StatusCode.UNAUTHENTICATED
            assert refusal.details() == UNAUTHENTICATED_DETAILS
    serving = _health(address, Security(token=TOKEN))
    assert serving == health_pb2.HealthCheckResponse.SERVING


def test_a_secured_edge_fills_from_a_secured_cloud(secured_cloud, server_security, pki) -> None:
    """Both ends of edge -> cloud: the edge verifies the cloud and sends the token, and serves
    its own clients with TLS and the token."""
    from edge_node.server import serve

    edge = serve(
        live_config(),
        listen="0.0.0.0:0",
        cloud=_local(secured_cloud),
        device="cpu",
        threads=1,
        security=server_security,
    )
    try:
        address = _local(edge)
        with channel(address, _client(pki)) as chan:
            report = edge_pb2_grpc.EdgeStub(chan).ApplyCache(
                edge_pb2.CacheRequest(
                    models=["brick"], backhaul_down_rate_bps=1e12, time_scale=1.0
                ),
                timeout=60,
            )
        assert list(report.cached) == ["brick"]
        assert [fill.model for fill in report.fills] == ["brick"]
        assert report.fills[0].bytes > 1_000_000
        refusal = _refused(lambda: _health(address, _client(pki, token=None)))
        assert refusal.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        edge.stop()


# Clients and flags ---------------------------------------------------------------------------


def test_a_client_never_sends_the_token_in_the_clear_to_another_host(pki) -> None:
    for security in (None, Security(token=TOKEN), _client(pki, token=None)):
        with pytest.raises(UsageError, match=r"needs --tls-ca .* and --token"):
            check_target("10.0.0.5:50051", security)
    check_target("10.0.0.5:50051", _client(pki))
    check_target("127.0.0.1:50051", None)


def _parse(argv: list[str]) -> SecurityOptions:
    parser = argparse.ArgumentParser()
    add_security_flags(parser)
    return security_options(parser.parse_args(argv))


def test_flags_build_the_security_and_the_token_comes_from_the_environment(
    pki, monkeypatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert _parse([]).security() is None
    flags = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    security = _parse([*flags, "--tls-ca", str(pki["cert"])]).security()
    assert security is not None and security.serves_tls and security.token is None
    assert security.cert_pem == pki["cert"].read_bytes()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    from_env = _parse(flags).security()
    assert from_env is not None and from_env.token == TOKEN
    assert _parse([*flags, "--token", WRONG_TOKEN]).security().token == WRONG_TOKEN
    assert _parse([*flags, f"--token={DASH_TOKEN}"]).security().token == DASH_TOKEN
    assert TOKEN not in repr(from_env) and "PRIVATE" not in repr(from_env)
    # a node started from these flags gets the paths as flags, the token in its environment
    child_flags, child_env = _parse(flags).for_child()
    assert child_flags == flags and child_env == {TOKEN_ENV: TOKEN}
    assert TOKEN not in " ".join(child_flags)
    help_text = argparse.ArgumentParser()
    add_security_flags(help_text)
    assert TOKEN_ENV in help_text.format_help()
    # the command a run folder records keeps every flag but the token's value
    argv = ["testbed", "run", "--token", TOKEN, f"--token={TOKEN}", "--tls-ca", "ca.pem"]
    assert redacted_argv(argv) == [
        "testbed",
        "run",
        "--token",
        "***",
        "--token=***",
        "--tls-ca",
        "ca.pem",
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"cert": "missing", "key": "key"}, "--tls-cert .*missing.pem: cannot read it"),
        ({"cert": "key", "key": "key"}, "--tls-cert .*: not a PEM file holding a CERTIFICATE"),
        ({"cert": "cert", "key": "cert"}, "--tls-key .*: not a PEM file holding a PRIVATE KEY"),
        ({"cert": "cert", "key": "other_key"}, "--tls-cert .* / --tls-key .*: not a certificate"),
        ({"cert": "cert"}, "--tls-cert and --tls-key go together"),
        ({"key": "key"}, "--tls-cert and --tls-key go together"),
        ({"ca": "key"}, "--tls-ca .*: not a PEM file holding a CERTIFICATE"),
        ({"ca": "junk"}, "--tls-ca .*: not a PEM file holding a CERTIFICATE"),
    ],
)
def test_bad_files_are_refused_naming_the_flag(pki, tmp_path, files, message) -> None:
    paths = {**pki, "missing": tmp_path / "missing.pem", "junk": tmp_path / "junk.pem"}
    paths["junk"].write_bytes(os.urandom(64))
    with pytest.raises(UsageError, match=message):
        Security.from_files(**{flag: paths[name] for flag, name in files.items()})


@pytest.mark.parametrize(
    "token", ["", "short", "x" * 15, "has a space in it ok", "tab\tin-it-0123456"]
)
def test_weak_or_malformed_tokens_are_refused_without_being_shown(token: str) -> None:
    with pytest.raises(UsageError) as refusal:
        Security(token=token)
    assert str(refusal.value).startswith("--token (or TESTBED_TOKEN): at least 16")
    assert not token or token not in str(refusal.value)


# Weights: safetensors and JSON only ---------------------------------------------------------

FORBIDDEN_WEIGHT_FILES = [
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.pt",
    "unet/model.pth",
    "unet/model.ckpt",
    "model.pkl",
    "unet/weights.npy",
    "hook.py",
    "unet/CONFIG.JSON",
    "unet/diffusion_pytorch_model.safetensors.bin",
    "unet/diffusion_pytorch_model",
]


def test_item6_fetch_weights_sends_only_safetensors_and_json(torch_threads, tmp_path) -> None:
    """A model folder that also holds pickles, code and a link out of it: only its
    safetensors weights and JSON configs travel."""
    from cloud_node.server import CloudServicer
    from edge_node.zoo import MODELS_DIR

    folder = tmp_path / "brick"
    shutil.copytree(MODELS_DIR / "brick", folder)
    for name in FORBIDDEN_WEIGHT_FILES:
        (folder / name).write_bytes(pickle.dumps({"weight": 1.0}))
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"not the model's")
    (folder / "unet" / "linked.safetensors").symlink_to(outside)
    from testbed.proto import cloud_pb2_grpc
    from testbed.proto.runtime import channel, make_server

    servicer = CloudServicer({"brick": folder}, {"brick": 3}, worker=None)  # type: ignore[arg-type]
    node = make_server(
        [lambda server: cloud_pb2_grpc.add_CloudServicer_to_server(servicer, server)],
        ["testbed.v1.Cloud"],
    )
    try:
        request = cloud_pb2.WeightsRequest(model="brick", rate_bps=1e12, time_scale=1.0)
        with channel(node.address) as chan:
            stub = cloud_pb2_grpc.CloudStub(chan)
            chunks = list(stub.FetchWeights(request, timeout=30))
    finally:
        node.stop(0.5)
    paths = [chunk.file.path for chunk in chunks if chunk.WhichOneof("part") == "file"]
    assert paths == ZOO_FILES
    assert all(path.endswith(ALLOWED_SUFFIXES) for path in paths)


class _RecordingWorker:
    """Stands in for the inference worker: records what the cache asks it to load."""

    def __init__(self) -> None:
        self.loaded: list[list[str]] = []

    def load(self, folder: Path) -> Future[None]:
        files = [path for path in folder.rglob("*") if path.is_file()]
        self.loaded.append(sorted(path.relative_to(folder).as_posix() for path in files))
        future: Future[None] = Future()
        future.set_result(None)
        return future


def _zoo_stream(extra: str | None = None) -> list[cloud_pb2.WeightsChunk]:
    """The brick model's weight stream as the cloud sends it, with ``extra`` (a pickle) sent
    after its files."""
    from edge_node.zoo import MODELS_DIR

    files = [(path, (MODELS_DIR / "brick" / path).read_bytes()) for path in ZOO_FILES]
    if extra is not None:
        files.append((extra, pickle.dumps({"weight": 1.0})))
    stream = []
    for path, data in files:
        header = cloud_pb2.FileHeader(
            path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        stream += [cloud_pb2.WeightsChunk(file=header), cloud_pb2.WeightsChunk(data=data)]
    return stream


@pytest.mark.parametrize("name", FORBIDDEN_WEIGHT_FILES)
def test_item6_the_edge_never_accepts_or_loads_anything_but_safetensors_and_json(
    torch_threads, tmp_path, name: str
) -> None:
    from edge_node.cache import FillError, ModelCache

    worker = _RecordingWorker()
    cache = ModelCache(tmp_path, worker)  # type: ignore[arg-type]
    with pytest.raises(FillError, match=r"ending in \.safetensors or \.json"):
        cache.apply(["brick"], lambda model: iter(_zoo_stream(extra=name)))
    assert worker.loaded == [] and cache.held() == []
    assert not (tmp_path / "brick").exists()  # the fill's folder is gone, pickle and all
    # the same stream without the stranger fills, and the edge loads exactly those files
    cache.apply(["brick"], lambda model: iter(_zoo_stream()))
    assert worker.loaded == [ZOO_FILES] and cache.held() == ["brick"]

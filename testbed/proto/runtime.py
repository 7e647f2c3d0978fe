"""What every node and client of the live testbed shares: limits, servers, channels, pacing.

* **Limits.** Messages are at most :data:`MAX_MESSAGE_BYTES` on both ends (set explicitly on
  every server and channel); streams carry data in chunks of at most :data:`CHUNK_BYTES`.
* **Servers** (:func:`make_server`): the standard health service and server reflection on
  every node, loopback (``127.0.0.1``) unless an address is given, a graceful stop that
  first reports NOT_SERVING (:func:`serve_until_signalled`). Any other address needs TLS and
  a token (`testbed.proto.security`), and a node given a token checks it on every call.
* **Clients** (:func:`channel`, :func:`wait_until_serving`): the same limits; every call
  passes a deadline (:data:`DEFAULT_DEADLINE_S` unless the caller knows better), and the
  token when there is one; with a CA, the channel speaks TLS and verifies the server.
* **Pacing** (:class:`Pacer`): a link of ``rate_bps`` emulated bit/s, run ``time_scale``
  times faster than real time, releases a transfer's bytes no faster than the rate allows:
  after ``n`` bits it has taken at least ``n / (rate_bps * time_scale)`` wall seconds, so a
  transfer of ``d`` bits measures ``d / rate_bps`` emulated seconds (eqs. (2)-(6)).
* **Images** cross the wire as raw little-endian float32 (:func:`encode_array`,
  :func:`decode_array`), checked for shape, byte count and range on arrival.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from testbed.core.errors import UsageError
from testbed.proto.security import (
    Security,
    TokenCarrier,
    TokenCheck,
    channel_credentials,
    check_address,
    check_listen,
    check_target,
    server_credentials,
)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message either end sends or accepts (chunks are far smaller)."""
CHUNK_BYTES = 32 * 1024
"""Largest data chunk of a stream."""
MAX_TRANSFER_BYTES = 256 * 1024 * 1024
"""Largest upload, reply or model file a node accepts (d_in, d_op, weights)."""
DEFAULT_DEADLINE_S = 30.0
"""Deadline of a call that has no better bound (health checks, cache decisions, slots)."""
LOOPBACK = "127.0.0.1"

CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)


def channel(address: str, security: Security | None = None) -> grpc.Channel:
    """A channel to a node on ``address`` (``host:port``) with the message limits.

    With ``security``'s CA it speaks TLS and accepts only a server that CA signed for that
    address; with its token, every call carries it. Without them, plaintext: loopback only
    (`testbed.proto.security.check_target` raises `UsageError` for any other address).
    """
    check_target(address, security)
    if security is not None and security.ca_pem is not None:
        chan = grpc.secure_channel(address, channel_credentials(security), options=CHANNEL_OPTIONS)
    else:
        chan = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if security is not None and security.token is not None:
        return grpc.intercept_channel(chan, TokenCarrier(security.token))
    return chan


@dataclass
class NodeServer:
    """A started gRPC server with its health service."""

    server: grpc.Server
    health: health.HealthServicer
    address: str
    services: tuple[str, ...]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    """Called in order once the server has stopped: what the node owns beside it (a worker
    thread, a channel to a peer, a temporary folder)."""

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("", status)
        for name in self.services:
            self.health.set(name, status)

    def stop(self, grace_s: float = 2.0) -> None:
        """Report NOT_SERVING, then stop, letting calls in flight finish within ``grace_s``."""
        self.set_serving(False)
        self.server.stop(grace_s).wait()
        while self.on_stop:
            self.on_stop.pop(0)()


def make_server(
    register: Sequence[Callable[[grpc.Server], None]],
    service_names: Sequence[str],
    listen: str = f"{LOOPBACK}:0",
    max_workers: int = 32,
    security: Security | None = None,
) -> NodeServer:
    """Build, bind and start a server: the node's services plus health and reflection.

    ``register`` adds the node's servicers (e.g. ``lambda s: add_EdgeServicer_to_server(
    servicer, s)``); ``service_names`` are their full names (``testbed.v1.Edge``). Binds to
    loopback unless ``listen`` names another host; port 0 picks a free port (see
    :attr:`NodeServer.address`).

    ``security``: TLS when it holds a certificate and key; a token checked on every method,
    health and reflection included, when it holds one. A non-loopback ``listen`` without both
    raises `UsageError` before anything is bound.
    """
    check_listen(listen, security)
    token = None if security is None else security.token
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=() if token is None else (TokenCheck(token),),
        options=CHANNEL_OPTIONS,
        maximum_concurrent_rpcs=4 * max_workers,
    )
    for add in register:
        add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    host, port = check_address("--listen", listen, any_port=True)
    target = f"{host}:{port}"
    try:
        if security is not None and security.serves_tls:
            bound = server.add_secure_port(target, server_credentials(security))
        else:
            bound = server.add_insecure_port(target)
    except RuntimeError:  # grpc's "Failed to bind", raised by newer versions
        bound = 0
    if bound == 0:
        raise UsageError(
            f"--listen {listen}: cannot listen there (the port is taken, or the host is not "
            "an address of this machine)"
        )
    server.start()
    node = NodeServer(server, health_servicer, f"{host}:{bound}", tuple(service_names))
    node.set_serving(True)
    return node


def serve_servicer(
    add_servicer: Callable[[Any, grpc.Server], None],
    servicer: object,
    service_name: str,
    listen: str,
    security: Security | None,
    owned: ExitStack,
) -> NodeServer:
    """:func:`make_server` for a node of one servicer (``add_servicer`` is its generated
    ``add_<Service>Servicer_to_server``). What ``owned`` holds (a worker, channels, a
    temporary folder) passes to the node, released once it stops; if the server fails to
    start, ``owned`` keeps it and its ``with`` block releases it."""
    node = make_server(
        [lambda server: add_servicer(servicer, server)], [service_name], listen, security=security
    )
    node.on_stop.append(owned.pop_all().close)
    return node


def serve_until_signalled(node: NodeServer, on_ready: Callable[[str], None] | None = None) -> None:
    """Block until SIGINT or SIGTERM, then stop gracefully (NOT_SERVING first)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if on_ready is not None:
        on_ready(node.address)
    stop.wait()
    node.stop()


def wait_until_serving(
    address: str, timeout_s: float = 60.0, service: str = "", security: Security | None = None
) -> None:
    """Poll a node's health service until it answers SERVING (raises TimeoutError), through a
    :func:`channel` with ``security``. A node that refuses the token raises `UsageError` at
    once: waiting would not change its answer."""
    deadline = time.monotonic() + timeout_s
    with channel(address, security) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    raise UsageError(
                        f"node at {address}: UNAUTHENTICATED: {details} (give it the token "
                        "it was started with: --token or $TESTBED_TOKEN)"
                    ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"node at {address} not SERVING after {timeout_s:.0f} s")
            time.sleep(0.1)


MAX_LINK_LOSS = 0.9
"""Largest chunk-loss probability of an emulated link (each chunk is retransmitted until
it gets through: 1 / (1 - p) sends on average)."""


class Pacer:
    """Releases a transfer's bytes at ``rate_bps`` emulated bit/s, ``time_scale`` times
    faster than real time (a token bucket with no burst: the schedule is absolute, so
    sleep overshoots do not add up).

    With ``loss`` > 0 (fault injection) each chunk is lost with that probability, drawn from
    a generator seeded by ``seed``; the sender retransmits it, which costs the link another
    chunk time (gRPC itself is reliable, so the copy lost on the emulated link is the time
    it took, not a duplicate on the wire). :attr:`retransmissions` counts them.
    """

    def __init__(
        self, rate_bps: float, time_scale: float = 1.0, loss: float = 0.0, seed: int = 0
    ) -> None:
        if not (rate_bps > 0 and np.isfinite(rate_bps)):
            raise ValueError(f"rate_bps = {rate_bps!r}: allowed finite values > 0")
        if not (time_scale > 0 and np.isfinite(time_scale)):
            raise ValueError(f"time_scale = {time_scale!r}: allowed finite values > 0")
        if not (0.0 <= loss <= MAX_LINK_LOSS):
            raise ValueError(f"link_loss = {loss!r}: allowed [0, {MAX_LINK_LOSS}]")
        self.wall_rate_bps = rate_bps * time_scale
        if not self.wall_rate_bps > 0:
            # each is valid, their product is not (5e-324 x 0.5 underflows to 0); an
            # overflow to inf is a link with no pacing, which is harmless
            raise ValueError(
                f"rate_bps x time_scale = {rate_bps!r} x {time_scale!r}: underflows to 0"
            )
        self.time_scale = time_scale
        self.loss = loss
        self._rng = np.random.default_rng(seed) if loss > 0 else None
        self.retransmissions = 0
        self.start = time.perf_counter()
        self.bits = 0.0

    def sent(self, nbytes: int) -> None:
        """Account for ``nbytes`` just sent; sleep until the link would have carried them
        (every lost copy included)."""
        copies = 1
        if self._rng is not None:
            while self._rng.random() < self.loss:
                copies += 1
            self.retransmissions += copies - 1
        self.bits += 8.0 * nbytes * copies
        due = self.start + self.bits / self.wall_rate_bps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def emulated_s(self) -> float:
        """Emulated seconds since the transfer started."""
        return (time.perf_counter() - self.start) * self.time_scale


def chunks(payload: bytes, filler_to: int = 0, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``payload`` then zero filler up to ``filler_to`` bytes in all, in chunks of ``size``."""
    total = max(len(payload), filler_to)
    view = memoryview(payload)
    for start in range(0, total, size):
        end = min(start + size, total)
        if end <= len(payload):
            yield bytes(view[start:end])
        elif start >= len(payload):
            yield bytes(end - start)
        else:
            yield bytes(view[start:]) + bytes(end - len(payload))


def paced(parts: Iterable[bytes], pacer: Pacer) -> Iterator[bytes]:
    """Yield ``parts``, each released only once the pacer's link has carried it.

    A part leaves when its last bit would have crossed the link, not when it starts to, so
    the receiver's clock agrees with the sender's: the last byte arrives ``d / rate_bps``
    emulated seconds after the first could have, which is what a receiver measures as the
    transfer (eqs. (2), (5)). Releasing first and pacing after would let the last part
    arrive a whole chunk early.
    """
    for part in parts:
        pacer.sent(len(part))
        yield part


def encode_array(array: np.ndarray) -> bytes:
    """Raw little-endian float32 bytes of an array (C order)."""
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def decode_array(
    data: bytes, shape: tuple[int, ...], field: str, low: float = 0.0, high: float = 1.0
) -> np.ndarray:
    """The float32 array of ``shape`` in ``data``, checked: byte count, finite, in range.

    Raises ValueError naming ``field``.
    """
    expected = int(np.prod(shape)) * 4
    if any(int(n) <= 0 for n in shape):
        raise ValueError(f"{field}: shape {shape} must be positive")
    if len(data) != expected:
        raise ValueError(f"{field}: {len(data)} bytes, expected {expected} for shape {shape}")
    array = np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{field}: holds NaN or inf")
    if array.min() < low or array.max() > high:
        raise ValueError(f"{field}: values outside [{low:g}, {high:g}]")
    return array

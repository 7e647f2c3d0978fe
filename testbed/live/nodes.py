"""The nodes of a live run: where they are, how they are secured, and the processes of the
ones ``testbed run`` starts (started, killed on request, restarted, measured, stopped)."""

from __future__ import annotations

import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from testbed.core.errors import TestbedError
from testbed.proto import edge_pb2_grpc, users_pb2_grpc
from testbed.proto.runtime import NodeServer, channel, serve_until_signalled, wait_until_serving
from testbed.proto.security import Security, SecurityOptions

NODE_COMMANDS = {"cloud": "cloud-node", "edge": "edge-node", "users": "ue-emulator"}
"""The ``testbed`` command that starts each node."""
LISTENING = "listening on "
"""What a node prints on stdout, before its address, once it serves (:func:`start_node`
reads it)."""


class NodeStartError(TestbedError):
    """A node ``testbed run`` starts exited, stayed silent or did not answer SERVING in time."""


@dataclass(frozen=True)
class NodeSecurity:
    """How the controller reaches its nodes and how the nodes it starts are secured."""

    security: Security | None = None
    """TLS and the token of the controller's own channels (None: plain, loopback)."""
    flags: tuple[str, ...] = ()
    """The ``--tls-*`` flags handed on to each node process."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Added to each node process's environment: the token travels here, never on a
    command line (which any user could read in the process list)."""

    @classmethod
    def of(cls, options: SecurityOptions) -> NodeSecurity:
        """The security of ``options``, its PEM files read and checked once, here."""
        flags, env = options.for_child()
        return cls(options.security(), tuple(flags), env)


@dataclass(frozen=True)
class NodeAddresses:
    """The users' node and the edge the controller talks to."""

    users: str
    edge: str
    security: Security | None = None

    def edge_serving(self) -> bool:
        """Whether the edge answers its health check SERVING (within 3 s)."""
        return serving(self.edge, security=self.security)


def serving(address: str, timeout_s: float = 3.0, security: Security | None = None) -> bool:
    """Whether the node at ``address`` answers its health check SERVING within ``timeout_s``."""
    try:
        wait_until_serving(address, timeout_s=timeout_s, security=security)
    except TimeoutError:
        return False
    return True


def stubs(
    nodes: NodeAddresses,
) -> tuple[tuple[grpc.Channel, ...], users_pb2_grpc.UsersStub, edge_pb2_grpc.EdgeStub]:
    """Channels and stubs of the users' node and the edge."""
    users_channel = channel(nodes.users, nodes.security)
    edge_channel = channel(nodes.edge, nodes.security)
    return (
        (users_channel, edge_channel),
        users_pb2_grpc.UsersStub(users_channel),
        edge_pb2_grpc.EdgeStub(edge_channel),
    )


def _die_with_parent() -> None:
    """In a node's process, before it runs: receive SIGTERM when the controller dies, even by
    SIGKILL (Linux ``PR_SET_PDEATHSIG``), so that no node outlives its run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the nodes stop with the controller's SIGTERM/Ctrl-C only


@dataclass
class NodeProcess:
    """One node started by ``testbed run`` as its own process."""

    name: str
    command: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen
    address: str
    rss_start_mb: float = math.nan


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS, MB = 10^6 bytes); NaN once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return math.nan


def start_node(
    command: Sequence[str],
    name: str,
    log_path: Path,
    timeout_s: float,
    listen: str = "127.0.0.1:0",
    security: NodeSecurity | None = None,
) -> NodeProcess:
    """Start ``python -m testbed.cli <command> --listen <listen>``; returns once the node
    has printed its address and answers SERVING (its stderr goes to ``log_path``), all within
    ``timeout_s``. Raises `NodeStartError` naming the node, and kills it, otherwise."""
    security = security or NodeSecurity()
    log_file = open(log_path, "a")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed.cli",
            "--log-level",
            "warning",
            *command,
            "--listen",
            listen,
        ],
        stdout=subprocess.PIPE,
        stderr=log_file,
        preexec_fn=_die_with_parent,
        env={**os.environ, **security.env},  # the token travels here, never on a command line
    )
    log_file.close()  # the child holds its own descriptor
    deadline = time.monotonic() + timeout_s
    try:
        address = _announced_address(process, name, log_path, deadline, timeout_s)
        try:
            wait_until_serving(
                address,
                timeout_s=max(0.0, deadline - time.monotonic()),
                security=security.security,
            )
        except TimeoutError:
            raise NodeStartError(
                f"the {name} node at {address} did not answer SERVING within {timeout_s:g} s "
                f"(--start-timeout); see {log_path}"
            ) from None
    except BaseException:  # a node that failed, or a Ctrl-C/SIGTERM mid-start: none outlives it
        process.kill()
        process.wait()
        raise
    node = NodeProcess(name, tuple(command), log_path, process, address)
    node.rss_start_mb = rss_mb(process.pid)
    return node


def _announced_address(
    process: subprocess.Popen, name: str, log_path: Path, deadline: float, timeout_s: float
) -> str:
    """The address a starting node prints (:data:`LISTENING`), read until ``deadline``
    (``time.monotonic``); raises `NodeStartError` when it exits first or stays silent."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in received:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or not selector.select(remaining_s):
                raise NodeStartError(
                    f"the {name} node did not listen within {timeout_s:g} s (--start-timeout); "
                    f"see {log_path}"
                )
            data = os.read(fd, 4096)
            if not data:
                code = process.wait()
                raise NodeStartError(
                    f"the {name} node exited with code {code} before it listened; see {log_path}"
                )
            received += data
    line = received.decode(errors="replace").splitlines()[0]
    if not line.startswith(LISTENING):
        raise NodeStartError(
            f"the {name} node printed {line[:80]!r}, not its address; see {log_path}"
        )
    return line.removeprefix(LISTENING).strip()


class NodeSupervisor:
    """The three nodes of a run as processes on loopback: started, killed on request (fault
    injection), restarted on their own address, measured (resident memory) and stopped."""

    def __init__(
        self,
        logs: Path,
        config_path: Path,
        device: str | None = None,
        threads: int = 1,
        timeout_s: float = 120.0,
        dtype: str = "float32",
        security: NodeSecurity | None = None,
    ) -> None:
        self.logs, self.timeout_s = logs, timeout_s
        self.security = security or NodeSecurity()
        self.common = ["--config", str(config_path), *self.security.flags]
        self.engine = [
            *(["--device", device] if device else []),
            *(["--dtype", dtype] if dtype != "float32" else []),
            "--threads",
            str(threads),
        ]
        self.nodes: dict[str, NodeProcess] = {}

    def start(self) -> NodeAddresses:
        """Start the cloud, then the edge filling from it, then the users' node; returns
        the addresses the controller talks to."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self._start("cloud", [NODE_COMMANDS["cloud"], *self.common, *self.engine])
        cloud = self.nodes["cloud"].address
        self._start("edge", [NODE_COMMANDS["edge"], *self.common, *self.engine, "--cloud", cloud])
        edge = self.nodes["edge"].address
        users = [NODE_COMMANDS["users"], *self.common, "--edge", edge, "--cloud", cloud]
        self._start("users", users)
        return NodeAddresses(self.address("users"), edge, self.security.security)

    def _start(self, name: str, command: list[str], listen: str = "127.0.0.1:0") -> None:
        log_path = self.logs / f"{name}.log"
        self.nodes[name] = start_node(
            command, name, log_path, self.timeout_s, listen, self.security
        )

    def address(self, name: str) -> str:
        return self.nodes[name].address

    def kill(self, name: str) -> None:
        """SIGKILL a node (fault injection): no graceful stop, calls in flight break."""
        node = self.nodes[name]
        node.process.kill()
        node.process.wait()

    def restart(self, name: str) -> None:
        """Start a dead node again on its own address, and wait for its health check."""
        node = self.nodes[name]
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait()
        self._start(name, list(node.command), listen=node.address)

    def memory_mb(self) -> dict[str, dict[str, float]]:
        """Each node's resident memory when it started and now."""
        return {
            name: {"start_mb": node.rss_start_mb, "now_mb": rss_mb(node.process.pid)}
            for name, node in self.nodes.items()
        }

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every node (each reports NOT_SERVING and stops gracefully), then reap."""
        for node in self.nodes.values():
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes.values():
            try:
                node.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


def serve_node(
    command: str,
    config_path: Path | None,
    listen: str,
    security: SecurityOptions,
    **options: Any,
) -> None:
    """Serve the node of ``command`` (a value of :data:`NODE_COMMANDS`) with the scenario at
    ``config_path`` (default: the live CPU scenario; its models must be zoo models or
    checkpoint folders, :func:`~testbed.live.options.check_live_catalogue`), on ``listen``,
    with ``security`` and the node's own ``options``; announce its address on stdout
    (:data:`LISTENING`) and serve until SIGINT or SIGTERM (a graceful stop: NOT_SERVING
    first)."""
    from testbed.live.options import check_live_catalogue, load_live_scenario

    config = load_live_scenario(config_path)
    check_live_catalogue(config)
    node = _server(command)(config, listen=listen, security=security.security(), **options)
    serve_until_signalled(node, lambda address: print(f"{LISTENING}{address}", flush=True))


def _server(command: str) -> Callable[..., NodeServer]:
    """The ``serve`` function of the node of ``command`` (imported only when it runs)."""
    if command == NODE_COMMANDS["edge"]:
        from edge_node.server import serve as serve_edge

        return serve_edge
    if command == NODE_COMMANDS["cloud"]:
        from cloud_node.server import serve as serve_cloud

        return serve_cloud
    from ue_emulator.server import serve as serve_users

    return serve_users

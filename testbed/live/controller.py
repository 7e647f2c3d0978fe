"""The live testbed's controller: the base station's agent host, driving real nodes.

The controller plays the one frame/slot driver (``testbed.sim.driver``) with the nodes in
place of the system model:

* the world is the users' node (:class:`RemoteWorld`: the same world code and seed as
  ``testbed simulate``, drawn over gRPC);
* each frame's cache goes to the edge (:class:`LiveCaching`), which evicts and fills
  missing models by streaming their weights from the cloud;
* each slot's allocation goes to the users (:class:`LiveExecutor`), who upload real
  corrupted images paced at their eq. (2) rates; the edge runs RePaint with the allocated
  integer steps (or forwards to the cloud), replies paced at eq. (5), and the users score
  what comes back against the ground truth they keep.

Every slot is scored twice through the same eqs. (10) and (23): **measured** (the delays
and the TV that happened; what the policies and the metrics see) and **simulated** (the
system model with the scenario's calibration profile on the same world and the same
actions, with the integer steps the edge ran). A failed request (a node down, a deadline
missed, a user without bandwidth) counts like a starved user of the simulator: its delay
is ``delay_cap_s`` and its quality the no-step TV A2, so it breaks (11h).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.protocols import AllocationPolicy, CachingPolicy, Hooks
from testbed.core.records import FrameState, FrameStep, SlotOutcome, SlotState, SlotStep
from testbed.core.system_model import (
    RadioParams,
    cache_fits,
    greedy_cache,
    integer_steps,
    score_slot,
    slot_reward,
    utility,
)
from testbed.proto import common_pb2, edge_pb2, edge_pb2_grpc, users_pb2, users_pb2_grpc
from testbed.proto.runtime import DEFAULT_DEADLINE_S, channel, wait_until_serving
from testbed.proto.security import Security
from testbed.runs.recorder import ProgressSpec, Recorder
from testbed.runs.traces import LIVE_TRACE_SCHEMA, TraceWriter, slot_rows
from testbed.sim.driver import FrameSlotDriver

log = logging.getLogger(__name__)

FILL_DEADLINE_S = 600.0
"""Deadline of a frame's cache decision: fills stream real weights over the backhaul."""


class RemoteWorld:
    """The users' world on the users' node, as a ``FrameSource`` of the driver. A users'
    node that stops answering ends the run (:class:`NodeDied`)."""

    def __init__(self, users: users_pb2_grpc.UsersStub, deadline_s: float = DEFAULT_DEADLINE_S):
        self.users, self.deadline_s = users, deadline_s

    def _call(self, method: str, request):
        try:
            return getattr(self.users, method)(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise NodeDied(
                f"the users' node stopped answering its {method}: {rpc_error_line(exc)}"
            ) from exc

    def reset(self, seed: int | np.random.SeedSequence) -> None:
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        message = common_pb2.Seed(
            entropy=[int(e) for e in np.atleast_1d(seq.entropy)],
            spawn_key=[int(k) for k in seq.spawn_key],
        )
        self._call("BeginEpisode", users_pb2.EpisodeRequest(world_seed=message))

    def begin_frame(self) -> FrameState:
        reply = self._call("BeginFrame", users_pb2.FrameRequest())
        return FrameState(reply.frame, reply.popularity_index, reply.gamma)

    def next_slot(self) -> SlotState:
        reply = self._call("NextSlot", users_pb2.SlotRequest())
        return SlotState(
            frame=reply.frame,
            slot=reply.slot,
            popularity_index=reply.popularity_index,
            gamma=reply.gamma,
            location_state=reply.location_state,
            positions_m=np.asarray(reply.positions_m, dtype=float).reshape(-1, 2),
            distance_m=np.asarray(reply.distance_m, dtype=float),
            fading_power=np.asarray(reply.fading_power, dtype=float),
            channel_gain=np.asarray(reply.channel_gain, dtype=float),
            services=np.asarray(reply.services, dtype=np.int64),
            input_bits=np.asarray(reply.input_bits, dtype=float),
        )


class NodeDied(RuntimeError):
    """A node the run cannot go on without (the users' node) stopped answering."""


@dataclass(frozen=True)
class Faults:
    """Faults a researcher injects (``testbed run --inject``)."""

    edge_kill_slot: int | None = None
    """SIGKILL the edge before this slot (counted over the whole run from 0)."""
    cloud_kill_slot: int | None = None
    """SIGKILL the cloud before this slot."""
    link_loss: float = 0.0
    """Chunk-loss probability of every paced link (retransmitted, adding measured delay)."""


@dataclass
class LiveState:
    """What the controller knows of the nodes between slots."""

    edge_down: bool = False
    """The edge stopped answering: requests are relayed straight to the cloud."""
    events: list[dict] = field(default_factory=list)
    """What happened to the nodes, and when (slot counted over the run)."""
    slots_served: int = 0
    """Slots of the run played so far (replayed ones of a resumed run included)."""
    resume_from: int = 0
    """A resumed run's first unfinished slot: the slots before it are replayed, not served."""


@dataclass
class FrameLog:
    """What the edge did with one frame's cache."""

    frame: int
    requested: tuple[str, ...]
    applied: tuple[str, ...]
    fills: dict[str, float] = field(default_factory=dict)
    """Emulated seconds each missing model took to stream from the cloud."""
    fill_bytes: dict[str, int] = field(default_factory=dict)
    trimmed: bool = False
    """The policy's cache broke (11d); the edge holds its greedy trim instead."""
    failure: str = ""
    """Why the decision could not be applied (a node down), if it could not."""


class LiveCaching:
    """A caching policy whose decisions the edge applies (evicting, filling from the cloud).

    A cache that breaks (11d) cannot be held by a real edge: it is trimmed greedily (the
    chosen models in index order while they fit) and the trim is logged.
    """

    def __init__(
        self,
        policy: CachingPolicy,
        edge: edge_pb2_grpc.EdgeStub,
        catalogue: ModelCatalogue,
        config: ScenarioConfig,
        time_scale: float,
        state: LiveState | None = None,
        edge_health: Callable[[], bool] | None = None,
        restart_edge: Callable[[], None] | None = None,
        link_loss: float = 0.0,
    ) -> None:
        self.policy, self.edge, self.catalogue = policy, edge, catalogue
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.backhaul_down_bps = config.network.backhaul_down_rate_bps
        self.time_scale = time_scale
        self.state = state if state is not None else LiveState()
        self.edge_health = edge_health
        self.restart_edge = restart_edge
        self.link_loss = link_loss
        self.slots_per_frame = config.timing.slots_per_frame
        self.name = policy.name
        self.frames: list[FrameLog] = []

    def reset(self, seed: np.random.SeedSequence) -> None:
        self.policy.reset(seed)

    def select_cache(self, frame: FrameState) -> np.ndarray:
        wanted = np.asarray(self.policy.select_cache(frame), dtype=bool)
        cache = wanted
        if not cache_fits(wanted, self.catalogue.size_gb, self.capacity_gb):
            order = -np.arange(len(wanted), dtype=float) + np.where(wanted, 1e6, 0.0)
            cache = greedy_cache(order, self.catalogue.size_gb, self.capacity_gb) & wanted
        if self.state.edge_down and self.restart_edge is not None:
            self.restart_edge()  # a restarted edge starts empty: this frame refills it
            self.state.edge_down = False
            self.state.events.append({"slot": self.state.slots_served, "event": "edge restarted"})
        if self.state.slots_served + self.slots_per_frame <= self.state.resume_from:
            return cache  # a frame the interrupted run finished: nothing to apply again
        log_entry = FrameLog(
            frame=frame.frame,
            requested=tuple(self.catalogue.names[m] for m in np.flatnonzero(wanted)),
            applied=(),
            trimmed=not np.array_equal(cache, wanted),
        )
        self.frames.append(log_entry)
        if self.state.edge_down:
            log_entry.failure = "edge down: nothing cached, every request relayed to the cloud"
            return np.zeros_like(cache)
        names = [self.catalogue.names[m] for m in np.flatnonzero(cache)]
        try:
            report = self.edge.ApplyCache(
                edge_pb2.CacheRequest(
                    frame=frame.frame,
                    models=names,
                    backhaul_down_rate_bps=self.backhaul_down_bps,
                    time_scale=self.time_scale,
                    link_loss=self.link_loss,
                ),
                timeout=FILL_DEADLINE_S,
            )
        except grpc.RpcError as exc:
            log_entry.failure = rpc_error_line(exc)
            if self.edge_health is not None and not self.edge_health():
                self.state.edge_down = True
                self.state.events.append(
                    {"slot": self.state.slots_served, "event": f"edge down ({log_entry.failure})"}
                )
                return np.zeros_like(cache)
            # the edge answers but its fills failed (the cloud is down): it holds what it
            # could; the requests for the rest reach the cloud and fail with their status
            return cache
        log_entry.applied = tuple(report.cached)
        log_entry.fills = {f.model: f.fill_s for f in report.fills}
        log_entry.fill_bytes = {f.model: int(f.bytes) for f in report.fills}
        return cache


@dataclass(frozen=True)
class LiveSlot:
    """One live slot: the allocation executed, the simulated score and what was measured."""

    steps: np.ndarray
    simulated: SlotOutcome
    measured: SlotOutcome
    wait_s: np.ndarray
    backhaul_s: np.ndarray
    backhaul_up_s: np.ndarray
    psnr_db: np.ndarray
    ssim: np.ndarray
    served_by: tuple[str, ...]
    steps_run: np.ndarray
    unet_calls: np.ndarray
    failure: tuple[str, ...]
    wall_s: float
    gallery: tuple[dict[str, bytes], ...]


class LiveExecutor:
    """The slot executor of the live loop: the users, the edge and the cloud serve the slot."""

    def __init__(
        self,
        users: users_pb2_grpc.UsersStub,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        time_scale: float = 1.0,
        request_timeout_s: float = 120.0,
        gallery_users: int = 0,
        state: LiveState | None = None,
        faults: Faults | None = None,
        before_slot: Callable[[int], None] | None = None,
        edge_health: Callable[[], bool] | None = None,
    ) -> None:
        self.users, self.config, self.catalogue = users, config, catalogue
        self.state = state if state is not None else LiveState()
        self.faults = faults or Faults()
        self.before_slot = before_slot
        self.edge_health = edge_health
        self.radio = RadioParams.from_config(config)
        self.time_scale = time_scale
        self.request_timeout_s = request_timeout_s
        self.gallery_users = gallery_users
        self.episode = 0
        self.last: LiveSlot | None = None

    def allocation_message(
        self, slot: SlotState, simulated: SlotOutcome, steps: np.ndarray
    ) -> users_pb2.SlotAllocation:
        """The slot's allocation as the users receive it: the eq. (2) and eq. (5) rates (as
        the system model computed them for this allocation), the steps and the sizes."""
        catalogue, radio = self.catalogue, self.radio
        users = [
            users_pb2.UserAllocation(
                model=catalogue.names[service],
                steps=int(steps[u]),
                cached=bool(simulated.cached[u]),
                uplink_rate_bps=float(simulated.rate_up_bps[u]),
                downlink_rate_bps=float(simulated.rate_dw_bps[u]),
                input_bytes=math.ceil(slot.input_bits[u] / 8),
                output_bytes=math.ceil(catalogue.output_bits[service] / 8),
            )
            for u, service in enumerate(slot.services)
        ]
        return users_pb2.SlotAllocation(
            episode=self.episode,
            frame=slot.frame,
            slot=slot.slot,
            users=users,
            backhaul_up_rate_bps=radio.backhaul_up_bps,
            backhaul_down_rate_bps=radio.backhaul_down_bps,
            time_scale=self.time_scale,
            gallery_users=self.gallery_users,
            request_timeout_s=self.request_timeout_s,
            relay_to_cloud=self.state.edge_down,
            link_loss=self.faults.link_loss,
        )

    def execute(
        self,
        slot: SlotState,
        cache: np.ndarray,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
    ) -> SlotOutcome:
        steps = integer_steps(step_share, self.radio.total_steps)
        executed_share = steps / self.radio.total_steps
        simulated = score_slot(
            self.radio, self.catalogue, slot, cache, bandwidth_share, executed_share
        )
        index = self.state.slots_served
        if index < self.state.resume_from:
            # a slot the interrupted run finished: the world and the policies replay it
            # (their draws stay in step), the nodes do not serve it again
            self.last = None
            self.state.slots_served += 1
            return simulated
        if self.before_slot is not None:
            self.before_slot(index)  # injected faults strike before the slot
        message = self.allocation_message(slot, simulated, steps)
        start = time.perf_counter()
        try:
            report = self.users.ServeSlot(message, timeout=self.request_timeout_s + 30.0)
        except grpc.RpcError as exc:
            raise NodeDied(
                f"the users' node stopped answering at episode {self.episode}, frame "
                f"{slot.frame}, slot {slot.slot} (slot {index} of the run): {rpc_error_line(exc)}"
            ) from exc
        wall_s = time.perf_counter() - start
        measured, details = self._measured(slot, simulated, steps, report)
        self._watch_edge(details["failure"], index)
        self.state.slots_served += 1
        self.last = LiveSlot(
            steps=steps, simulated=simulated, measured=measured, wall_s=wall_s, **details
        )
        return measured

    def _watch_edge(self, failures: tuple[str, ...], index: int) -> None:
        """After requests failed as unreachable, ask the edge's health: if it does not
        answer, the next slots are relayed straight to the cloud."""
        unreachable = any(f.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")) for f in failures)
        if self.state.edge_down or not unreachable or self.edge_health is None:
            return
        if not self.edge_health():
            self.state.edge_down = True
            self.state.events.append({"slot": index, "event": "edge down: relaying to the cloud"})

    def _measured(
        self,
        slot: SlotState,
        simulated: SlotOutcome,
        steps: np.ndarray,
        report: users_pb2.SlotReport,
    ) -> tuple[SlotOutcome, dict]:
        """Eqs. (9), (10), (23) on what the users measured."""
        radio = self.radio
        reports = list(report.users)
        if len(reports) != len(slot.services):
            raise RuntimeError(
                f"the users' node reported {len(reports)} users, the slot has {len(slot.services)}"
            )
        failed = np.array([bool(r.failure) for r in reports])
        a2 = self.catalogue.a2_tv[slot.services]

        def column(name: str) -> np.ndarray:
            return np.array([getattr(r, name) for r in reports], dtype=float)

        up_s = np.where(failed, radio.delay_cap_s, column("uplink_s"))
        dw_s = np.where(failed, 0.0, column("downlink_s"))
        gen_s = np.where(failed, 0.0, column("generation_s"))
        total_s = up_s + dw_s + gen_s  # eq. (9)
        tv = np.where(failed, a2, column("tv"))
        g = utility(total_s, tv, radio.alpha)  # eq. (10)
        measured = SlotOutcome(
            cached=simulated.cached,
            steps=steps.astype(float),
            rate_up_bps=simulated.rate_up_bps,
            rate_dw_bps=simulated.rate_dw_bps,
            up_s=up_s,
            dw_s=dw_s,
            gen_s=gen_s,
            total_s=total_s,
            tv=tv,
            utility=g,
            violation=total_s > radio.slot_duration_s,
            reward=slot_reward(g, total_s, radio.slot_duration_s, radio.slot_penalty),
        )
        details = {
            "wait_s": np.where(failed, 0.0, column("wait_s")),
            "backhaul_s": np.where(failed, 0.0, column("backhaul_s")),
            "backhaul_up_s": np.where(failed, 0.0, column("backhaul_up_s")),
            "psnr_db": np.where(failed, np.nan, column("psnr_db")),
            "ssim": np.where(failed, np.nan, column("ssim")),
            "served_by": tuple(r.served_by for r in reports),
            "steps_run": np.array([r.steps_run for r in reports], dtype=int),
            "unet_calls": np.array([r.unet_calls for r in reports], dtype=int),
            "failure": tuple(r.failure for r in reports),
            "gallery": tuple(
                {"upload": r.upload_png, "output": r.output_png, "truth": r.truth_png}
                for r in reports
                if r.output_png
            ),
        }
        return measured, details


class EpisodeTracker(Hooks):
    """Keeps the live executor's episode number in step with the driver."""

    def __init__(self, executor: LiveExecutor) -> None:
        self.executor = executor

    def on_episode_start(self, episode: int) -> None:
        self.executor.episode = episode


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
    env: dict[str, str] | None = None,
    security: Security | None = None,
) -> NodeProcess:
    """Start ``python -m testbed.cli <command> --listen <listen>``; returns once the node
    has printed its address and answers SERVING (its stderr goes to ``log_path``)."""
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
        text=True,
        preexec_fn=_die_with_parent,
        env={**os.environ, **(env or {})},  # the token travels here, never on a command line
    )
    log_file.close()  # the child holds its own descriptor
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on ") or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"the {name} node did not start; see {log_path}")
    address = line.removeprefix("listening on ").strip()
    wait_until_serving(address, timeout_s=max(1.0, deadline - time.monotonic()), security=security)
    node = NodeProcess(name, tuple(command), log_path, process, address)
    node.rss_start_mb = rss_mb(process.pid)
    return node


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
        security_flags: Sequence[str] = (),
        security_env: dict[str, str] | None = None,
        security: Security | None = None,
    ) -> None:
        self.logs, self.timeout_s = logs, timeout_s
        self.security, self.security_env = security, security_env or {}
        common = ["--config", str(config_path), *security_flags]
        self.engine = [*(["--device", device] if device else []), "--threads", str(threads)]
        self.common = common
        self.nodes: dict[str, NodeProcess] = {}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._start("cloud", ["cloud-node", *self.common, *self.engine])
        cloud = self.nodes["cloud"].address
        self._start("edge", ["edge-node", *self.common, *self.engine, "--cloud", cloud])
        edge = self.nodes["edge"].address
        self._start("users", ["ue-emulator", *self.common, "--edge", edge, "--cloud", cloud])

    def _start(self, name: str, command: list[str], listen: str = "127.0.0.1:0") -> None:
        self.nodes[name] = start_node(
            command,
            name,
            self.logs / f"{name}.log",
            self.timeout_s,
            listen,
            self.security_env,
            self.security,
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


def serving(address: str, timeout_s: float = 3.0, security: Security | None = None) -> bool:
    """Whether the node at ``address`` answers its health check SERVING within ``timeout_s``."""
    try:
        wait_until_serving(address, timeout_s=timeout_s, security=security)
    except TimeoutError:
        return False
    return True


def stubs(users_address: str, edge_address: str, security: Security | None = None):
    """Channels and stubs of the users' node and the edge."""
    users_channel = channel(users_address, security)
    edge_channel = channel(edge_address, security)
    return (
        (users_channel, edge_channel),
        users_pb2_grpc.UsersStub(users_channel),
        edge_pb2_grpc.EdgeStub(edge_channel),
    )


def rpc_error_line(exc: grpc.RpcError) -> str:
    """``CODE: details`` of a failed call."""
    return f"{exc.code().name}: {exc.details()}"


def live_rows(step: SlotStep, live: LiveSlot, catalogue: ModelCatalogue) -> dict[str, np.ndarray]:
    """The live trace columns of one slot: the simulator's, then the measured ones."""
    rows = slot_rows(
        step.episode, step.slot, catalogue, step.bandwidth_share, step.step_share, live.simulated
    )
    measured = live.measured
    rows.update(
        {
            "measured_D_up_s": measured.up_s,
            "measured_D_dw_s": measured.dw_s,
            "measured_D_gt_s": measured.gen_s,
            "measured_wait_s": live.wait_s,
            "measured_D_bh_s": live.backhaul_s,
            "measured_D_bh_up_s": live.backhaul_up_s,
            "measured_D_tl_s": measured.total_s,
            "measured_tv": measured.tv,
            "measured_psnr": live.psnr_db,
            "measured_ssim": live.ssim,
            "measured_G": measured.utility,
            "measured_violation": measured.violation,
            "served_by": np.array(live.served_by, dtype=object),
            "steps_run": live.steps_run,
            "unet_calls": live.unet_calls,
            "failure": np.array(live.failure, dtype=object),
        }
    )
    return rows


class LiveRecorder(Hooks):
    """The live run's trace (one Parquet part per slot), per-slot metrics and gallery."""

    def __init__(
        self,
        executor: LiveExecutor,
        writer: TraceWriter,
        recorder: Recorder,
        catalogue: ModelCatalogue,
        gallery_dir: Path | None,
    ) -> None:
        self.executor, self.writer, self.recorder = executor, writer, recorder
        self.catalogue, self.gallery_dir = catalogue, gallery_dir
        self.slots = 0
        self.gallery: list[dict[str, object]] = []
        self._last_end: float | None = None

    def on_slot(self, step: SlotStep) -> None:
        live = self.executor.last
        if live is None:
            return  # a replayed slot of a resumed run: already in the trace
        self.writer.add(live_rows(step, live, self.catalogue))
        self.writer.flush()  # slot by slot: a stopped run keeps every finished slot
        self.recorder.record_many(
            {
                "slot": self.slots,
                "episode": step.episode,
                "frame": step.slot.frame,
                "simulated_utility": float(live.simulated.utility.mean()),
                "measured_utility": float(live.measured.utility.mean()),
                "hit_ratio": float(live.measured.cached.mean()),
                "simulated_violation_rate": float(live.simulated.violation.mean()),
                "measured_violation_rate": float(live.measured.violation.mean()),
                "failures": sum(bool(f) for f in live.failure),
                "slot_wall_s": live.wall_s,
                "loop_wall_s": self._loop_wall_s(),
                "decision_ms": 1e3 * step.decision_s,
            }
        )
        self.recorder.dump(step=self.slots)
        if self.gallery_dir is not None:
            for user, images in enumerate(live.gallery):
                self._keep_gallery(step, live, user, images)
        self.slots += 1

    def _loop_wall_s(self) -> float:
        """Wall seconds since the previous slot ended (the controller's work included);
        NaN for a frame's first slot, whose cache decision and fills come first."""
        now = time.perf_counter()
        wall = now - self._last_end if self._last_end is not None else math.nan
        self._last_end = now
        return wall

    def on_frame_end(self, step: FrameStep) -> None:
        self._last_end = None  # the next frame starts with its cache decision

    def _keep_gallery(self, step: SlotStep, live: LiveSlot, user: int, images) -> None:
        assert self.gallery_dir is not None
        stem = f"e{step.episode}_f{step.slot.frame}_s{step.slot.slot}_u{user}"
        entry: dict[str, object] = {
            "stem": stem,
            "model": self.catalogue.names[step.slot.services[user]],
            "steps_run": int(live.steps_run[user]),
            "served_by": live.served_by[user],
            "tv": float(live.measured.tv[user]),
            "psnr_db": float(live.psnr_db[user]),
        }
        for kind, data in images.items():
            (self.gallery_dir / f"{stem}_{kind}.png").write_bytes(data)
        self.gallery.append(entry)


SLOT_COLUMNS = (
    "slot",
    "episode",
    "frame",
    "simulated_utility",
    "measured_utility",
    "hit_ratio",
    "simulated_violation_rate",
    "measured_violation_rate",
    "failures",
    "slot_wall_s",
    "loop_wall_s",
    "decision_ms",
)


def run_live(
    config: ScenarioConfig,
    catalogue: ModelCatalogue,
    caching: CachingPolicy,
    allocation: AllocationPolicy,
    users_address: str,
    edge_address: str,
    out: Path,
    episodes: int = 1,
    time_scale: float = 1.0,
    request_timeout_s: float = 120.0,
    gallery_users: int = 2,
    progress: bool = False,
    hooks: Sequence[Hooks] = (),
    faults: Faults | None = None,
    supervisor: NodeSupervisor | None = None,
    restart_nodes: bool = False,
    resume_from: int = 0,
    security: Security | None = None,
) -> dict[str, object]:
    """Play ``episodes`` live episodes against running nodes; write the trace, metrics and
    gallery into ``out``; returns what the run did (wall time, slots, the frames' cache
    fills, the gallery). ``hooks`` see the loop too (e.g. a benchmark's clock)."""
    faults = faults or Faults()
    channels, users, edge = stubs(users_address, edge_address, security)
    state = LiveState(resume_from=resume_from)

    def inject(index: int) -> None:
        for name, at in (("edge", faults.edge_kill_slot), ("cloud", faults.cloud_kill_slot)):
            if at == index and supervisor is not None:
                supervisor.kill(name)
                state.events.append({"slot": index, "event": f"{name} killed (injected)"})

    def restart_edge() -> None:
        assert supervisor is not None
        supervisor.restart("edge")

    executor = LiveExecutor(
        users,
        config,
        catalogue,
        time_scale,
        request_timeout_s,
        gallery_users,
        state=state,
        faults=faults,
        before_slot=inject,
        edge_health=lambda: serving(edge_address, security=security),
    )
    live_caching = LiveCaching(
        caching,
        edge,
        catalogue,
        config,
        time_scale,
        state=state,
        edge_health=lambda: serving(edge_address, security=security),
        restart_edge=restart_edge if restart_nodes and supervisor is not None else None,
        link_loss=faults.link_loss,
    )
    driver = FrameSlotDriver(
        RemoteWorld(users),
        executor,
        frames=config.timing.num_frames,
        slots=config.timing.slots_per_frame,
        size_gb=catalogue.size_gb,
        capacity_gb=config.catalogue.cache_capacity_gb,
        frame_penalty=config.utility.frame_penalty,
    )
    gallery_dir = out / "gallery"
    gallery_dir.mkdir(parents=True, exist_ok=True)
    writer = TraceWriter(out / "trace.parquet", schema=LIVE_TRACE_SCHEMA, first_part=resume_from)
    total = episodes * config.timing.num_frames * config.timing.slots_per_frame
    recorder = Recorder(
        out,
        SLOT_COLUMNS,
        tensorboard=False,
        resume_step=resume_from if resume_from else None,
        progress=ProgressSpec(
            total=total,
            initial=resume_from,
            unit="slot",
            postfix={"measured": "{measured_utility:.2f}", "simulated": "{simulated_utility:.2f}"},
            enabled=progress,
        ),
    )
    hook = LiveRecorder(executor, writer, recorder, catalogue, gallery_dir)
    hook.slots = resume_from  # the finished slots an interrupted run left
    start = time.perf_counter()
    ended_early = ""
    try:
        driver.play_evaluation(
            episodes,
            live_caching,
            allocation,
            config.seed,
            hooks=(EpisodeTracker(executor), hook, *hooks),
        )
    except NodeDied as exc:  # the run ends cleanly: every finished slot is kept
        ended_early = str(exc)
        state.events.append({"slot": state.slots_served, "event": ended_early})
    finally:
        recorder.close()
        writer.close()
        for chan in channels:
            chan.close()
    return {
        "wall_s": time.perf_counter() - start,
        "slots": hook.slots,
        "frames": [asdict(f) for f in live_caching.frames],
        "gallery": hook.gallery,
        "caching_policy": caching.name,
        "allocation_policy": allocation.name,
        "events": state.events,
        "ended_early": ended_early,
        "faults": asdict(faults),
        "node_memory": supervisor.memory_mb() if supervisor is not None else {},
    }

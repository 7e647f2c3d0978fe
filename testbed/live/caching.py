"""Each frame's cache decision, applied by the edge: it evicts and fills the missing models
by streaming their weights from the cloud."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.protocols import CachingPolicy
from testbed.core.records import FrameState
from testbed.core.system_model import cache_fits, greedy_cache
from testbed.live.options import LiveOptions
from testbed.live.state import LiveState
from testbed.live.world import rpc_error_line
from testbed.proto import edge_pb2, edge_pb2_grpc

CACHE_APPLY_DEADLINE_S = 600.0
"""Deadline of the edge applying one frame's cache decision: its fills stream real weights
over the backhaul."""


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
        options: LiveOptions,
        state: LiveState,
    ) -> None:
        self.policy, self.edge, self.catalogue, self.state = policy, edge, catalogue, state
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.backhaul_down_bps = config.network.backhaul_down_rate_bps
        self.slots_per_frame = config.timing.slots_per_frame
        self.time_scale = options.time_scale
        self.link_loss = options.faults.link_loss
        self.name = policy.name
        self.frames: list[FrameLog] = []

    def reset(self, seed: np.random.SeedSequence) -> None:
        self.policy.reset(seed)

    def select_cache(self, frame: FrameState) -> np.ndarray:
        wanted = np.asarray(self.policy.select_cache(frame), dtype=bool)
        cache = self._fitting(wanted)
        self.state.restart_edge_if_down()
        if self.state.replays_frame(self.slots_per_frame):
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
        return self._apply(frame, cache, log_entry)

    def _fitting(self, wanted: np.ndarray) -> np.ndarray:
        """``wanted``, or its greedy trim in index order when it breaks (11d)."""
        if cache_fits(wanted, self.catalogue.size_gb, self.capacity_gb):
            return wanted
        order = -np.arange(len(wanted), dtype=float) + np.where(wanted, 1e6, 0.0)
        return greedy_cache(order, self.catalogue.size_gb, self.capacity_gb) & wanted

    def _apply(self, frame: FrameState, cache: np.ndarray, log_entry: FrameLog) -> np.ndarray:
        """Have the edge hold ``cache``; returns what it holds as far as the controller knows."""
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
                timeout=CACHE_APPLY_DEADLINE_S,
            )
        except grpc.RpcError as exc:
            log_entry.failure = rpc_error_line(exc)
            if self.state.check_edge(f"edge down ({log_entry.failure})"):
                return np.zeros_like(cache)
            # the edge answers but its fills failed (the cloud is down): it holds what it
            # could; the requests for the rest reach the cloud and fail with their status
            return cache
        log_entry.applied = tuple(report.cached)
        log_entry.fills = {f.model: f.fill_s for f in report.fills}
        log_entry.fill_bytes = {f.model: int(f.bytes) for f in report.fills}
        return cache

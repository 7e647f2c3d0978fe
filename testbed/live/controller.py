"""The live testbed's controller: the base station's agent host, driving real nodes.

The controller plays the one frame/slot driver (``testbed.sim.driver``) with the nodes in
place of the system model:

* the world is the users' node (:class:`~testbed.live.world.RemoteWorld`: the same world
  code and seed as ``testbed simulate``, drawn over gRPC);
* each frame's cache goes to the edge (:class:`~testbed.live.caching.LiveCaching`), which
  evicts and fills missing models by streaming their weights from the cloud;
* each slot's allocation goes to the users (:class:`~testbed.live.executor.LiveExecutor`),
  who upload real corrupted images paced at their eq. (2) rates; the edge runs RePaint
  with the allocated integer steps (or forwards to the cloud), replies paced at eq. (5),
  and the users score what comes back against the ground truth they keep.

Every slot is scored twice, measured and simulated (``testbed.live.executor``). What the
controller knows of the nodes between slots has one owner, :class:`~testbed.live.state.
LiveState`; a resumed run's first unfinished slot is its :class:`~testbed.live.resume.
ResumePoint`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.core.protocols import AllocationPolicy, CachingPolicy, Hooks
from testbed.live.caching import LiveCaching
from testbed.live.executor import EpisodeTracker, LiveExecutor
from testbed.live.faults import FaultInjector
from testbed.live.nodes import NodeAddresses, NodeSecurity, NodeSupervisor, stubs
from testbed.live.options import LiveOptions
from testbed.live.recording import LiveRecorder, open_outputs
from testbed.live.resume import ResumePoint
from testbed.live.state import LiveState
from testbed.live.world import NodeDied, RemoteWorld
from testbed.sim.driver import FrameSlotDriver
from testbed.sim.policies import make_policies


@dataclass(frozen=True)
class LivePlan:
    """A checked live run: its options, its scenario, the security they read and the
    policies they build (made, and their checkpoints verified, before anything is
    written)."""

    options: LiveOptions
    config: ScenarioConfig
    catalogue: ModelCatalogue
    security: NodeSecurity
    caching: CachingPolicy
    allocation: AllocationPolicy

    @classmethod
    def build(cls, options: LiveOptions, config: ScenarioConfig) -> LivePlan:
        """Check ``options``, read the security's files, build the policies."""
        options.check()
        security = NodeSecurity.of(options.security)
        catalogue = build_catalogue(config.catalogue)
        caching, allocation = make_policies(options.policy, config, catalogue, options.checkpoint)
        return cls(options, config, catalogue, security, caching, allocation)

    @property
    def total_slots(self) -> int:
        timing = self.config.timing
        return self.options.episodes * timing.num_frames * timing.slots_per_frame


def run_live(
    plan: LivePlan,
    out: Path,
    nodes: NodeAddresses,
    supervisor: NodeSupervisor | None = None,
    resume: ResumePoint | None = None,
    hooks: Sequence[Hooks] = (),
) -> dict[str, object]:
    """Play ``plan`` against the running ``nodes`` (started by ``supervisor``, if any: it
    kills and restarts them as the faults ask); write the trace, metrics and gallery into
    ``out``, continuing a killed run from ``resume``; returns what the run did (wall time,
    slots, the frames' cache fills, the gallery, the node events). ``hooks`` see the loop
    too (e.g. a benchmark's clock)."""
    options, config, catalogue = plan.options, plan.config, plan.catalogue
    resume = resume if resume is not None else ResumePoint()
    state = LiveState(resume, nodes, supervisor, restart_edge=options.restart_nodes)
    channels, users, edge = stubs(nodes)
    injector = FaultInjector(options.faults, supervisor, state)
    executor = LiveExecutor(users, config, catalogue, options, state, injector)
    caching = LiveCaching(plan.caching, edge, catalogue, config, options, state)
    gallery_dir = out / "gallery"
    gallery_dir.mkdir(parents=True, exist_ok=True)
    writer, recorder = open_outputs(out, resume, plan.total_slots, options.progress)
    hook = LiveRecorder(executor, writer, recorder, catalogue, gallery_dir)
    start = time.perf_counter()
    ended_early = ""
    try:
        _driver(config, catalogue, RemoteWorld(users), executor).play_evaluation(
            options.episodes,
            caching,
            plan.allocation,
            config.seed,
            hooks=(EpisodeTracker(executor), hook, *hooks),
        )
    except NodeDied as exc:  # the run ends cleanly: every finished slot is kept
        ended_early = str(exc)
        state.record(ended_early)
    finally:
        recorder.close()
        writer.close()
        for chan in channels:
            chan.close()
    return {
        "wall_s": time.perf_counter() - start,
        "slots": state.slots_finished,
        "frames": [asdict(f) for f in caching.frames],
        "gallery": hook.gallery,
        "caching_policy": plan.caching.name,
        "allocation_policy": plan.allocation.name,
        "events": state.events,
        "ended_early": ended_early,
        "faults": asdict(options.faults),
        "node_memory": supervisor.memory_mb() if supervisor is not None else {},
    }


def _driver(
    config: ScenarioConfig, catalogue: ModelCatalogue, world: RemoteWorld, executor: LiveExecutor
) -> FrameSlotDriver:
    """The frame/slot driver of ``config``: the users' node's world, the nodes serving."""
    return FrameSlotDriver(
        world,
        executor,
        frames=config.timing.num_frames,
        slots=config.timing.slots_per_frame,
        size_gb=catalogue.size_gb,
        capacity_gb=config.catalogue.cache_capacity_gb,
        frame_penalty=config.utility.frame_penalty,
    )

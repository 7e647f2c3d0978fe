"""The live slot executor: the users, the edge and the cloud serve each slot, and the slot
is scored twice through the same eqs. (10) and (23).

**Measured** is what happened (the delays and the quality the users measured, in the
catalogue's ``quality_metric``; what the policies
and the metrics see); **simulated** is the system model with the scenario's calibration
profile on the same world and the same actions, with the integer steps the edge ran. A
failed request (a node down, a deadline missed, a user without bandwidth) counts like a
starved user of the simulator: its delay is ``delay_cap_s`` and its quality the no-step
A2 of eq. (7), so it breaks (11h).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import grpc
import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.protocols import Hooks
from testbed.core.records import SlotOutcome, SlotState
from testbed.core.system_model import RadioParams, round_steps, score_slot, slot_reward, utility
from testbed.live.faults import FaultInjector
from testbed.live.options import LiveOptions
from testbed.live.state import LiveState
from testbed.live.world import NodeDied, rpc_error_line
from testbed.proto import users_pb2, users_pb2_grpc

SERVE_SLOT_SLACK_S = 30.0
"""A slot's deadline beyond one request's: the users' node reports after its last user."""


@dataclass(frozen=True)
class LiveSlot:
    """One live slot: the allocation executed, the simulated score and what was measured."""

    index: int
    """The slot of the run (counted over the whole run from 0)."""
    steps: np.ndarray
    simulated: SlotOutcome
    measured: SlotOutcome
    wait_s: np.ndarray
    backhaul_s: np.ndarray
    backhaul_up_s: np.ndarray
    tv: np.ndarray
    """TV of each output as its user measured it (NaN for a failed user)."""
    hole_mae: np.ndarray
    """Hole MAE (% of range) of each output as its user measured it (NaN for a failed user)."""
    psnr_db: np.ndarray
    ssim: np.ndarray
    served_by: tuple[str, ...]
    steps_run: np.ndarray
    unet_calls: np.ndarray
    failure: tuple[str, ...]
    wall_s: float
    gallery: tuple[dict[str, bytes], ...]


class LiveExecutor:
    """The slot executor of the live loop: the users, the edge and the cloud serve the slot.

    After each served slot :attr:`last` holds it; after a replayed one (a resumed run's
    finished slot, scored by the system model only) it is None.
    """

    def __init__(
        self,
        users: users_pb2_grpc.UsersStub,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        options: LiveOptions,
        state: LiveState,
        injector: FaultInjector,
    ) -> None:
        self.users, self.config, self.catalogue = users, config, catalogue
        self.options, self.state, self.injector = options, state, injector
        self.link_loss = options.faults.link_loss
        self.radio = RadioParams.from_config(config)
        self.episode = 0
        self.last: LiveSlot | None = None

    def allocation_message(
        self, slot: SlotState, simulated: SlotOutcome, steps: np.ndarray
    ) -> users_pb2.SlotAllocation:
        """The slot's allocation as the users receive it: the eq. (2) and eq. (5) rates (as
        the system model computed them for this allocation), the steps and the sizes."""
        catalogue, radio, options = self.catalogue, self.radio, self.options
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
            time_scale=options.time_scale,
            gallery_users=options.gallery_users,
            request_timeout_s=options.request_timeout_s,
            relay_to_cloud=self.state.edge_down,
            link_loss=self.link_loss,
        )

    def execute(
        self,
        slot: SlotState,
        cache: np.ndarray,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
    ) -> SlotOutcome:
        steps = round_steps(step_share, self.radio.total_steps)
        executed_share = steps / self.radio.total_steps
        simulated = score_slot(
            self.radio, self.catalogue, slot, cache, bandwidth_share, executed_share
        )
        self.last = None
        if self.state.replays_slot():
            self.state.slot_played()
            return simulated
        index = self.state.slot
        self.injector.before_slot(index)  # injected faults strike before the slot
        message = self.allocation_message(slot, simulated, steps)
        start = time.perf_counter()
        try:
            timeout_s = self.options.request_timeout_s + SERVE_SLOT_SLACK_S
            report = self.users.ServeSlot(message, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise NodeDied(
                f"the users' node stopped answering at episode {self.episode}, frame "
                f"{slot.frame}, slot {slot.slot} (slot {index} of the run): {rpc_error_line(exc)}"
            ) from exc
        wall_s = time.perf_counter() - start
        measured, details = self._measured(slot, simulated, steps, report)
        self._watch_edge(details["failure"])
        self.state.slot_played()
        self.last = LiveSlot(
            index=index,
            steps=steps,
            simulated=simulated,
            measured=measured,
            wall_s=wall_s,
            **details,
        )
        return measured

    def _watch_edge(self, failures: tuple[str, ...]) -> None:
        """After requests failed as unreachable, ask the edge's health: if it does not
        answer, the next slots are relayed straight to the cloud."""
        if any(f.startswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")) for f in failures):
            self.state.check_edge("edge down: relaying to the cloud")

    def _measured(
        self,
        slot: SlotState,
        simulated: SlotOutcome,
        steps: np.ndarray,
        report: users_pb2.SlotReport,
    ) -> tuple[SlotOutcome, dict]:
        """Eqs. (9), (10), (23) on what the users measured; the slot's other measurements."""
        radio = self.radio
        reports = list(report.users)
        if len(reports) != len(slot.services):
            raise RuntimeError(
                f"the users' node reported {len(reports)} users, the slot has {len(slot.services)}"
            )
        failed = np.array([bool(r.failure) for r in reports])

        def column(name: str, failed_value: float = 0.0) -> np.ndarray:
            return np.where(failed, failed_value, [getattr(r, name) for r in reports])

        up_s = column("uplink_s", radio.delay_cap_s)
        dw_s, gen_s = column("downlink_s"), column("generation_s")
        total_s = up_s + dw_s + gen_s  # eq. (9)
        metric = self.catalogue.quality_metric  # a UserReport field of the same name
        quality = np.where(failed, self.catalogue.a2_quality[slot.services], column(metric))
        g = utility(total_s, quality, radio.alpha)  # eq. (10)
        measured = SlotOutcome(
            cached=simulated.cached,
            steps=steps.astype(float),
            rate_up_bps=simulated.rate_up_bps,
            rate_dw_bps=simulated.rate_dw_bps,
            up_s=up_s,
            dw_s=dw_s,
            gen_s=gen_s,
            total_s=total_s,
            quality=quality,
            utility=g,
            violation=total_s > radio.slot_duration_s,
            reward=slot_reward(g, total_s, radio.slot_duration_s, radio.slot_penalty),
        )
        details = {
            "wait_s": column("wait_s"),
            "backhaul_s": column("backhaul_s"),
            "backhaul_up_s": column("backhaul_up_s"),
            "tv": column("tv", np.nan),
            "hole_mae": column("hole_mae", np.nan),
            "psnr_db": column("psnr_db", np.nan),
            "ssim": column("ssim", np.nan),
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

"""What a live run writes as it goes: the trace (one Parquet part per slot), the per-slot
metrics (``metrics.csv``) and the gallery of kept images."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from testbed.core.config import ModelCatalogue
from testbed.core.protocols import Hooks
from testbed.core.records import FrameStep, SlotStep
from testbed.live.executor import LiveExecutor, LiveSlot
from testbed.live.resume import ResumePoint
from testbed.runs.recorder import ProgressSpec, Recorder
from testbed.runs.traces import LIVE_TRACE_SCHEMA, TraceWriter, slot_rows

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
"""The columns of a live run's ``metrics.csv``: one row per served slot."""


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
            "measured_quality": measured.quality,
            "measured_tv": live.tv,
            "measured_hole_mae": live.hole_mae,
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


def open_outputs(
    out: Path, resume: ResumePoint, total_slots: int, progress: bool
) -> tuple[TraceWriter, Recorder]:
    """The trace writer and the metrics recorder of a live run in ``out``; a resumed run's
    finished slots (``resume``) are kept and continued after."""
    writer = TraceWriter(
        out / "trace.parquet", schema=LIVE_TRACE_SCHEMA, first_part=resume.first_slot
    )
    recorder = Recorder(
        out,
        SLOT_COLUMNS,
        tensorboard=False,
        resume_step=resume.first_slot if resume.resumes else None,
        progress=ProgressSpec(
            total=total_slots,
            initial=resume.first_slot,
            unit="slot",
            postfix={"measured": "{measured_utility:.2f}", "simulated": "{simulated_utility:.2f}"},
            enabled=progress,
        ),
    )
    return writer, recorder


class LiveRecorder(Hooks):
    """Writes each served slot as it ends: its trace part, its metrics row, its gallery."""

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
        self.gallery: list[dict[str, object]] = []
        self._last_end: float | None = None

    def on_slot(self, step: SlotStep) -> None:
        live = self.executor.last
        if live is None:
            return  # no slot served (a replayed one): nothing new to write
        self.writer.add(live_rows(step, live, self.catalogue))
        self.writer.flush()  # slot by slot: a stopped run keeps every finished slot
        self.recorder.record_many(
            {
                "slot": live.index,
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
        self.recorder.dump(step=live.index)
        if self.gallery_dir is not None:
            for user, images in enumerate(live.gallery):
                self._keep_gallery(step, live, user, images)

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
            "quality": float(live.measured.quality[user]),
            "tv": float(live.tv[user]),
            "hole_mae": float(live.hole_mae[user]),
            "psnr_db": float(live.psnr_db[user]),
        }
        for kind, data in images.items():
            (self.gallery_dir / f"{stem}_{kind}.png").write_bytes(data)
        self.gallery.append(entry)

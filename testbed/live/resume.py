"""Where a live run starts: the one resume point of ``testbed run --resume``.

A live run keeps every finished slot: one trace part and one metrics row each, written as
the slot ends. A run whose controller was killed continues from its first unfinished slot:
the world and the policies replay the slots before it (their draws stay in step) and the
nodes serve the rest. :class:`ResumePoint` is what every part of the loop asks (the
caching, the executor through :class:`~testbed.live.state.LiveState`, the trace writer and
the recorder through :mod:`testbed.live.recording`); :func:`resume_run` reads it, with the
stored options and scenario, from the run folder. A torn trace part (a file cut short) ends
the finished slots there, as a part without its metrics row does: it is served again. A
finished run (its summary written, every slot done) is not resumed: nothing is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from testbed.core.config import ScenarioConfig
from testbed.live.options import LiveOptions
from testbed.runs.folder import CONFIG, LIVE, RunFolder
from testbed.runs.traces import torn_part, trace_parts

log = logging.getLogger("testbed")

TRACE = "trace.parquet"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
"""A live run's summary, written once the run ended: a run that has it and every slot done
is finished."""


@dataclass(frozen=True)
class ResumePoint:
    """The first slot of the run (counted over the whole run from 0) the nodes serve."""

    first_slot: int = 0

    @property
    def resumes(self) -> bool:
        """Whether slots of an interrupted run are kept (and replayed, not served)."""
        return self.first_slot > 0

    def replays_slot(self, slot: int) -> bool:
        """Whether ``slot`` of the run was finished by the interrupted run."""
        return slot < self.first_slot

    @classmethod
    def of(cls, folder: RunFolder) -> ResumePoint:
        """The first unfinished slot of the run in ``folder``: a slot is finished once its
        trace part and its metrics row are both on disk."""
        parts = trace_parts(folder / TRACE)
        return cls(min(len(parts), _complete_rows(folder / METRICS)))

    def before_torn_part(self, folder: RunFolder) -> ResumePoint:
        """This point, or the first torn trace part before it (which is dropped with the
        unfinished ones, saying so in one line): its slot is served again."""
        parts = trace_parts(folder / TRACE)[: self.first_slot]
        torn = torn_part(parts)
        if torn is None:
            return self
        log.warning(
            "%s is torn (not a readable Parquet file): dropped with the %d parts after it; "
            "the run continues from slot %d",
            parts[torn],
            len(trace_parts(folder / TRACE)) - torn - 1,
            torn,
        )
        return ResumePoint(torn)

    def drop_unfinished(self, folder: RunFolder) -> None:
        """Delete the trace parts from the first unfinished slot on: a part written without
        its metrics row (the controller died between the two) is served again, so at most
        the slot in flight is lost."""
        for part in trace_parts(folder / TRACE)[self.first_slot :]:
            part.unlink()


@dataclass(frozen=True)
class LiveResume:
    """What ``testbed run --resume DIR`` continues: the folder, its stored options and
    scenario, and its first unfinished slot."""

    folder: RunFolder
    options: LiveOptions
    config: ScenarioConfig
    point: ResumePoint

    @property
    def total_slots(self) -> int:
        timing = self.config.timing
        return self.options.episodes * timing.num_frames * timing.slots_per_frame

    @property
    def finished(self) -> bool:
        """Whether the run ended: its summary is written and every slot is done."""
        return self.folder.has(SUMMARY) and self.point.first_slot >= self.total_slots

    def finished_line(self) -> str:
        return (
            f"{self.folder.path}: the run is finished ({self.total_slots} slots, {SUMMARY} "
            "written); nothing to resume, nothing changed"
        )


def resume_run(path: str | Path, current: LiveOptions) -> LiveResume:
    """The killed run in ``path`` with its stored options (``live.json``) and scenario
    (``config.toml``). Of ``current`` (this command's options) only what the folder does
    not store is kept: the progress bar, the node start timeout and the security. Nothing
    is written here."""
    folder = RunFolder(path)
    folder.require(LIVE, CONFIG, command="run")
    options = current.stored_in(folder)
    point = ResumePoint.of(folder).before_torn_part(folder)
    return LiveResume(folder, options, folder.read_scenario(), point)


def _complete_rows(metrics: Path) -> int:
    """The data rows of ``metrics.csv`` written whole (a row cut short is not finished)."""
    if not metrics.is_file():
        return 0
    lines = metrics.read_bytes().splitlines(keepends=True)[1:]
    return sum(1 for line in lines if line.endswith(b"\n"))

"""Where a live run starts: the one resume point of ``testbed run --resume``.

A live run keeps every finished slot: one trace part and one metrics row each, written as
the slot ends. A run whose controller was killed continues from its first unfinished slot:
the world and the policies replay the slots before it (their draws stay in step) and the
nodes serve the rest. :class:`ResumePoint` is what every part of the loop asks (the
caching, the executor through :class:`~testbed.live.state.LiveState`, the trace writer and
the recorder through :mod:`testbed.live.recording`); :func:`resume_run` reads it, with the
stored options and scenario, from the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from testbed.core.config import ScenarioConfig
from testbed.live.options import LiveOptions
from testbed.runs.folder import CONFIG, LIVE, RunFolder
from testbed.runs.traces import trace_parts

TRACE = "trace.parquet"
METRICS = "metrics.csv"


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
        metrics = folder / METRICS
        rows = len(pd.read_csv(metrics)) if metrics.is_file() and metrics.stat().st_size else 0
        return cls(min(len(parts), rows))

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


def resume_run(path: str | Path, current: LiveOptions) -> LiveResume:
    """The killed run in ``path`` with its stored options (``live.json``) and scenario
    (``config.toml``). Of ``current`` (this command's options) only what the folder does
    not store is kept: the progress bar, the node start timeout and the security. Nothing
    is written here."""
    folder = RunFolder(path)
    folder.require(LIVE, CONFIG, command="run")
    options = current.stored_in(folder)
    return LiveResume(folder, options, folder.read_scenario(), ResumePoint.of(folder))

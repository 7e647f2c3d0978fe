"""Traces: one row per user per slot, written to Parquet as the run goes.

A trace is a folder of Parquet part files, ``trace.parquet/part-00000.parquet``, ...; read
it back as one table with ``pandas.read_parquet("trace.parquet")`` (or :func:`read_trace`).
Rows are buffered column-wise and written as one part at every :meth:`TraceWriter.flush`
(the runner flushes after each episode, and the writer by itself once ``flush_rows`` rows
are pending). Each part is written whole under a hidden temporary name and then renamed
into place, so whatever stops the run (Ctrl-C, SIGTERM, even SIGKILL) leaves a readable
trace holding every flushed part: every finished episode.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from testbed.core.config import ModelCatalogue
from testbed.core.records import SlotOutcome, SlotState
from testbed.runs.interrupts import DeferredInterrupt

TRACE_SCHEMA = pa.schema(
    [
        ("episode", pa.int32()),
        ("frame", pa.int32()),
        ("slot", pa.int32()),
        ("user", pa.int32()),
        ("gamma", pa.float64()),
        ("loc_state", pa.int8()),
        ("distance_m", pa.float64()),
        ("channel_gain", pa.float64()),
        ("service", pa.int16()),
        ("d_in_bits", pa.float64()),
        ("d_op_bits", pa.float64()),
        ("cached", pa.bool_()),
        ("b", pa.float64()),
        ("xi", pa.float64()),
        ("steps", pa.float64()),
        ("A1", pa.float64()),
        ("A2", pa.float64()),
        ("A3", pa.float64()),
        ("A4", pa.float64()),
        ("B1", pa.float64()),
        ("B2", pa.float64()),
        ("D_up_s", pa.float64()),
        ("D_dw_s", pa.float64()),
        ("D_gt_s", pa.float64()),
        ("D_tl_s", pa.float64()),
        ("quality", pa.float64()),
        ("G", pa.float64()),
        ("violation", pa.bool_()),
        ("reward", pa.float64()),
    ]
)
TRACE_COLUMNS = tuple(TRACE_SCHEMA.names)

LIVE_TRACE_SCHEMA = pa.schema(
    [
        *TRACE_SCHEMA,
        ("measured_D_up_s", pa.float64()),
        ("measured_D_dw_s", pa.float64()),
        ("measured_D_gt_s", pa.float64()),
        ("measured_wait_s", pa.float64()),
        ("measured_D_bh_s", pa.float64()),
        ("measured_D_bh_up_s", pa.float64()),
        ("measured_D_tl_s", pa.float64()),
        ("measured_quality", pa.float64()),
        ("measured_tv", pa.float64()),
        ("measured_hole_mae", pa.float64()),
        ("measured_psnr", pa.float64()),
        ("measured_ssim", pa.float64()),
        ("measured_G", pa.float64()),
        ("measured_violation", pa.bool_()),
        ("served_by", pa.string()),
        ("steps_run", pa.int32()),
        ("unet_calls", pa.int32()),
        ("failure", pa.string()),
    ]
)
"""A live run's trace: the simulator's columns (the system model on the same world and the
same actions) beside what the nodes measured."""


def slot_rows(
    episode: int,
    slot: SlotState,
    catalogue: ModelCatalogue,
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
    outcome: SlotOutcome,
) -> dict[str, np.ndarray]:
    """The trace columns of one slot (one entry per user)."""
    users = len(slot.services)
    s = slot.services
    return {
        "episode": np.full(users, episode),
        "frame": np.full(users, slot.frame),
        "slot": np.full(users, slot.slot),
        "user": np.arange(users),
        "gamma": np.full(users, slot.gamma),
        "loc_state": np.full(users, slot.location_state),
        "distance_m": slot.distance_m,
        "channel_gain": slot.channel_gain,
        "service": s,
        "d_in_bits": slot.input_bits,
        "d_op_bits": catalogue.output_bits[s],
        "cached": outcome.cached,
        "b": np.asarray(bandwidth_share, dtype=float),
        "xi": np.asarray(step_share, dtype=float),
        "steps": outcome.steps,
        "A1": catalogue.a1_steps[s],
        "A2": catalogue.a2_quality[s],
        "A3": catalogue.a3_steps[s],
        "A4": catalogue.a4_quality[s],
        "B1": catalogue.b1_s_per_step[s],
        "B2": catalogue.b2_s[s],
        "D_up_s": outcome.up_s,
        "D_dw_s": outcome.dw_s,
        "D_gt_s": outcome.gen_s,
        "D_tl_s": outcome.total_s,
        "quality": outcome.quality,
        "G": outcome.utility,
        "violation": outcome.violation,
        "reward": np.full(users, float(outcome.reward)),
    }


class TraceWriter:
    """Appends slot rows to a trace folder (or only to memory when ``path`` is None)."""

    def __init__(
        self,
        path: str | Path | None,
        flush_rows: int = 50_000,
        schema: pa.Schema = TRACE_SCHEMA,
        first_part: int = 0,
    ) -> None:
        """``first_part`` > 0 continues a trace whose first parts are kept (a resumed run)."""
        self.path = Path(path) if path is not None else None
        self.schema = schema
        self.flush_rows = flush_rows
        self._pending_rows = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._tables: list[pa.Table] = []
        self.parts = first_part
        self.rows_written = 0

    def add(self, rows: dict[str, np.ndarray]) -> None:
        self._pending.append(rows)
        self._pending_rows += len(rows["user"])
        if self._pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        columns = {
            name: np.concatenate([rows[name] for rows in self._pending])
            for name in self.schema.names
        }
        self._pending.clear()
        self._pending_rows = 0
        table = pa.Table.from_pydict(columns, schema=self.schema)
        self.rows_written += table.num_rows
        if self.path is None:
            self._tables.append(table)
        else:
            self._write_part(table)

    def _write_part(self, table: pa.Table) -> None:
        """Write one part whole: a first Ctrl-C or SIGTERM waits until the part is renamed
        into place and is then handed to the handler that was in force (which stops the run,
        or, inside a loop that defers too, asks it to stop at its next safe point), so a stop
        never loses rows that were finished."""
        assert self.path is not None
        with DeferredInterrupt() as interrupt:
            self.path.mkdir(parents=True, exist_ok=True)
            name = f"part-{self.parts:05d}.parquet"
            tmp = self.path / f".{name}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, self.path / name)
            self.parts += 1
        if interrupt.signum is not None:
            signal.raise_signal(interrupt.signum)

    def close(self) -> None:
        """Write what is pending; a trace with no rows at all still gets its (empty) part."""
        self.flush()
        if self.path is not None and self.parts == 0:
            self._write_part(self.schema.empty_table())

    def to_frame(self) -> pd.DataFrame:
        """The rows written so far, read back."""
        self.flush()
        if self.path is None:
            return pa.concat_tables(self._tables or [self.schema.empty_table()]).to_pandas()
        return read_trace(self.path, self.schema)


def trace_parts(path: str | Path) -> list[Path]:
    """The finished parts of a trace folder, in order (a part in writing is hidden)."""
    return sorted(Path(path).glob("part-*.parquet"))


def torn_part(parts: list[Path]) -> int | None:
    """The index of the first of ``parts`` that is not a readable Parquet file (cut short,
    e.g. by a full disk or a crash of the file system), None if every part reads."""
    for index, part in enumerate(parts):
        try:
            pq.read_metadata(part)
        except (OSError, pa.ArrowException):
            return index
    return None


def read_trace(path: str | Path, schema: pa.Schema = TRACE_SCHEMA) -> pd.DataFrame:
    """A trace folder (every part, in order) as one table."""
    return pq.read_table(path, schema=schema).to_pandas()

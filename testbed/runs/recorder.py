"""One recorder for training and run metrics: CSV, TensorBoard and a progress line.

Modelled on Stable-Baselines3's logger: a loop calls ``record(key, value)`` for each
metric of a step, then ``dump(step)`` writes one row to every output at once::

    columns = ("episode", "mean_slot_reward", "hit_ratio", "wall_s")
    progress = ProgressSpec(
        total=500, unit="episode", postfix={"reward": "{mean_slot_reward:.2f}"}
    )
    with Recorder(out, columns, progress=progress) as recorder:
        for episode in range(500):
            recorder.record_many(play_episode())
            recorder.record("episode", episode)
            recorder.dump(step=episode)

Outputs, all optional:

* ``out_dir / csv_name``: one row per dump in the fixed column order given at
  construction, written by :func:`csv.writer` exactly as a hand-written
  ``csv.writer(fh).writerow([row[c] for c in columns])`` would (a NaN float is ``nan``,
  a column not recorded before the dump is written as NaN too, so pandas reads both
  back as NaN). Each row is flushed when ``dump`` returns: killing the process
  afterwards loses nothing dumped.
* ``out_dir / "tb"``: TensorBoard scalars through ``torch.utils.tensorboard``, imported
  only here so that importing this module does not load torch. Only keys with a tag
  are sent (:func:`default_tag` by default), non-finite values are skipped.
* a tqdm bar advanced by one at each dump, its postfix formatted from the row.

``resume_step=N`` continues an interrupted run: the CSV keeps its header and first
``N`` rows, and TensorBoard purges the events from step ``N`` on.
"""

from __future__ import annotations

import csv
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tqdm import tqdm

TagRule = Mapping[str, str] | Callable[[str], str | None]
"""Maps a metric key to its TensorBoard tag, or to nothing (``None``/absent: not sent)."""

UNTAGGED = frozenset({"episode", "step", "wall_s"})
"""Keys that index a row or time it, never sent to TensorBoard by :func:`default_tag`."""


def default_tag(key: str) -> str | None:
    """The project's TensorBoard tags, after CleanRL: ``losses/<key>`` for a ``*_loss``,
    ``eval/<key without eval_>`` for an ``eval_*``, ``charts/<key>`` for any other metric;
    none for the keys of :data:`UNTAGGED`."""
    if key in UNTAGGED:
        return None
    if key.endswith("_loss"):
        return f"losses/{key}"
    if key.startswith("eval_"):
        return f"eval/{key.removeprefix('eval_')}"
    return f"charts/{key}"


@dataclass(frozen=True)
class ProgressSpec:
    """A tqdm progress line: its length, start, unit and the metrics it shows."""

    total: int | None
    """Dumps in the whole run (``None``: unknown, the bar only counts)."""
    initial: int = 0
    """Dumps already done, e.g. the episodes a resumed run starts after."""
    unit: str = "it"
    """What one dump is, e.g. ``"episode"``."""
    postfix: Mapping[str, str] = field(default_factory=dict)
    """Label -> :meth:`str.format` template over the row, e.g. ``{"hit": "{hit_ratio:.2f}"}``."""
    enabled: bool = True
    """``False`` draws nothing (a server, a worker process, a test)."""
    leave: bool = False
    """Keep the finished bar on the terminal."""


class Recorder:
    """Collects one row of metrics at a time and writes it to CSV, TensorBoard and a bar.

    ``out_dir=None`` writes no files (neither CSV nor TensorBoard): only the progress line.
    ``tensorboard=True`` needs torch and tensorboard; without them construction fails.
    ``tags`` maps a key to its TensorBoard tag (a mapping, or a function returning
    ``None`` for keys not to send); keys without a tag, e.g. ``episode``, stay CSV-only.
    ``resume_step=N`` keeps the first ``N`` data rows of an existing CSV (whose header
    must be ``columns``) and purges TensorBoard events from step ``N`` on.
    """

    def __init__(
        self,
        out_dir: Path | None,
        columns: Sequence[str],
        *,
        csv_name: str = "metrics.csv",
        tensorboard: bool = True,
        progress: ProgressSpec | None = None,
        tags: TagRule = default_tag,
        resume_step: int | None = None,
    ) -> None:
        self.columns = tuple(columns)
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns must be distinct, got {list(self.columns)}")
        if resume_step is not None and resume_step < 0:
            raise ValueError(f"resume_step must be >= 0, got {resume_step}")
        if resume_step is not None and out_dir is None:
            raise ValueError("resume_step needs an out_dir holding the run to resume")
        if progress is not None:
            self._check_postfix(progress.postfix)
        self._tag_of = tags.get if isinstance(tags, Mapping) else tags
        self._pending: dict[str, Any] = {}
        self._closed = False
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        self._tb: Any = None
        self._bar: tqdm | None = None
        self._postfix = dict(progress.postfix) if progress is not None else {}
        if out_dir is not None:
            out_dir = Path(out_dir)
            csv_path = out_dir / csv_name
            # Imported before any file is touched: a missing torch changes nothing on disk.
            summary_writer = _summary_writer_class() if tensorboard else None
            if resume_step is not None:
                _keep_rows(csv_path, self.columns, resume_step)
            out_dir.mkdir(parents=True, exist_ok=True)
            if summary_writer is not None:
                self._tb = summary_writer(str(out_dir / "tb"), purge_step=resume_step)
            self._csv_file = open(csv_path, "a" if resume_step is not None else "w", newline="")
            self._csv = csv.writer(self._csv_file)
            if resume_step is None:
                self._csv.writerow(self.columns)
                self._csv_file.flush()
        if progress is not None:
            self._bar = tqdm(
                total=progress.total,
                initial=progress.initial,
                unit=progress.unit,
                disable=not progress.enabled,
                leave=progress.leave,
            )

    def record(self, key: str, value: float) -> None:
        """Set ``key`` of the row being built (a second call before ``dump`` overwrites)."""
        self._check_open()
        if key not in self.columns:
            raise ValueError(f"unknown metric {key!r}; the columns are {list(self.columns)}")
        self._pending[key] = value

    def record_many(self, values: Mapping[str, float]) -> None:
        """Set several keys of the row being built; none is set if any key is unknown."""
        self._check_open()
        unknown = [key for key in values if key not in self.columns]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; the columns are {list(self.columns)}")
        self._pending.update(values)

    def dump(self, step: int) -> dict[str, Any]:
        """Write the row built since the last dump to every output; returns that row.

        Columns not recorded are NaN. The CSV row is flushed before this returns.
        """
        self._check_open()
        row = {column: self._pending.get(column, math.nan) for column in self.columns}
        self._pending = {}
        if self._csv is not None:
            self._csv.writerow([row[column] for column in self.columns])
            self._csv_file.flush()
        if self._tb is not None:
            self._write_scalars(row, step)
        if self._bar is not None:
            self._bar.update()
            self._bar.set_postfix(
                {label: template.format(**row) for label, template in self._postfix.items()}
            )
        return row

    def close(self) -> None:
        """Close every output; rows already dumped stay on disk. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._csv_file is not None:
            self._csv_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _write_scalars(self, row: Mapping[str, Any], step: int) -> None:
        for key, value in row.items():
            tag = self._tag_of(key)
            if tag is not None and math.isfinite(value):
                self._tb.add_scalar(tag, value, step)
        self._tb.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Recorder is closed")

    def _check_postfix(self, postfix: Mapping[str, str]) -> None:
        """Fail at construction, not at the first dump, on a postfix naming no column."""
        for label, template in postfix.items():
            for _, name, _, _ in string.Formatter().parse(template):
                if name is not None and name not in self.columns:
                    raise ValueError(
                        f"progress postfix {label!r} uses {name!r}, "
                        f"not one of the columns {list(self.columns)}"
                    )


def _summary_writer_class() -> Any:
    """TensorBoard's ``SummaryWriter``; torch is imported here and only here."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            f"tensorboard=True needs torch and tensorboard ({exc}); "
            "install them or pass tensorboard=False"
        ) from exc
    return SummaryWriter


def _keep_rows(path: Path, columns: tuple[str, ...], rows: int) -> None:
    """Cut the CSV at ``path`` to its header and first ``rows`` data rows, bytes unchanged.

    The header must be ``columns`` and at least ``rows`` rows must be there: rows are
    dumped before the checkpoint that counts them, so fewer means the wrong folder.
    """
    if not path.exists():
        if rows == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(columns)
            return
        raise FileNotFoundError(f"cannot resume at step {rows}: {path} does not exist")
    lines = path.read_bytes().splitlines(keepends=True)
    header = next(csv.reader([lines[0].decode()])) if lines else []
    if tuple(header) != columns:
        raise ValueError(f"cannot resume {path}: its header is {header}, expected {list(columns)}")
    if len(lines) - 1 < rows:
        raise ValueError(f"cannot resume {path} at step {rows}: it holds {len(lines) - 1} rows")
    if not lines[rows].endswith((b"\n", b"\r")):
        raise ValueError(f"cannot resume {path} at step {rows}: row {rows} is cut short")
    path.write_bytes(b"".join(lines[: rows + 1]))

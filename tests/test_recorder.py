"""The metrics recorder (CSV, TensorBoard, progress line) and the CLI's logging setup."""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from testbed.runs.logs import LOG_LEVELS, configure_logging
from testbed.runs.recorder import ProgressSpec, Recorder, default_tag

COLUMNS = (
    "episode",
    "mean_slot_reward",
    "hit_ratio",
    "critic_loss",
    "eval_utility",
    "wall_s",
)
ROWS: list[dict[str, Any]] = [
    {
        "episode": 0,
        "mean_slot_reward": np.float64(1.25),
        "hit_ratio": 0.1 + 0.2,
        "critic_loss": math.nan,
        "eval_utility": np.nan,
        "wall_s": 0.5,
    },
    {
        "episode": 1,
        "mean_slot_reward": -3.0,
        "hit_ratio": 0.5,
        "critic_loss": np.float32(0.75),
        "eval_utility": 42.125,
        "wall_s": 1.0,
    },
    {
        "episode": 2,
        "mean_slot_reward": 2.5,
        "hit_ratio": 1.0,
        "critic_loss": math.inf,
        "eval_utility": math.nan,
        "wall_s": 1.5,
    },
]


def hand_written_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """What the hand-written code the recorder replaces wrote for ``rows``."""
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerow(COLUMNS)
    for row in rows:
        with open(path, "a", newline="") as fh:
            csv.writer(fh).writerow([row[c] for c in COLUMNS])
    return path.read_bytes()


def record_rows(
    out: Path, rows: Sequence[Mapping[str, Any]], *, tensorboard: bool = False, **kwargs: Any
) -> None:
    with Recorder(out, COLUMNS, tensorboard=tensorboard, **kwargs) as recorder:
        for row in rows:
            recorder.record_many(row)
            recorder.dump(step=int(row["episode"]))


def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(tb_dir))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def test_csv_is_byte_identical_to_the_hand_written_writer(tmp_path: Path) -> None:
    record_rows(tmp_path / "run", ROWS)
    expected = hand_written_csv(tmp_path / "expected.csv", ROWS)
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == expected
    assert b"0.30000000000000004" in expected and b"nan" in expected


def test_a_column_not_recorded_is_nan(tmp_path: Path) -> None:
    with Recorder(tmp_path, COLUMNS, tensorboard=False) as recorder:
        recorder.record("episode", 7)
        row = recorder.dump(step=7)
    assert row["episode"] == 7 and math.isnan(row["hit_ratio"])
    lines = (tmp_path / "metrics.csv").read_bytes().splitlines()
    assert lines[1] == b"7,nan,nan,nan,nan,nan"


def test_unknown_key_is_refused_naming_it_and_the_columns(tmp_path: Path) -> None:
    with Recorder(tmp_path, COLUMNS, tensorboard=False) as recorder:
        with pytest.raises(ValueError, match=r"'utilty'.*'hit_ratio'"):
            recorder.record("utilty", 1.0)
        with pytest.raises(ValueError, match="utilty"):
            recorder.record_many({"hit_ratio": 0.5, "utilty": 1.0})
        row = recorder.dump(step=0)
    assert math.isnan(row["hit_ratio"])


def test_unknown_postfix_key_is_refused_at_construction() -> None:
    progress = ProgressSpec(total=3, postfix={"hit": "{hit_ratoi:.2f}"})
    with pytest.raises(ValueError, match="hit_ratoi"):
        Recorder(None, COLUMNS, progress=progress)


def test_each_dump_is_on_disk_before_close(tmp_path: Path) -> None:
    with Recorder(tmp_path, COLUMNS, tensorboard=False) as recorder:
        recorder.record_many(ROWS[0])
        recorder.dump(step=0)
        on_disk = (tmp_path / "metrics.csv").read_bytes()
        assert on_disk == hand_written_csv(tmp_path / "expected.csv", ROWS[:1])


def test_resume_keeps_exactly_n_rows_then_appends(tmp_path: Path) -> None:
    out = tmp_path / "run"
    record_rows(out, ROWS)
    resumed = [{**ROWS[1], "mean_slot_reward": 9.0}, {**ROWS[2], "hit_ratio": 0.0}]
    record_rows(out, resumed, resume_step=1)
    expected = hand_written_csv(tmp_path / "expected.csv", [ROWS[0], *resumed])
    assert (out / "metrics.csv").read_bytes() == expected


def test_resume_refuses_a_csv_that_does_not_match(tmp_path: Path) -> None:
    record_rows(tmp_path, ROWS)
    with pytest.raises(ValueError, match="holds 3 rows"):
        Recorder(tmp_path, COLUMNS, tensorboard=False, resume_step=4)
    with pytest.raises(ValueError, match="header"):
        Recorder(tmp_path, COLUMNS[:-1], tensorboard=False, resume_step=1)
    assert (tmp_path / "metrics.csv").read_bytes() == hand_written_csv(tmp_path / "e.csv", ROWS)


def test_tensorboard_gets_tagged_finite_scalars_only(tmp_path: Path) -> None:
    record_rows(tmp_path, ROWS, tensorboard=True)
    got = scalars(tmp_path / "tb")
    assert sorted(got) == [
        "charts/hit_ratio",
        "charts/mean_slot_reward",
        "eval/utility",
        "losses/critic_loss",
    ]
    assert got["losses/critic_loss"] == [(1, 0.75)]  # NaN at step 0 and inf at step 2 skipped
    assert got["eval/utility"] == [(1, 42.125)]
    assert got["charts/mean_slot_reward"] == [(0, 1.25), (1, -3.0), (2, 2.5)]


def test_tensorboard_resume_purges_from_the_resume_step(tmp_path: Path) -> None:
    record_rows(tmp_path, ROWS, tensorboard=True)
    record_rows(tmp_path, [{**ROWS[2], "mean_slot_reward": 8.0}], tensorboard=True, resume_step=2)
    got = scalars(tmp_path / "tb")
    assert got["charts/mean_slot_reward"] == [(0, 1.25), (1, -3.0), (2, 8.0)]


def test_tags_can_be_a_function(tmp_path: Path) -> None:
    def tag(key: str) -> str | None:
        return f"custom/{key}" if key == "wall_s" else None

    record_rows(tmp_path, ROWS, tensorboard=True, tags=tag)
    assert scalars(tmp_path / "tb") == {"custom/wall_s": [(0, 0.5), (1, 1.0), (2, 1.5)]}


def test_default_tags_follow_charts_losses_eval() -> None:
    assert default_tag("epsilon") == "charts/epsilon"
    assert default_tag("episode_reward") == "charts/episode_reward"
    assert default_tag("q_loss") == "losses/q_loss"
    assert default_tag("eval_hit_ratio") == "eval/hit_ratio"
    assert default_tag("episode") is None and default_tag("wall_s") is None


def test_missing_torch_fails_at_construction_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="tensorboard=False"):
        Recorder(tmp_path / "run", COLUMNS)
    assert not (tmp_path / "run").exists()


def test_progress_line_counts_dumps_and_shows_the_postfix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = ProgressSpec(
        total=10,
        initial=4,
        unit="episode",
        postfix={"reward": "{mean_slot_reward:.2f}", "hit": "{hit_ratio:.2f}"},
    )
    with Recorder(None, COLUMNS, progress=progress) as recorder:
        recorder.record_many(ROWS[1])
        recorder.dump(step=4)
    err = capsys.readouterr().err
    assert "5/10" in err and "reward=-3.00, hit=0.50" in err
    assert list(tmp_path.iterdir()) == []


def test_a_disabled_progress_line_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = ProgressSpec(total=3, postfix={"hit": "{hit_ratio:.2f}"}, enabled=False)
    with Recorder(None, COLUMNS, progress=progress) as recorder:
        recorder.dump(step=0)
    assert capsys.readouterr().err == ""


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, COLUMNS, tensorboard=False)
    recorder.record_many(ROWS[0])
    recorder.dump(step=0)
    recorder.close()
    recorder.close()
    with pytest.raises(RuntimeError, match="closed"):
        recorder.record("episode", 1)
    assert len((tmp_path / "metrics.csv").read_bytes().splitlines()) == 2


def test_importing_the_recorder_does_not_load_torch() -> None:
    # Imports the package too, so this also fails if testbed/__init__.py pulls torch in.
    code = "import sys, testbed.runs.recorder; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers[:] = [h for h in handlers if h.get_name() != "testbed-cli"]  # an earlier CLI run
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_refuses_an_unknown_level(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match=r"--log-level.*'debug', 'info', 'warning', 'error'"):
        configure_logging("nope")
    assert LOG_LEVELS == ("debug", "info", "warning", "error")


def test_configure_logging_is_idempotent(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(root_logger.handlers)
    configure_logging("debug")
    configure_logging("warning")
    assert len(root_logger.handlers) == before + 1
    assert root_logger.level == logging.WARNING
    logging.getLogger("testbed.demo").info("hidden")
    logging.getLogger("testbed.demo").warning("shown")
    assert capsys.readouterr().err == "testbed: WARNING testbed.demo: shown\n"

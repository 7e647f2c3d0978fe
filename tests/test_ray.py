"""`--ray`: the same run tasks on a Ray instance give the numbers of the
local path; the run folders come back through Ray's object store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from runs import mtimes, numbers, tiny_fig8

ray = pytest.importorskip("ray")  # the optional extra; installed by the test extra

POLICIES = ("t2drl", "optimal", "rcars")


def _fig8(out: Path, **kwargs) -> None:
    tiny_fig8(out, POLICIES, **kwargs)


def test_a_local_ray_instance_gives_the_numbers_of_the_sequential_run(tmp_path) -> None:
    _fig8(tmp_path / "local")
    _fig8(tmp_path / "ray", workers=2, ray="local")  # starts Ray with 2 CPUs, then stops it
    assert not ray.is_initialized()
    for name in ("fig8.csv", "fig8_summary.csv"):
        pd.testing.assert_frame_equal(
            numbers(tmp_path / "local" / name), numbers(tmp_path / "ray" / name)
        )
    # the learned runs' folders came back whole: checkpoint, metrics and the evaluation
    run = tmp_path / "ray" / "work" / "capacity_gb20" / "t2drl_seed0"
    assert (run / "checkpoint" / "manifest.json").is_file() and (run / "eval.json").is_file()
    assert (run / "metrics.csv").is_file()
    # a resumed experiment submits nothing: every folder is complete here
    work = tmp_path / "ray" / "work"
    before = mtimes(work)
    _fig8(tmp_path / "ray", workers=2, ray="local")
    assert mtimes(work) == before
    # a run whose training finished but whose evaluation was lost travels with its training:
    # only the evaluation runs again (a retraining would write a new TensorBoard events file)
    events = sorted(p.name for p in (run / "tb").iterdir())
    (run / "eval.json").unlink()
    _fig8(tmp_path / "ray", workers=2, ray="local")
    assert (run / "eval.json").is_file()
    assert sorted(p.name for p in (run / "tb").iterdir()) == events
    pd.testing.assert_frame_equal(
        numbers(tmp_path / "local" / "fig8.csv"), numbers(tmp_path / "ray" / "fig8.csv")
    )

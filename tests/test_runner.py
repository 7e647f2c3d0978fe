"""The two-timescale runner, traces and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from agents.rcars import EvenAllocation, RandomCaching
from testbed.cli import main
from testbed.core.config import ScenarioConfig, build_catalogue, load_config
from testbed.core.system_model import InfeasibleAllocation, check_allocation
from testbed.runs.traces import TRACE_COLUMNS
from testbed.sim.runner import run

REQUIRED = (
    "episode frame slot user gamma loc_state distance_m channel_gain service d_in_bits d_op_bits "
    "cached b xi steps A1 A2 A3 A4 B1 B2 D_up_s D_dw_s D_gt_s D_tl_s quality G violation reward"
).split()

SMALL = {"timing.num_frames": 3, "timing.slots_per_frame": 4}


def _run(tmp_path, seed, name="t.parquet", episodes=2):
    config = ScenarioConfig().replace(seed=seed, **SMALL)
    cat = build_catalogue(config.catalogue)
    summary, _ = run(
        config,
        RandomCaching(config, cat),
        EvenAllocation(config, cat),
        episodes,
        trace_path=tmp_path / name,
        catalogue=cat,
    )
    return summary, pd.read_parquet(tmp_path / name)


def test_trace_schema_and_row_count(tmp_path):
    summary, df = _run(tmp_path, 0)
    assert list(df.columns) == list(TRACE_COLUMNS) and set(REQUIRED) <= set(df.columns)
    assert len(df) == 2 * 3 * 4 * 10 and summary.slots == 24
    np.testing.assert_allclose(df["steps"], df["xi"] * 1000)
    np.testing.assert_allclose(df["D_tl_s"], df["D_up_s"] + df["D_dw_s"] + df["D_gt_s"])
    np.testing.assert_allclose(df["G"], 0.7 * df["D_tl_s"] + 0.3 * df["quality"])
    per_slot = df.groupby(["episode", "frame", "slot"])
    np.testing.assert_allclose(per_slot["b"].sum(), 1.0)  # RCARS splits evenly
    assert summary.utility == pytest.approx(df["G"].mean())
    assert summary.hit_ratio == pytest.approx(df["cached"].mean())
    assert summary.violation_rate == pytest.approx(df["violation"].mean())
    assert summary.mean_slot_reward == pytest.approx(per_slot["reward"].first().mean())


def test_seed_reproduces_trace_exactly_and_other_seed_changes_it(tmp_path):
    _, a = _run(tmp_path, 3, "a.parquet")
    _, b = _run(tmp_path, 3, "b.parquet")
    _, c = _run(tmp_path, 4, "c.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["channel_gain"], c["channel_gain"])


def test_episode_world_does_not_depend_on_policy(tmp_path):
    config = ScenarioConfig().replace(seed=5, **SMALL)
    cat = build_catalogue(config.catalogue)

    class GreedyFirstUser(EvenAllocation):
        def allocate(self, slot, cache):
            b, xi = super().allocate(slot, cache)
            return np.r_[1.0, np.zeros(len(b) - 1)], xi

    run(config, RandomCaching(config, cat), GreedyFirstUser(config, cat), 1, tmp_path / "g.parquet")
    _, even = _run(tmp_path, 5, "e.parquet", episodes=1)
    greedy = pd.read_parquet(tmp_path / "g.parquet")
    for col in ("channel_gain", "service", "d_in_bits", "gamma", "loc_state"):
        np.testing.assert_array_equal(greedy[col], even[col])
    assert greedy["violation"].sum() > even["violation"].sum()  # starved users hit the cap


def test_interrupted_run_keeps_every_row_written(tmp_path):
    config = ScenarioConfig().replace(**SMALL)
    cat = build_catalogue(config.catalogue)

    class Interrupting(EvenAllocation):
        calls = 0

        def allocate(self, slot, cache):
            Interrupting.calls += 1
            if Interrupting.calls == 7:
                raise KeyboardInterrupt
            return super().allocate(slot, cache)

    with pytest.raises(KeyboardInterrupt):
        run(
            config, RandomCaching(config, cat), Interrupting(config, cat), 2, tmp_path / "i.parquet"
        )
    df = pd.read_parquet(tmp_path / "i.parquet")
    assert len(df) == 6 * 10  # six slots finished before the interrupt
    assert df[["frame", "slot"]].drop_duplicates().shape[0] == 6


def test_infeasible_allocation_is_rejected():
    served = np.array([True, False])
    check_allocation(np.array([0.5, 0.5]), np.array([1.0, 0.0]), served)
    with pytest.raises(InfeasibleAllocation, match=r"\(11e\)"):
        check_allocation(np.array([0.7, 0.5]), np.array([0.0, 0.0]), served)
    with pytest.raises(InfeasibleAllocation, match=r"\(11g\)"):
        check_allocation(np.array([0.5, 0.5]), np.array([0.5, 0.5]), served)
    with pytest.raises(InfeasibleAllocation, match=r"\(11f\)"):
        check_allocation(np.array([0.5, 0.5]), np.array([0.7, 0.6]), np.array([True, True]))
    with pytest.raises(InfeasibleAllocation, match="NaN"):
        check_allocation(np.array([np.nan, 0.5]), np.array([0.0, 0.0]), served)


def test_cli_simulate_writes_run_folder(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[timing]\nnum_frames = 2\nslots_per_frame = 3\n")
    out = tmp_path / "run"
    code = main(
        [
            "simulate",
            "--policy",
            "rcars",
            "--episodes",
            "2",
            "--seed",
            "9",
            "--out",
            str(out),
            "--config",
            str(cfg),
            "--quiet",
        ]
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {
        "trace.parquet",
        "metrics.csv",
        "config.toml",
        "summary.json",
        "run.json",
    }
    summary = json.loads((out / "summary.json").read_text())
    for key in ("utility", "hit_ratio", "violation_rate", "decision_ms_per_slot"):
        assert key in summary
    assert load_config(out / "config.toml").seed == 9
    assert len(pd.read_parquet(out / "trace.parquet")) == 2 * 2 * 3 * 10
    assert list(pd.read_csv(out / "metrics.csv")["episode"]) == [0, 1]  # one row per episode
    meta = json.loads((out / "run.json").read_text())
    assert {"git_revision", "packages", "device"} <= set(meta)
    assert "rcars: utility" in capsys.readouterr().out


def test_cli_bad_config_names_key(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[utility]\nalpha = 2.0\n")
    code = main(["simulate", "--policy", "rcars", "--config", str(cfg), "--out", str(tmp_path)])
    assert code == 2
    assert "utility.alpha = 2.0 is out of range: allowed [0, 1]" in capsys.readouterr().err


def test_sigterm_keeps_rows_and_exits_143(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "long"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed.cli",
            "simulate",
            "--policy",
            "rcars",
            "--episodes",
            "100000",
            "--out",
            str(out),
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    trace = out / "trace.parquet"
    deadline = time.time() + 30
    while not trace.exists() and time.time() < deadline:  # the first row group is on disk
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "stopped by SIGTERM" in err and "trace.parquet" in err
    df = pd.read_parquet(trace)
    assert len(df) > 0 and len(df) % 10 == 0  # whole slots of 10 users
    assert (df.groupby(["episode", "frame", "slot"]).size() == 10).all()


def test_cli_learned_policy_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["simulate", "--policy", "t2drl", "--out", str(tmp_path / "a")]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    code = main(
        [
            "simulate",
            "--policy",
            "t2drl",
            "--checkpoint",
            str(tmp_path),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    assert code == 2 and "train.json is missing or unreadable" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder of `testbed train`" in capsys.readouterr().err

"""Every command keeps finished work, never overwrites results unasked, and answers bad
input in one line (exit code 2, the flag or key named, nothing written).

``BAD_INPUTS`` is the table of concrete bad inputs for the `testbed` commands; the
calibrate and zoo commands have theirs in tests/test_calibration_inputs.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from testbed.cli import main

TINY = ["--set", "timing.num_frames=2", "--set", "timing.slots_per_frame=3", "--users", "3"]
FAST_TRAIN = ["--set", "allocator.warmup=4", "--set", "caching.warmup=2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs the table refers to: a trained t2drl run, bad scenario files, a plain file."""
    root = tmp_path_factory.mktemp("inputs")
    run = root / "t2drl_run"
    assert main(["train", "--episodes", "1", "--quiet", "--out", str(run), *TINY, *FAST_TRAIN]) == 0
    (root / "network5.toml").write_text("network = 5\n")
    (root / "paper.toml").write_text("seed = 1\n")  # Table 2's drawn catalogue: no zoo names
    (root / "broken.toml").write_text("[network\nnum_users = 3\n")
    (root / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (root / "afile").write_text("not a folder\n")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "keep.txt").write_text("finished work\n")
    return {"root": root, "run": run}


# (argv with {root} and {run} placeholders, the message fragment of the one-line error)
BAD_INPUTS = [
    (["simulate", "--config", "{root}/nonexistent.toml"], "nonexistent.toml does not exist"),
    (["simulate", "--config", "{root}/network5.toml"], "network must be a table"),
    (["simulate", "--config", "{root}/broken.toml"], "not valid TOML"),
    (["simulate", "--config", "{root}/binary.toml"], "not valid TOML"),
    (["simulate", "--out", "{root}/afile"], "--out {root}/afile is a file, not a folder"),
    (["simulate", "--out", "{root}/afile/sub"], "is a file, not a folder"),
    (["simulate", "--out", "{root}/nonempty"], "exists and is not empty: pass --overwrite"),
    (["simulate", "--episodes", "0"], "--episodes = 0: allowed >= 1"),
    (["simulate", "--users", "0"], "network.num_users = 0 is out of range"),
    (["simulate", "--policy", "t2drl"], "--policy t2drl needs --checkpoint RUN_DIR"),
    (["simulate", "--policy", "t2drl", "--checkpoint", "{root}/nope"], "no such run folder"),
    (
        ["simulate", "--policy", "t2drl", "--checkpoint", "{root}/nonempty"],
        "nonempty/train.json is missing or unreadable",
    ),
    (
        ["simulate", "--policy", "ddpg-t2drl", "--checkpoint", "{run}"],
        "holds a trained 't2drl' run, not 'ddpg-t2drl'",
    ),
    (["simulate", "--policy", "rcars", "--checkpoint", "{run}"], "--checkpoint applies to"),
    (
        ["simulate", "--policy", "t2drl", "--checkpoint", "{run}", "--users", "4"],
        "was trained for U=3, M=10; the scenario has U=4",
    ),
    (["simulate", "--policy", "nope"], "unknown policy 'nope'; choose one of"),
    (["simulate", "--policy", "t2drl+optimal"], "needs --checkpoint RUN_DIR (for its part t2drl)"),
    (["simulate", "--policy", "optimal+rcars", "--checkpoint", "{run}"], "--checkpoint applies"),
    (
        ["simulate", "--policy", "optimal+ddpg-t2drl", "--checkpoint", "{run}"],
        "its allocation part ddpg-t2drl: {run} holds a trained 't2drl' run, not 'ddpg-t2drl'",
    ),
    (["simulate", "--set", "network.num_users"], "expected SECTION.KEY=VALUE"),
    (["simulate", "--set", "utility.alpha=1.5"], "utility.alpha = 1.5 is out of range"),
    (["compare", "--policies", "rcars", "rcars"], "--policies names ['rcars'] more than once"),
    (["compare", "--seeds", "0"], "--seeds = 0: allowed >= 1"),
    (["compare", "--policies", "t2drl", "rcars"], "need --checkpoint NAME=RUN_DIR"),
    (["compare", "--checkpoint", "t2drl"], "expected NAME=RUN_DIR"),
    (["compare", "--checkpoint", "t2drl={run}"], "t2drl is not among --policies"),
    (["compare", "--policies", "rcars", "t2drl+nope"], "unknown allocation part 'nope'"),
    (["compare", "--policies", "optimal+"], "policy 'optimal+': empty allocation part"),
    (["compare", "--policies", "rcars+schrs+optimal"], "with exactly one '+'"),
    (["compare", "--policies", "t2drl+optimal"], "need --checkpoint NAME=RUN_DIR with NAME in"),
    (
        ["compare", "--policies", "t2drl+optimal", "--checkpoint", "ddpg-t2drl={run}"],
        "ddpg-t2drl is not among --policies (nor a part of one)",
    ),
    (
        ["compare", "--policies", "ddpg-t2drl+optimal", "--checkpoint", "ddpg-t2drl={run}"],
        "holds a trained 't2drl' run, not 'ddpg-t2drl'",
    ),
    (["compare", "--resume", "{root}/nonempty"], "no comparison to continue"),
    (["compare", "--out", "{root}/nonempty"], "pass --overwrite to replace it or --resume"),
    (["train", "--threads", "0"], "--threads = 0: allowed >= 1"),
    (["train", "--out", "{root}/nonempty"], "pass --overwrite to replace it or --resume"),
    (["train", "--resume", "{root}/nonempty"], "not a run folder of `testbed train`"),
    (["train", "--resume", "{run}", "--agent", "ddpg-t2drl"], "--agent ddpg-t2drl contradicts"),
    (["train", "--set", "allocator.nope=1"], "unknown D3PGConfig key(s) ['nope']"),
    (["train", "--set", "train.eval_every=0"], "eval_every"),
    (["experiment", "fig7", "--out", "{root}/nonempty"], "pass --overwrite"),
    (["experiment", "fig7", "--resume", "{root}/missing"], "no such experiment folder"),
    (["experiment", "fig8", "--workers", "0"], "--workers = 0: allowed >= 1"),
    (["experiment", "fig8", "--workers", "-2"], "--workers = -2: allowed >= 1"),
    (["curves", "{root}/missing", "--out", "{root}/c.png"], "not a run of `testbed train`"),
    (["curves", "{run}", "--out", "{root}/nonempty"], "is a folder, not a file"),
    (["config", "--out", "{root}/afile"], "--out {root}/afile exists: pass --overwrite"),
    (["config", "--config", "{root}/network5.toml"], "network must be a table"),
    (["run", "--time-scale", "0"], "--time-scale = 0.0: allowed finite values > 0"),
    (["run", "--edge", "127.0.0.1:1"], "--edge and --users-node go together"),
    (["run", "--policy", "t2drl"], "--policy t2drl needs --checkpoint RUN_DIR"),
    (["run", "--config", "{root}/paper.toml"], "are not zoo models"),
    (["run", "--out", "{root}/nonempty"], "exists and is not empty: pass --overwrite"),
    (["run", "--frames", "0"], "timing.num_frames = 0 is out of range"),
    (["run", "--policy", "optimal+nope"], "unknown allocation part 'nope'"),
    (["run", "--policy", "rcars+t2drl"], "needs --checkpoint RUN_DIR (for its part t2drl)"),
    (["sweep"], "name exactly one swept key as --set SECTION.KEY=V1,V2,..."),
    (
        ["sweep", "--set", "network.num_users=3,4", "--set", "utility.alpha=0.1,0.2"],
        "name exactly one swept key",
    ),
    (["sweep", "--set", "network.num_users=3,0"], "network.num_users = 0 is out of range"),
    (["sweep", "--set", "network.num_users=3,3"], "give at least two distinct values"),
    (["sweep", "--set", "seed=1,2"], "the seeds are swept by --seeds N"),
    (["sweep", "--set", "network.num_users=3,4", "--policies", "nope"], "policies ['nope']"),
    (["sweep", "--set", "network.num_users=3,4", "--resume", "{root}/nonempty"], "no sweep.json"),
    (["sweep", "--set", "network.num_users=3,4", "--out", "{root}/nonempty"], "is not empty"),
    # issue 11: the export command, the caching agents, the cloning options, the shipped policy
    (["export", "{root}/nonempty", "--out", "{root}/x"], "not a run of `testbed train`"),
    (["export", "{run}", "--out", "{root}/nonempty"], "exists and is not empty"),
    (["export", "{run}", "--out", "{root}/afile"], "is a file, not a folder"),
    (
        ["train", "--preset", "default", "--set", "catalogue.num_models=20"],
        "allows M <= 16; use the factored caching agent (--caching factored)",
    ),
    (["train", "--set", "train.counterfactuals=-3"], "counterfactuals = -3"),
    (
        ["train", "--credit", "explore", "--set", "train.counterfactuals=2"],
        "counterfactuals > 0 needs credit = 'greedy'",
    ),
    (["train", "--set", "allocator.objective='imitate'"], "objective = 'imitate'"),
    (["train", "--set", "allocator.action_map='relu'"], "action_map = 'relu'"),
    (["train", "--set", "caching.explore_keep=0"], "explore_keep = 0"),
    (
        ["simulate", "--policy", "t2drl", "--checkpoint", "@pretrained", "--users", "3"],
        "was trained for U=10, M=10; the scenario has U=3",
    ),
]


def _fill(argv: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(root=files["root"], run=files["run"]) for a in argv]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(files, capsys, argv, message) -> None:
    before = sorted(p.relative_to(files["root"]) for p in files["root"].rglob("*"))
    args = _fill(argv, files)
    if "--out" not in args and "--resume" not in args and argv[0] != "curves":
        args += ["--out", str(files["root"] / "fresh")]
    assert main(["--log-level", "error", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("testbed: ")
    assert message.format(root=files["root"], run=files["run"]) in err
    assert "Traceback" not in err
    after = sorted(p.relative_to(files["root"]) for p in files["root"].rglob("*"))
    assert after == before  # nothing written, nothing removed


def test_debug_shows_the_traceback(files) -> None:
    with pytest.raises(Exception, match="does not exist"):
        main(["--debug", "simulate", "--config", str(files["root"] / "nonexistent.toml")])


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--policy", "rcars", *TINY],
        ["compare", "--policies", "rcars", "--seeds", "2", *TINY],
        ["train", "--episodes", "1", *TINY, *FAST_TRAIN],
    ],
)
def test_existing_results_are_kept_unless_overwrite_replaces_them_whole(
    tmp_path: Path, command: list[str]
) -> None:
    out = tmp_path / "run"
    assert main([*command, "--quiet", "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from an older run\n")
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*command, "--quiet", "--out", str(out)]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    assert main([*command, "--quiet", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists()  # replaced whole
    assert (out / "config.toml").is_file()


def test_config_and_curves_files_are_not_overwritten_unasked(files, tmp_path: Path) -> None:
    target = tmp_path / "scenario.toml"
    target.write_text("seed = 1\n")
    assert main(["config", "--out", str(target)]) == 2
    assert target.read_text() == "seed = 1\n"
    assert main(["config", "--out", str(target), "--overwrite"]) == 0
    assert "[network]" in target.read_text()
    png = tmp_path / "c.png"
    assert main(["curves", str(files["run"]), "--out", str(png)]) == 0
    assert main(["curves", str(files["run"]), "--out", str(png)]) == 2
    assert main(["curves", str(files["run"]), "--out", str(png), "--overwrite"]) == 0


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_leaves_a_readable_trace_of_every_finished_episode(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = _cli(
        "simulate", "--policy", "rcars", "--episodes", "100000", "--quiet", "--out", str(out)
    )
    trace = out / "trace.parquet"
    _wait_for(lambda: len(list(trace.glob("part-*.parquet"))) >= 3)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rows = pd.read_parquet(trace)
    episodes = rows["episode"].unique()
    assert len(episodes) >= 3 and list(episodes) == list(range(len(episodes)))
    assert (rows.groupby("episode").size() == 10 * 10 * 10).all()  # whole episodes only
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["episode"]) == list(range(len(metrics)))


def test_ctrl_c_during_training_saves_a_checkpoint_that_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "train"
    args = ["train", "--episodes", "200", "--out", str(out), "--quiet", *TINY, *FAST_TRAIN]
    proc = _cli(*args)
    metrics = out / "metrics.csv"
    _wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped by Ctrl-C" in err and "--resume" in err
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())
    rows = pd.read_csv(metrics)
    assert manifest["episode"] == len(rows) >= 2  # the checkpoint holds every finished episode
    target = manifest["episode"] + 1
    assert main(["train", "--resume", str(out), "--episodes", str(target), "--quiet"]) == 0
    assert list(pd.read_csv(metrics)["episode"]) == list(range(target))
    # a resumed run keeps its stored episode count unless told otherwise
    assert json.loads((out / "train.json").read_text())["episodes"] == target
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert len(pd.read_csv(metrics)) == target


def test_interrupted_compare_keeps_finished_runs_and_resume_completes(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--policies", "rcars", "schrs", "--seeds", "200", "--quiet", "--out"]
    proc = _cli(*args, str(out), *TINY)
    table = out / "compare.csv"
    _wait_for(lambda: table.is_file() and len(table.read_text().splitlines()) >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "compare.csv" in err
    kept = pd.read_csv(table)
    assert len(kept) >= 2
    short = ["compare", "--policies", "rcars", "schrs", "--seeds", "3", "--quiet"]
    assert main([*short, "--resume", str(out), *TINY]) == 0
    done = pd.read_csv(table)
    assert list(zip(done["policy"], done["seed"], strict=True)) == [
        (p, s) for p in ("rcars", "schrs") for s in range(3)
    ]
    first = kept.iloc[0]
    again = done[(done["policy"] == first["policy"]) & (done["seed"] == first["seed"])]
    assert float(again["utility"].iloc[0]) == float(first["utility"])  # kept, not rerun


def _checkpoint_copy(files, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(files["run"], copy)
    return copy


def test_corrupted_truncated_and_non_finite_checkpoints_are_refused(files, tmp_path, capsys):
    run = _checkpoint_copy(files, tmp_path)
    networks = run / "checkpoint" / "networks.safetensors"
    data = bytearray(networks.read_bytes())
    data[-5] ^= 0xFF
    networks.write_bytes(bytes(data))
    assert main(["simulate", "--policy", "t2drl", "--checkpoint", str(run), *TINY]) == 2
    assert "corrupted (SHA-256 differs" in capsys.readouterr().err
    networks.write_bytes(bytes(data[: len(data) // 2]))
    assert main(["train", "--resume", str(run), "--episodes", "2"]) == 2
    assert "corrupted" in capsys.readouterr().err

    def poisoned(name: str, part: str) -> Path:
        """A copy whose first tensor named with ``part`` is NaN (its manifest updated)."""
        import hashlib

        run = _checkpoint_copy(files, tmp_path / name)
        networks = run / "checkpoint" / "networks.safetensors"
        tensors = load_file(networks)
        key = next(k for k, v in tensors.items() if part in k and v.is_floating_point())
        tensors[key] = torch.full_like(tensors[key], float("nan"))
        save_file(tensors, networks)
        manifest_path = run / "checkpoint" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        digest = hashlib.sha256(networks.read_bytes()).hexdigest()
        manifest["files"]["networks.safetensors"] = digest
        manifest_path.write_text(json.dumps(manifest))
        return run

    # an acting network: refused to act and to resume
    run = poisoned("nan_actor", ".actor.")
    assert main(["simulate", "--policy", "t2drl", "--checkpoint", str(run), *TINY]) == 2
    assert "non-finite values" in capsys.readouterr().err
    # only the training state (the critic; or an overflowed Adam moment): acts, but is
    # refused to resume
    run = poisoned("nan_critic", "d3pg.critic.")
    assert main(["simulate", "--policy", "t2drl", "--checkpoint", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--episodes", "3"]) == 2
    assert "non-finite values" in capsys.readouterr().err


def test_one_seed_prints_no_interval(tmp_path: Path, capsys) -> None:
    out = tmp_path / "one"
    assert (
        main(["compare", "--policies", "rcars", "--seeds", "1", "--quiet", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "(1 seed: no 95% interval)" in printed and "+-" not in printed
    assert pd.read_csv(out / "compare_summary.csv")["utility_ci95"].isna().all()

"""One install, resume never harms, success means success.

A command whose optional package is missing refuses in one line before writing; a command
that fails before its first result leaves a folder that a retry replaces unasked; ``--resume``
on a finished run (live, training, comparison, sweep) changes nothing; a torn trace part is
dropped and served again; a live run whose user-slots all failed exits non-zero, its summary
saying "no served user-slots" where numbers would be.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.commands.common import Output, _handle_marking_failures, new_run_folder
from testbed.core.config import load_config
from testbed.live.options import LIVE_SCENARIO
from testbed.live.report import NO_SERVED
from testbed.runs.folder import FAILED, RunFolder
from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace

SMALL_SIM = ["--set", "timing.num_frames=1", "--set", "timing.slots_per_frame=2", "--users", "3"]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its modification time (ns) and its bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def no_nan(text: str) -> dict:
    """``text`` as JSON, refusing NaN and infinities (which JSON does not have)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the summary holds {constant}")

    return json.loads(text, parse_constant=refuse)


# One install ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["train", "--episodes", "1"],
            "testbed train needs tensorboard, not installed: pip install -e '.[edge]'",
        ),
        (
            ["sweep", "--policies", "t2drl", "--set", "utility.alpha=0.1,0.3"],
            "testbed sweep needs tensorboard, not installed: pip install -e '.[edge]'",
        ),
        (
            ["experiment", "fig6a", "--quick"],
            "testbed experiment fig6a needs tensorboard, not installed: pip install -e '.[edge]'",
        ),
    ],
)
def test_a_missing_package_is_one_line_with_its_pip_install_and_nothing_is_written(
    tmp_path: Path, argv: list[str], line: str
) -> None:
    """The subprocess marks tensorboard not importable the way Python itself does (a None in
    ``sys.modules``): ``find_spec`` then finds nothing, as in an install without it."""
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['tensorboard'] = None\n"
        "from testbed.cli import main\n"
        f"sys.exit(main({[*argv, '--out', str(out)]!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"testbed: error: {line}"
    assert not out.exists()


def test_ray_missing_is_refused_before_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from testbed.cli import main\n"
        f"sys.exit(main(['sweep', '--set', 'utility.alpha=0.1,0.3', '--ray', 'local', "
        f"'--out', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "testbed: error: testbed sweep needs ray, not installed: pip install -e '.[ray]'"
    )
    assert not out.exists()


def test_a_command_failing_before_its_first_result_leaves_a_folder_a_retry_replaces(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"

    def fails_after_claiming(output: Output) -> int:
        folder = new_run_folder(output, "unused")
        return len((folder / "missing.csv").read_text())  # a real error, after the claim

    with pytest.raises(FileNotFoundError):
        _handle_marking_failures(fails_after_claiming, Output(out))
    assert RunFolder(out).has(FAILED) and RunFolder.failed_before_results(out)
    assert "FileNotFoundError" in (out / FAILED).read_text()
    # the retry, with the same --out and no --overwrite, replaces the failed folder whole
    assert main(["simulate", "--episodes", "1", "--quiet", *SMALL_SIM, "--out", str(out)]) == 0
    assert not (out / FAILED).exists() and (out / "summary.json").is_file()
    # a folder with results is never marked, and a new command is refused as before
    RunFolder(out).mark_failed("a later failure")
    assert not (out / FAILED).exists()
    assert main(["simulate", "--episodes", "1", "--quiet", "--out", str(out)]) == 2


# Resume never harms: the offline commands ----------------------------------------------------


def test_compare_resume_of_a_finished_comparison_changes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "--policies", "rcars", "schrs", "--seeds", "2", "--quiet", *SMALL_SIM]
    assert main([*argv, "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert main([*argv, "--resume", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: the comparison is finished (2 policies x 2 seeds in compare.csv, "
        "compare_summary.csv written); nothing to resume, nothing changed"
    )
    assert snapshot(out) == before


def test_sweep_resume_of_a_finished_sweep_changes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        "--policies",
        "rcars",
        "--seeds",
        "1",
        "--episodes",
        "1",
        "--quick",
        "--quiet",
        "--set",
        "timing.num_frames=1",
        "--set",
        "timing.slots_per_frame=2",
        "--set",
        "utility.alpha=0.1,0.3",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert main([*argv, "--resume", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: the sweep is finished (timing.json written); nothing to resume, nothing "
        "changed (another budget: a new --out)"
    )
    assert snapshot(out) == before


def test_train_resume_of_a_finished_run_changes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "train"
    argv = ["train", "--episodes", "1", "--preset", "default", "--quiet", *SMALL_SIM]
    assert main([*argv, "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert main(["train", "--quiet", "--resume", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: the run is finished (its checkpoint holds the last of its episodes); "
        "nothing to resume, nothing changed (more: --episodes N)"
    )
    assert snapshot(out) == before


# The live runs -------------------------------------------------------------------------------


def live_argv(config, nodes: dict, out: Path, *extra: str) -> list[str]:
    """`testbed run` of ``config`` against the running ``nodes``, 20x real time."""
    timing = config.timing
    return [
        "run",
        "--edge",
        nodes["edge"].address,
        "--users-node",
        nodes["users"].address,
        "--users",
        str(config.network.num_users),
        "--frames",
        str(timing.num_frames),
        "--slots",
        str(timing.slots_per_frame),
        "--policy",
        "rcars",
        "--time-scale",
        "20",
        "--gallery",
        "0",
        "--request-timeout",
        "10",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def config():
    return load_config(LIVE_SCENARIO).replace(
        **{"network.num_users": 2, "timing.num_frames": 1, "timing.slots_per_frame": 2}
    )


@pytest.fixture(scope="module")
def nodes(config):
    from nodes import start_live_nodes

    started = start_live_nodes(config)
    yield started
    for node in started.values():
        node.stop(0.2)


@pytest.fixture(scope="module")
def finished_run(config, nodes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("live") / "run"
    assert main(live_argv(config, nodes, out)) == 0
    return out


def test_run_resume_of_a_finished_run_says_so_and_changes_nothing(finished_run, capsys) -> None:
    before = snapshot(finished_run)
    capsys.readouterr()
    assert main(["run", "--resume", str(finished_run)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{finished_run}: the run is finished (2 slots, summary.json written); nothing to "
        "resume, nothing changed"
    )
    assert snapshot(finished_run) == before


def test_a_torn_trace_part_is_dropped_and_its_slot_served_again(
    finished_run, tmp_path, capsys
) -> None:
    out = tmp_path / "torn"
    shutil.copytree(finished_run, out)
    (out / "summary.json").unlink()  # as a controller killed before its summary
    part = out / "trace.parquet" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:40])  # cut short
    capsys.readouterr()
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert (
        f"{part} is torn (not a readable Parquet file): dropped with the 0 parts after it; "
        "the run continues from slot 1"
    ) in err
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    assert list(trace["slot"]) == [0, 0, 1, 1]
    assert no_nan((out / "summary.json").read_text())["slots"] == 2


def test_a_failed_share_out_of_range_is_refused_before_anything(config, nodes, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(live_argv(config, nodes, out, "--max-failed-share", "1.5")) == 2
    assert not out.exists()


def test_a_run_whose_user_slots_all_failed_exits_non_zero_without_nan(
    config, tmp_path, capsys
) -> None:
    """The controller's edge is up, but the users' node uploads to an edge and a cloud that
    nothing listens on: every request fails."""
    from cloud_node.server import serve as serve_cloud
    from edge_node.server import serve as serve_edge
    from ue_emulator.server import serve as serve_users

    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    cloud = serve_cloud(config, threads=1)
    edge = serve_edge(config, cloud=cloud.address, threads=1)
    users = serve_users(config, edge=closed, cloud=closed)
    try:
        out = tmp_path / "failed"
        assert main(live_argv(config, {"edge": edge, "users": users}, out)) == 1
    finally:
        for node in (users, edge, cloud):
            node.stop(0.2)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("testbed: 4 of 4 user-slots failed (allowed: a share of 0.5, ")
    assert line.endswith(f"; the run is kept in {out}")
    summary = no_nan((out / "summary.json").read_text())
    assert summary["mape_percent"] == NO_SERVED and summary["gap_breakdown"] == NO_SERVED
    assert summary["measured"]["mean_psnr_db"] == NO_SERVED
    report = (out / "report.md").read_text()
    assert NO_SERVED in report and "nan" not in report.lower()

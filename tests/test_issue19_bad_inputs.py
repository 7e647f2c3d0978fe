"""Every input of every command and node is checked before anything is written or started:
paths (creatable, writable), scenario and profile TOML (size, depth, encoding), addresses
(host and port 1-65535), fault specs against the run's length, choice-like options. Each bad
input is one line naming the flag or file and what is allowed, exit code 2, no traceback,
and the ``--out`` it names is never created; an unexpected failure is one line too (exit 1),
its traceback in a file the line names.

Each table row is (argv with ``{root}`` for the inputs folder, exit code, regex of the
line); the node commands have a test of their own each.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.core.config import MAX_TOML_BYTES
from testbed.core.errors import UsageError
from testbed.proto.security import check_address

NOT_CREATABLE = "/proc/testbed-issue19/out"
"""A folder no one can create, root included (access() says /proc is writable for root)."""
FRESH = "{root}/fresh"
"""The ``--out`` of the rows that name none: it must not exist afterwards."""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The inputs the rows refer to: bad TOML files, a training run's metrics, a fake run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "deep.toml").write_text("a = " + "[" * 1200 + "]" * 1200 + "\n")
    (root / "big.toml").write_text("# " + "x" * MAX_TOML_BYTES + "\nseed = 1\n")
    (root / "latin1.toml").write_bytes(b"seed = 1 # caf\xe9\n")
    (root / "deep_profile.toml").write_text('[catalogue]\nprofile = "deep.toml"\n')
    (root / "afile").write_text("not a folder\n")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "keep.txt").write_text("finished work\n")
    train = root / "trainrun"
    train.mkdir()
    (train / "metrics.csv").write_text(
        "episode,mean_slot_reward,label\n0,1.0,warmup\n1,2.0,learning\n"
    )
    (root / "noepisode").mkdir()
    (root / "noepisode" / "metrics.csv").write_text("reward\n1.0\n")
    fake = root / "fakerun"  # what export checks before it reads anything
    fake.mkdir()
    (fake / "train.json").write_text("{}\n")
    (fake / "config.toml").write_text("seed = 1\n")
    return root


def _listing(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*"))


def _refused(root: Path, capsys, argv: list[str], code: int, pattern: str) -> None:
    """Run ``testbed argv``; assert the exit code, one line matching ``pattern``, no
    traceback, nothing written under ``root`` (the new ``--out`` included)."""
    args = [item.format(root=root) for item in argv]
    before = _listing(root)
    assert main(["--log-level", "error", *args]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(pattern.format(root=re.escape(str(root))), err), err
    assert _listing(root) == before  # nothing written, nothing removed
    assert not Path(FRESH.format(root=root)).exists()


def _table(command: str, rows: list[tuple[list[str], int, str]]) -> list:
    """The rows of one command as pytest parameters, with ``--out`` added where none is
    named (so that each row also shows the new folder is never created)."""
    params = []
    for argv, code, pattern in rows:
        out = [] if any(a in ("--out", "--resume") for a in argv) else ["--out", FRESH]
        params.append(pytest.param([command, *argv, *out], code, pattern, id=" ".join(argv)))
    return params


TOML_ROWS = [
    (["--config", "{root}/deep.toml"], 2, r"scenario file {root}/deep.toml: .*nested too deep"),
    (["--config", "{root}/big.toml"], 2, r"big.toml: 1,000,0\d\d bytes; allowed <= 1,000,000"),
    (["--config", "{root}/latin1.toml"], 2, r"latin1.toml: not valid TOML: not UTF-8"),
    (["--config", "{root}"], 2, r"scenario file {root} does not exist \(or is not a file\)"),
]
"""Scenario files every command with ``--config`` refuses, naming the file."""
OUT_DIR_ROWS = [
    (["--out", NOT_CREATABLE], 2, r"--out /proc/testbed-issue19/out: cannot create it in /proc"),
    (["--out", "{root}/afile/sub"], 2, r"--out {root}/afile/sub: {root}/afile is a file"),
    (["--out", "{root}/afile"], 2, r"--out {root}/afile is a file, not a folder"),
]
"""Run folders that cannot be made, for every command that writes one."""

SIMULATE = [
    *OUT_DIR_ROWS,
    *TOML_ROWS,
    (["--config", "{root}/deep_profile.toml"], 2, r"catalogue.profile .*deep.toml: .*too deep"),
    (["--episodes", "0"], 2, r"--episodes = 0: allowed >= 1"),
    (["--policy", "t2drl", "--checkpoint", "/proc/none"], 2, r"/proc/none: no such run folder"),
    (["--policy", "nope"], 2, r"unknown policy 'nope'; choose one of"),
]
CONFIG = [
    (["--out", "/proc/testbed-issue19.toml"], 2, r"--out /proc/testbed-issue19.toml: cannot"),
    (["--out", "{root}/afile/x.toml"], 2, r"--out {root}/afile/x.toml: {root}/afile is a file"),
    (["--out", "{root}/nonempty"], 2, r"--out {root}/nonempty is a folder, not a file"),
    *[([*argv, "--out", "{root}/fresh"], code, p) for argv, code, p in TOML_ROWS],
    (["--set", "seed=-1", "--out", "{root}/fresh"], 2, r"seed = -1 is out of range"),
]
COMPARE = [
    *OUT_DIR_ROWS,
    TOML_ROWS[0],
    TOML_ROWS[2],
    (["--seeds", "0"], 2, r"--seeds = 0: allowed >= 1"),
    (["--policies", "rcars", "nope"], 2, r"unknown policy 'nope'"),
    (["--checkpoint", "t2drl"], 2, r"expected NAME=RUN_DIR"),
]
TRAIN = [
    *OUT_DIR_ROWS,
    TOML_ROWS[1],
    TOML_ROWS[0],
    (["--threads", "0"], 2, r"--threads = 0: allowed >= 1"),
    (["--resume", "{root}/nonempty"], 2, r"not a run folder of `testbed train`"),
    (["--set", "allocator.nope=1"], 2, r"unknown D3PGConfig key\(s\) \['nope'\]"),
]
RAY_ROWS = [
    (["--ray", "10.0.0.1:99999"], 2, r"--ray '10.0.0.1:99999': expected HOST:PORT .* 1-65535"),
    (["--ray", "ray://head:port"], 2, r"--ray 'head:port': expected HOST:PORT"),
    (["--ray", ":6379"], 2, r"--ray ':6379': expected HOST:PORT"),
    (["--ray", "head"], 2, r"--ray 'head': expected HOST:PORT"),
]
EXPERIMENT = [
    *[(["fig7", *argv], code, p) for argv, code, p in [*OUT_DIR_ROWS, *RAY_ROWS]],
    (["fig8", "--workers", "0"], 2, r"--workers = 0: allowed >= 1"),
    (["fig7", "--resume", "{root}/missing"], 2, r"no such experiment folder"),
]
SWEEP_KEY = ["--set", "network.num_users=3,4"]
SWEEP = [
    *[([*SWEEP_KEY, *argv], code, p) for argv, code, p in [*OUT_DIR_ROWS, *RAY_ROWS[:2]]],
    ([*SWEEP_KEY, "--config", "{root}/deep.toml"], 2, r"deep.toml: .*nested too deep"),
    ([*SWEEP_KEY, "--workers", "0"], 2, r"--workers = 0: allowed >= 1"),
    (["--set", "seed=1,2"], 2, r"the seeds are swept by --seeds N"),
]
EXPORT = [
    (["{root}/fakerun", "--out", NOT_CREATABLE], 2, r"--out /proc/testbed-issue19/out: cannot"),
    (["{root}/fakerun", "--out", "{root}/afile"], 2, r"--out {root}/afile is a file"),
    (["{root}/fakerun", "--out", "{root}/afile/x"], 2, r"{root}/afile is a file, not a folder"),
    (["{root}/fakerun", "--out", "{root}/nonempty"], 2, r"exists and is not empty"),
    (["{root}/nonempty", "--out", "{root}/fresh"], 2, r"not a run of `testbed train`"),
    (["/proc/self", "--out", "{root}/fresh"], 2, r"/proc/self: not a run of `testbed train`"),
]
CURVES_RUN = ["{root}/trainrun", "--out", "{root}/fresh.png"]
CURVES = [
    (
        [*CURVES_RUN, "--metric", "nope"],
        2,
        r"--metric 'nope': not a column of {root}/trainrun/metrics.csv; allowed mean_slot_reward$",
    ),
    ([*CURVES_RUN, "--metric", "label"], 2, r"--metric 'label': .*allowed mean_slot_reward$"),
    ([*CURVES_RUN, "--window", "0"], 2, r"--window = 0: allowed >= 1"),
    (["{root}/trainrun", "--out", "{root}/fresh.txt"], 2, r"an image file ending in one of .*png"),
    (["{root}/trainrun", "--out", "/proc/testbed-issue19.png"], 2, r"cannot create it in /proc"),
    (["{root}/trainrun", "--out", "{root}/nonempty"], 2, r"is a folder, not a file"),
    (["{root}/noepisode", "--out", "{root}/fresh.png"], 2, r"metrics.csv .*no episode column"),
    (["{root}/missing", "--out", "{root}/fresh.png"], 2, r"not a run of `testbed train`"),
]
NODES = ["--edge", "127.0.0.1:1", "--users-node"]
SHORT_RUN = ["--episodes", "1", "--frames", "1", "--slots", "2"]
RUN = [
    *OUT_DIR_ROWS,
    TOML_ROWS[0],
    ([*NODES, "127.0.0.1:99999"], 2, r"--users-node '127.0.0.1:99999': .* port in 1-65535$"),
    ([*NODES, "127.0.0.1:0"], 2, r"--users-node '127.0.0.1:0': .* port in 1-65535$"),
    ([*NODES, "127.0.0.1:abc"], 2, r"--users-node '127.0.0.1:abc': expected HOST:PORT"),
    (["--edge", ":50051", "--users-node", "127.0.0.1:1"], 2, r"--edge ':50051': expected HOST"),
    ([*NODES, "10.0.0.1:50051"], 2, r"--users-node 10.0.0.1:50051: a non-loopback node needs"),
    (
        [*SHORT_RUN, "--inject", "edge-kill@2"],
        2,
        r"--inject edge-kill@2: SLOT must be in 0-1 \(the run has 2 slots",
    ),
    ([*SHORT_RUN, "--inject", "cloud-kill@99"], 2, r"--inject cloud-kill@99: SLOT must be in 0-1"),
    (["--request-timeout", "nan"], 2, r"--request-timeout = nan: allowed finite values > 0"),
    (["--start-timeout", "0"], 2, r"--start-timeout = 0.0: allowed finite values > 0"),
    (["--gallery", "-1"], 2, r"--gallery = -1: allowed >= 0"),
    (["--device", "nope"], 2, r"--device nope: not a torch device; allowed: cpu"),
]


@pytest.mark.parametrize(
    ("argv", "code", "pattern"),
    [
        *_table("simulate", SIMULATE),
        *_table("config", CONFIG),
        *_table("compare", COMPARE),
        *_table("train", TRAIN),
        *_table("experiment", EXPERIMENT),
        *_table("sweep", SWEEP),
        *_table("export", EXPORT),
        *_table("curves", CURVES),
        *_table("run", RUN),
    ],
)
def test_bad_input_is_one_line_before_anything_is_written(root, capsys, argv, code, pattern):
    _refused(root, capsys, argv, code, pattern)


# The nodes -----------------------------------------------------------------------------------


@pytest.fixture
def node_refused(root, capsys):
    """Run a node command, which must be refused in one line (exit 2) before it serves,
    writing nothing. It runs in a thread: a node that accepted the input would fail there
    (signal handlers belong to the main thread) instead of serving forever."""

    def refused(argv: list[str], pattern: str) -> None:
        before = _listing(root)
        args = ["--log-level", "error", *[item.format(root=root) for item in argv]]
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(main(args)))
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive() and codes == [2], codes
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert re.search(pattern.format(root=re.escape(str(root))), err), err
        assert _listing(root) == before

    return refused


LISTEN_ROWS = [
    (["--listen", "127.0.0.1:99999"], r"--listen '127.0.0.1:99999': .* port in 0-65535, 0: any"),
    (["--listen", "127.0.0.1:-1"], r"--listen '127.0.0.1:-1': expected HOST:PORT"),
    (["--listen", ":0"], r"--listen ':0': expected HOST:PORT"),
    (["--listen", "localhost"], r"--listen 'localhost': expected HOST:PORT"),
    (["--listen", "::1:0"], r"--listen '::1:0': expected HOST:PORT"),
    (["--config", "{root}/deep.toml"], r"scenario file {root}/deep.toml: .*nested too deep"),
    (["--config", "{root}/latin1.toml"], r"latin1.toml: not valid TOML: not UTF-8"),
]
"""What every node refuses: a malformed ``--listen`` and a bad scenario file."""


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--cloud", "127.0.0.1:99999"], r"--cloud '127.0.0.1:99999': .* port in 1-65535$"),
        (["--cloud", "127.0.0.1:0"], r"--cloud '127.0.0.1:0': .* port in 1-65535$"),
        (["--cloud", "127.0.0.1:abc"], r"--cloud '127.0.0.1:abc': expected HOST:PORT"),
        (["--cloud", "nocolon"], r"--cloud 'nocolon': expected HOST:PORT"),
        (["--cloud", "127.0.0.1:1", "--cache-dir", NOT_CREATABLE], r"--cache-dir .*: cannot"),
        (["--cloud", "127.0.0.1:1", "--cache-dir", "{root}/afile"], r"--cache-dir .* is a file"),
        *[(["--cloud", "127.0.0.1:1", *argv], p) for argv, p in LISTEN_ROWS],
    ],
)
def test_edge_node_checks_its_addresses_and_inputs(node_refused, argv, pattern) -> None:
    node_refused(["edge-node", *argv], pattern)


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        *LISTEN_ROWS,
        (["--listen", "127.0.0.1:65536"], r"--listen '127.0.0.1:65536': .* 0-65535"),
        (["--listen", "127.0.0.1: 5"], r"--listen '127.0.0.1: 5': expected HOST:PORT"),
        (["--config", "{root}/big.toml"], r"big.toml: 1,000,0\d\d bytes; allowed <= 1,000,000"),
        (["--threads", "0"], r"--threads = 0: allowed >= 1"),
    ],
)
def test_cloud_node_checks_its_addresses_and_inputs(node_refused, argv, pattern) -> None:
    node_refused(["cloud-node", *argv], pattern)


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--edge", "127.0.0.1:99999"], r"--edge '127.0.0.1:99999': .* port in 1-65535$"),
        (["--edge", "127.0.0.1:0"], r"--edge '127.0.0.1:0': .* port in 1-65535$"),
        (["--edge", "edge.example"], r"--edge 'edge.example': expected HOST:PORT"),
        (["--edge", "127.0.0.1:1", "--cloud", "127.0.0.1:x"], r"--cloud '127.0.0.1:x': expected"),
        *[(["--edge", "127.0.0.1:1", *argv], p) for argv, p in LISTEN_ROWS],
    ],
)
def test_ue_emulator_checks_its_addresses_and_inputs(node_refused, argv, pattern) -> None:
    node_refused(["ue-emulator", *argv], pattern)


def test_a_node_process_refuses_a_port_beyond_65535_instead_of_listening_elsewhere() -> None:
    """The node as its own process (what `testbed run` starts): ``--listen`` with port 99999
    once listened on another port and said so; now it exits 2 before it serves."""
    node = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "cloud-node", "--listen", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert node.returncode == 2 and node.stdout == ""  # no "listening on" line
    assert node.stderr.strip() == (
        "testbed: error: --listen '127.0.0.1:99999': expected HOST:PORT with a port in "
        "0-65535, 0: any free port"
    )


@pytest.mark.parametrize(
    ("address", "any_port", "expected"),
    [
        ("127.0.0.1:50051", False, ("127.0.0.1", 50051)),
        ("[::1]:1", False, ("[::1]", 1)),
        ("localhost:65535", False, ("localhost", 65535)),
        ("0.0.0.0:0", True, ("0.0.0.0", 0)),
    ],
)
def test_check_address_accepts_every_well_formed_address(address, any_port, expected) -> None:
    assert check_address("--flag", address, any_port=any_port) == expected


def test_check_address_allows_port_0_only_where_any_free_port_is_meant() -> None:
    with pytest.raises(UsageError, match=r"--cloud '127.0.0.1:0': .* port in 1-65535$"):
        check_address("--cloud", "127.0.0.1:0")


# Unexpected failures -------------------------------------------------------------------------


def test_an_unexpected_failure_is_one_line_with_its_traceback_in_a_named_file(capsys) -> None:
    """A disk that fills up while the scenario is written (``/dev/full``: every check passes,
    the write fails) is no input error: one line, exit 1, the traceback in the named file."""
    assert main(["config", "--out", "/dev/full", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    found = re.fullmatch(
        r"testbed: unexpected error: OSError: \[Errno 28\] No space left on device.* "
        r"\(traceback in (?P<log>\S+)\)\n",
        err,
    )
    assert found, err
    log = Path(found["log"])
    try:
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "No space left" in text
    finally:
        log.unlink()

"""The ``testbed`` command line: the root parser, its commands, and the one error and exit
path.

Each command is a module of :mod:`testbed.commands` (``register(subparsers)`` declares it,
``handle(options)`` runs it on typed options); other packages add theirs (``calibrate``,
``zoo``). Every input error is one line, ``testbed: error: ...``, exit code 2 (a traceback
with ``--debug``); any other failure is one line too, ``testbed: unexpected error: ...``, exit
code 1, its traceback written to the run folder's ``error.log`` (or a file the line names).
Ctrl-C exits with 130 and SIGTERM with 143, each saying what the command kept.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import traceback
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from testbed.commands.common import KEPT
from testbed.core.errors import TestbedError
from testbed.runs.interrupts import Interrupted, raise_interrupted
from testbed.runs.logs import LOG_LEVELS, configure_logging

COMMANDS = (
    "simulate",
    "compare",
    "train",
    "experiment",
    "sweep",
    "export",
    "curves",
    "run",
    "nodes",
    "config",
)
"""The modules of :mod:`testbed.commands`, in the order ``--help`` lists them."""
ERROR_LOG = "error.log"
"""The file of a run folder that holds the traceback of an unexpected error."""
PLUGINS = ("calibration.cli",)
"""Modules of other packages that add commands (imported only when present; they load
torch lazily)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed", description="Edge-AIGC testbed: simulate, calibrate, train, compare."
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="stdlib logging level (stderr)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback behind an input error"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        import_module(f"testbed.commands.{name}").register(subparsers)
    for plugin in PLUGINS:
        if find_spec(plugin) is not None:
            import_module(plugin).register(subparsers)
    return parser


def _error(exc: TestbedError) -> int:
    print(f"testbed: error: {exc}", file=sys.stderr)
    return 2


def _log_traceback(args: argparse.Namespace) -> Path:
    """Write the traceback being handled to the command's run folder (``--out`` or
    ``--resume``, where that folder exists) as :data:`ERROR_LOG`, else to a new file in the
    temporary folder; returns where it went."""
    text = traceback.format_exc()
    for flag in ("resume", "out"):
        folder = getattr(args, flag, None)
        if folder and Path(folder).is_dir():
            try:
                with open(Path(folder) / ERROR_LOG, "a") as fh:
                    fh.write(text)
                return Path(folder) / ERROR_LOG
            except OSError:
                break
    fd, name = tempfile.mkstemp(prefix="testbed-error-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except TestbedError as exc:  # a count below 1, refused while parsing
        return _error(exc)
    configure_logging(args.log_level)
    if threading.current_thread() is threading.main_thread():
        # a terminated run unwinds like Ctrl-C, so every writer keeps its finished rows
        signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        return int(args.handler(args) or 0)
    except TestbedError as exc:
        if args.debug:
            raise
        return _error(exc)
    except Exception as exc:  # a bug, or a failure no check foresaw: one line, traceback kept
        if args.debug:
            raise
        log = _log_traceback(args)
        print(
            f"testbed: unexpected error: {type(exc).__name__}: {exc} (traceback in {log})",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        name = "SIGTERM" if code == 143 else "Ctrl-C"
        kept = getattr(exc, KEPT, None)
        detail = f"; {kept}" if kept is not None else "; nothing had been written yet"
        print(f"testbed: stopped by {name}{detail}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

"""Stdlib logging for the CLI's ``--log-level``: one compact handler on stderr."""

from __future__ import annotations

import logging
import sys

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The values ``--log-level`` accepts, quietest last."""

_FORMAT = "testbed: %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "testbed-cli"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not at creation)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        del value


def configure_logging(level: str) -> None:
    """Send log records at ``level`` and above to stderr as ``testbed: LEVEL name: message``.

    Calling it again only changes the level: the handler is added once. Unlike
    :func:`logging.basicConfig`, which does nothing once the root logger has any
    handler, a later call (or one under pytest's log capture) still takes effect.
    """
    if level not in LOG_LEVELS:
        raise ValueError(f"--log-level must be one of {list(LOG_LEVELS)}, got {level!r}")
    root = logging.getLogger()
    if not any(handler.get_name() == _HANDLER_NAME for handler in root.handlers):
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.setLevel(level.upper())

"""Interruptions that keep finished work: SIGINT (Ctrl-C) and SIGTERM.

The CLI turns SIGTERM into :class:`Interrupted` (a ``KeyboardInterrupt``) so that every loop
unwinds the same way and its writers close; it exits with 130 after SIGINT and 143 after
SIGTERM. A loop whose state is only consistent at certain points (training: between
episodes) wraps itself in :class:`DeferredInterrupt`: the first signal only asks it to stop
at its next safe point, where it saves and raises; a second signal interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` is SIGINT or SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler that unwinds the stack like Ctrl-C does."""
    raise Interrupted(signum)


class DeferredInterrupt:
    """Within the block, the first SIGINT/SIGTERM sets :attr:`signum` and is otherwise
    ignored until :meth:`check`; a second one raises :class:`Interrupted` at once.
    Outside the main thread (where signals cannot be handled) it does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal arrived (call it at a safe point)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

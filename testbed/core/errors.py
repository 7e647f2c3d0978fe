"""The project's own error types: what the CLI answers with one line and exit code 2.

Every input problem a user can cause (a flag, a file, a key, a checkpoint) raises a
:class:`TestbedError` whose message names the flag or key and what is allowed; the CLI's
one top-level handler prints it as ``testbed: error: <message>`` (a traceback only with
``--debug``). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TestbedError(ValueError):
    """An input the testbed cannot use; the message names it and what is allowed."""

    __test__ = False  # not a pytest test class, despite the name


class UsageError(TestbedError):
    """A flag, or a combination of flags, that cannot be used."""


class CheckpointError(TestbedError):
    """A checkpoint or run folder that is missing, incomplete, corrupted or of another kind."""

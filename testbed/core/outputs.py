"""Output folders and files: never overwritten unasked, checked before anything is written.

A command first *checks* its output (:func:`check_out_dir`, :func:`check_out_file`) along
with every other input, and only then *claims* it (:func:`claim_out_dir`), so a bad input
leaves no trace on disk. An existing non-empty folder is refused unless the user passes
``--overwrite`` (the folder is then replaced whole: no stale file survives) or resumes it.
Small files that must never be half-written (manifests, summaries) go through
:func:`atomic_write_text`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from testbed.core.errors import UsageError


def _writable_ancestor(path: Path, flag: str) -> None:
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {ancestor} (permission denied)")
    try:  # what access() cannot tell (root in /proc, a full disk): try, leaving nothing
        os.rmdir(tempfile.mkdtemp(prefix=".testbed-probe-", dir=ancestor))
    except OSError as exc:
        raise UsageError(
            f"{flag} {path}: cannot create it in {ancestor} ({exc.strerror})"
        ) from None


def check_out_dir(
    path: str | Path,
    flag: str = "--out",
    overwrite: bool = False,
    resume: bool = False,
    resumable: bool = False,
) -> Path:
    """Refuse an output folder that cannot be (re)written; nothing is created here.

    ``resume``: the command continues the folder's run (it may hold files); ``resumable``:
    the command could, so the refusal says how.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        how = " or --resume to continue it" if resumable else ""
        raise UsageError(
            f"{flag} {path} exists and is not empty: pass --overwrite to replace it{how}"
        )
    if path.exists():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: cannot write in it (permission denied)")
    else:
        _writable_ancestor(path, flag)
    return path


def claim_out_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create the (checked) folder; with ``overwrite``, an existing one is replaced whole."""
    path = Path(path)
    if overwrite and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_out_file(path: str | Path, flag: str = "--out", overwrite: bool = False) -> Path:
    """Refuse an output file that exists (unless ``overwrite``) or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder, not a file")
    if path.exists() and not overwrite:
        raise UsageError(f"{flag} {path} exists: pass --overwrite to replace it")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: cannot write it (permission denied)")
    else:
        _writable_ancestor(path, flag)
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)

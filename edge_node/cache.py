"""The edge's model cache: the models it holds under capacity C, their files and their loading.

A frame's caching decision (the x of eq. (11d), already checked to fit C) arrives as a list of
model names. :meth:`ModelCache.apply` evicts every held model not in it (unloaded from the
inference worker once the jobs routed to it have run, then its folder deleted) and fills every
missing one: its files stream from the cloud into ``<root>/<model>/`` (:func:`write_weights`
checks each path, size and SHA-256), the folder is checked as a checkpoint and the worker loads
the model from THAT folder, so the edge runs the weights it received. A model counts as held,
and requests are routed to it, only once it is loaded. One decision is applied at a time.

If a fill fails, the decision stops there: evictions and earlier fills stay done, the failed
model's folder is deleted, and the next decision starts from what is held.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from edge_node.executor import ServeRequest
from edge_node.worker import Generation, InferenceWorker
from edge_node.zoo import TRANSFER_SUFFIXES, check_checkpoint
from testbed.core.errors import CheckpointError
from testbed.proto.cloud_pb2 import FileHeader, WeightsChunk
from testbed.proto.runtime import MAX_TRANSFER_BYTES
from testbed.proto.streams import shown

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class FillError(Exception):
    """The weights a fill received are unusable (a path, a size, a hash, the checkpoint)."""


class CacheBusy(Exception):
    """A caching decision arrived while another one is being applied."""


@dataclass(frozen=True)
class Fill:
    """One model streamed into the cache."""

    model: str
    bytes: int
    wall_s: float
    """Wall seconds of the paced stream: from its first message to its end."""


class ModelCache:
    """The models the edge holds, in folders under ``root``, loaded on ``worker``."""

    def __init__(self, root: Path, worker: InferenceWorker) -> None:
        self.root = root
        self.worker = worker
        self._held: dict[str, Path] = {}
        # Taken to route a job and to drop a model from `_held`: a job routed to a model is
        # queued on the worker before that model's unload, so it always finds it loaded.
        self._routing = threading.Lock()
        self._applying = threading.Lock()
        self._filling = ""

    def held(self) -> list[str]:
        """Models held now (loaded and routed to), in the order they were filled."""
        with self._routing:
            return list(self._held)

    def submit(
        self, model: str, request: ServeRequest, steps: int, ready_s: float
    ) -> Future[Generation] | None:
        """Queue a request on the worker if ``model`` is held; None if it is not."""
        with self._routing:
            folder = self._held.get(model)
            return None if folder is None else self.worker.submit(folder, request, steps, ready_s)

    def apply(
        self, models: Sequence[str], fetch: Callable[[str], Iterable[WeightsChunk]]
    ) -> tuple[list[str], list[Fill]]:
        """Hold exactly ``models``: evict the others, then fill each missing one from
        ``fetch(model)`` (the cloud's weight stream) in order. Returns (evicted, fills).

        Raises :class:`CacheBusy` if another decision is being applied, :class:`FillError` for
        unusable weights; the errors of ``fetch`` (the cloud's) pass through.
        """
        if not self._applying.acquire(blocking=False):
            doing = f"filling {self._filling!r}" if self._filling else "evicting"
            raise CacheBusy(f"another caching decision is being applied ({doing})")
        try:
            evicted = [model for model in self.held() if model not in models]
            for model in evicted:
                self._evict(model)
            held = self.held()
            fills = [self._fill(model, fetch) for model in models if model not in held]
            return evicted, fills
        finally:
            self._filling = ""
            self._applying.release()

    def _evict(self, model: str) -> None:
        with self._routing:
            folder = self._held.pop(model)
        self.worker.unload(folder).result()
        shutil.rmtree(folder)

    def _fill(self, model: str, fetch: Callable[[str], Iterable[WeightsChunk]]) -> Fill:
        folder = self.root / model
        shutil.rmtree(folder, ignore_errors=True)  # the leftover of an interrupted fill
        self._filling = model
        try:
            chunks = iter(fetch(model))
            # timed from the stream's first message, when the cloud's pacing starts: setting
            # up the call is no link time, and link time is what gets scaled to emulated s
            first = next(chunks, None)
            start_s = time.perf_counter()
            received = itertools.chain([] if first is None else [first], chunks)
            nbytes = write_weights(received, folder)
            wall_s = time.perf_counter() - start_s
            try:
                check_checkpoint(folder)
            except CheckpointError as exc:
                raise FillError(
                    f"{model!r}: the weights received are no checkpoint: {exc}"
                ) from None
            try:
                self.worker.load(folder).result()
            except Exception as exc:
                raise FillError(f"{model!r}: the weights received do not load: {exc}") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._routing:
            self._held[model] = folder
        return Fill(model, nbytes, wall_s)


def write_weights(chunks: Iterable[WeightsChunk], folder: Path) -> int:
    """Write a weight stream (a `FileHeader`, then its data, per file) into ``folder``, which
    must not exist; returns the bytes written. Every path must be relative, inside the folder
    and a `TRANSFER_SUFFIXES` file; every file must have its announced size and SHA-256; all
    of them together at most ``MAX_TRANSFER_BYTES``. Raises :class:`FillError` otherwise."""
    folder.mkdir(parents=True)
    total = 0
    current: _FileWriter | None = None
    seen: set[PurePosixPath] = set()
    try:
        for chunk in chunks:
            part = chunk.WhichOneof("part")
            if part == "file":
                if current is not None:
                    current.finish()
                relative = checked_relative_path(chunk.file.path)
                if relative in seen:
                    raise FillError(f"file {relative}: sent twice")
                seen.add(relative)
                total += chunk.file.size_bytes
                if total > MAX_TRANSFER_BYTES:
                    raise FillError(
                        f"file {relative}: the model exceeds {MAX_TRANSFER_BYTES} bytes"
                    )
                current = _FileWriter(folder / relative, chunk.file)
            elif part == "data" and current is not None:
                current.write(chunk.data)
            else:
                raise FillError("data: a weight stream sends a file header before each file's data")
        if current is None:
            raise FillError("the weight stream held no file")
        current.finish()
    finally:
        if current is not None:
            current.close()
    return total


def checked_relative_path(path: str) -> PurePosixPath:
    """``path`` as a relative POSIX path that stays inside its folder and names a file that may
    travel (`TRANSFER_SUFFIXES`); FillError otherwise (absolute, ``..``, a pickle, ...)."""
    relative = PurePosixPath(path)
    parts = path.split("/")
    if (
        relative.is_absolute()
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in parts)
        or relative.suffix not in TRANSFER_SUFFIXES
    ):
        raise FillError(
            f"file path {shown(path)}: allowed relative POSIX paths inside the model folder, "
            f"without '.' or '..', ending in {' or '.join(TRANSFER_SUFFIXES)}"
        )
    return relative


class _FileWriter:
    """One file of a weight stream being written, sized and hashed."""

    def __init__(self, target: Path, header: FileHeader) -> None:
        if not SHA256_HEX.fullmatch(header.sha256):
            raise FillError(f"file {header.path}: sha256 {shown(header.sha256)} is no hex digest")
        self.header = header
        target.parent.mkdir(parents=True, exist_ok=True)
        self.handle: BinaryIO = target.open("xb")
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.header.size_bytes:
            raise FillError(
                f"file {self.header.path}: more than size_bytes = {self.header.size_bytes}"
            )
        self.handle.write(data)
        self.digest.update(data)
        self.written += len(data)

    def finish(self) -> None:
        self.close()
        if self.written != self.header.size_bytes:
            raise FillError(
                f"file {self.header.path}: {self.written} of size_bytes = {self.header.size_bytes}"
            )
        if self.digest.hexdigest() != self.header.sha256:
            raise FillError(f"file {self.header.path}: its SHA-256 differs from the one announced")

    def close(self) -> None:
        self.handle.close()

"""The inference worker: one thread that owns a `RePaintExecutor` and serves jobs as they come.

A node's RPC threads receive uploads; when one completes they `submit` it here and wait on
the returned future. The worker takes the oldest job and, with it, every queued job of the
same model and step count (up to ``max_batch``): requests ready together run as one batch,
the rest first in, first out. Loading and unloading a model are queued like jobs, so they run
on the executor's own thread, after every job queued before them and before any queued
after them: a model is never unloaded under a job that was routed to it.

Per job it measures, in wall seconds from the upload's completion (the job's ``ready_s``):
``wait_s`` until its batch starts and ``generation_s`` until its batch's output is complete
(waiting included: the paper's eq. (8) has no queue, the live loop measures one). A failing
batch fails its jobs' futures with the exception; the worker goes on with the next job.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from edge_node.executor import RePaintExecutor, ServeRequest, check_dtype, resolve_device
from testbed.core.config import RepaintSettings
from testbed.core.errors import TestbedError
from testbed.proto.common_pb2 import RequestHeader, ResultHeader
from testbed.proto.streams import Refusal

DEFAULT_MAX_BATCH = 8
"""Most jobs in one batch (the executor's own default)."""
ECHOED_FIELDS = ("request_id", "height_px", "width_px", "channels", "output_bytes")
"""Fields of a request header that its result header repeats: the request and the reply's size."""
MEASURED_FIELDS = ("steps_run", "unet_calls", "batch_size", "wait_s", "generation_s")
"""Fields of a `Generation` that a result header reports."""


@dataclass(frozen=True)
class Generation:
    """What the worker measured of one job."""

    image: np.ndarray
    """Inpainted image, HWC float32 in [0, 1]."""
    steps_run: int
    unet_calls: int
    """UNet calls of the job's batch (one per step with jump_n_sample = 1)."""
    batch_size: int
    wait_s: float
    """From the upload's completion to the start of its batch (wall s)."""
    generation_s: float
    """From the upload's completion to its batch's output (wall s), waiting included."""


@dataclass(frozen=True, eq=False)  # compared by identity: a request holds arrays
class _Job:
    model: Path
    request: ServeRequest
    steps: int
    ready_s: float
    future: Future[Generation]


@dataclass(frozen=True, eq=False)
class _Call:
    """Work on the executor itself (load, unload), run in queue order."""

    run: Callable[[RePaintExecutor], None]
    future: Future[None]


class InferenceWorker:
    """A thread owning ``executor``: :meth:`submit` jobs, :meth:`load`/:meth:`unload` models,
    :meth:`close` when done. Models are checkpoint folders (the executor's key is the path)."""

    def __init__(self, executor: RePaintExecutor, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch = {max_batch}: allowed integers >= 1")
        self.executor = executor
        self.max_batch = max_batch
        self._queue: deque[_Job | _Call] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="inference-worker", daemon=True)
        self._thread.start()

    def submit(
        self, model: Path, request: ServeRequest, steps: int, ready_s: float
    ) -> Future[Generation]:
        """Queue ``request`` for ``steps`` denoising steps of ``model``; ``ready_s`` is the
        `time.perf_counter()` of its upload's completion."""
        future: Future[Generation] = Future()
        self._put(_Job(model, request, steps, ready_s, future))
        return future

    def load(self, model: Path) -> Future[None]:
        """Load ``model`` on the worker's thread (done when the future is)."""
        future: Future[None] = Future()
        self._put(_Call(lambda executor: executor.load(model), future))
        return future

    def unload(self, model: Path) -> Future[None]:
        """Unload ``model`` once every job queued before this call has run."""
        future: Future[None] = Future()
        self._put(_Call(lambda executor: executor.unload(model), future))
        return future

    def close(self) -> None:
        """Stop after the batch in progress; queued work fails with RuntimeError."""
        with self._ready:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._ready.notify()
        for task in pending:
            task.future.set_exception(RuntimeError("the inference worker has stopped"))
        self._thread.join()

    def _put(self, task: _Job | _Call) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the inference worker has stopped")
            self._queue.append(task)
            self._ready.notify()

    def _next(self) -> list[_Job] | _Call | None:
        """The next call, or the next batch: the oldest job and the queued jobs of its model
        and step count, taken up to the first queued call (which must see them done)."""
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            head = self._queue.popleft()
            if isinstance(head, _Call):
                return head
            batch = [head]
            for task in list(self._queue):
                if isinstance(task, _Call) or len(batch) == self.max_batch:
                    break
                if (task.model, task.steps) == (head.model, head.steps):
                    batch.append(task)
                    self._queue.remove(task)
            return batch

    def _serve(self) -> None:
        while (work := self._next()) is not None:
            if isinstance(work, _Call):
                self._run_call(work)
            else:
                self._run_batch(work)

    def _run_call(self, call: _Call) -> None:
        try:
            call.run(self.executor)
        except Exception as exc:  # reported to the caller; the worker keeps serving
            call.future.set_exception(exc)
        else:
            call.future.set_result(None)

    def _run_batch(self, batch: list[_Job]) -> None:
        start_s = time.perf_counter()
        head = batch[0]
        try:
            results = self.executor.inpaint(head.model, [job.request for job in batch], head.steps)
        except Exception as exc:  # reported to each waiting RPC; the worker keeps serving
            for job in batch:
                job.future.set_exception(exc)
            return
        end_s = time.perf_counter()
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(
                Generation(
                    image=result.image,
                    steps_run=result.steps,
                    unet_calls=result.unet_calls,
                    batch_size=result.batch_size,
                    wait_s=start_s - job.ready_s,
                    generation_s=end_s - job.ready_s,
                )
            )


def make_executor(
    device: str | None, threads: int | None, repaint: RepaintSettings, dtype: str = "float32"
) -> RePaintExecutor:
    """A node's RePaint executor on ``device`` (default: cuda if torch sees one, else cpu),
    with ``threads`` torch CPU threads for the whole process (default: torch's own), running
    ``repaint``'s resampling schedule (the calibration profile's ``[repaint]``, so that the
    node serves what the profile measured) with its UNet in ``dtype`` (`DTYPES`).
    `TestbedError` naming the device, thread count or dtype if torch cannot use them."""
    if threads is not None:
        if threads < 1:
            raise TestbedError(f"threads = {threads}: allowed integers >= 1")
        import torch

        torch.set_num_threads(threads)
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise TestbedError(f"device {device!r}: {exc}") from None
    try:
        check_dtype(dtype, resolved)
    except ValueError as exc:
        raise TestbedError(str(exc)) from None
    return RePaintExecutor(
        device=str(resolved),
        jump_length=repaint.jump_length,
        jump_n_sample=repaint.jump_n_sample,
        dtype=dtype,
    )


def wait_for(future: Future[Generation], timeout_s: float | None) -> Generation:
    """A submitted job's generation, as an RPC answers it: a failed job is INTERNAL (naming
    the failure) and one that outlasts the caller's remaining ``timeout_s`` DEADLINE_EXCEEDED."""
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        raise Refusal(
            grpc.StatusCode.DEADLINE_EXCEEDED, "generation: not done within the call's deadline"
        ) from None
    except Exception as exc:
        raise Refusal(
            grpc.StatusCode.INTERNAL, f"generation: failed: {type(exc).__name__}: {exc}"
        ) from None


def result_header(request: RequestHeader, generation: Generation, served_by: str) -> ResultHeader:
    """The `ResultHeader` of a request served here (no backhaul: nothing was forwarded): the
    request's `ECHOED_FIELDS` and the generation's `MEASURED_FIELDS`."""
    return ResultHeader(
        served_by=served_by,
        **{name: getattr(request, name) for name in ECHOED_FIELDS},
        **{name: getattr(generation, name) for name in MEASURED_FIELDS},
    )

"""How an experiment runs its tasks: in this process, in a local pool of processes that
survives a dead worker, or on Ray.

Every :class:`~testbed.lab.tasks.RunTask` is idempotent, so a task whose worker died (killed,
out of memory, a crash in native code) simply runs again in a new pool, and the numbers of
N workers are those of one.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from testbed.core.errors import UsageError
from testbed.lab.tasks import RunTask, run_task, task_complete, training_finished
from testbed.proto.security import check_address
from testbed.runs.folder import RunFolder

_log = logging.getLogger(__name__)

RAY_CONNECT_TIMEOUT_S = 10.0
"""Longest wait for a TCP connection to a Ray cluster's address (s), checked before Ray is
asked to join it: Ray itself retries an address where nothing listens for minutes, in
native code that no signal interrupts (a listening address that is not Ray's, Ray gives
up on by itself, in about 20 s)."""
MAX_POOL_RESTARTS = 3
"""How many times a local pool whose worker died is replaced before the experiment fails."""

TIMING = "timing.json"
"""An experiment's wall time and how it ran its tasks."""


def _start_worker() -> None:
    """A worker's start: one torch thread (the networks are small, and N workers share the
    machine's cores)."""
    import torch

    torch.set_num_threads(1)


@dataclass(frozen=True)
class Workers:
    """How an experiment runs its tasks: ``count`` processes (1: in this process, in order),
    with a progress bar over all of them if ``progress``."""

    count: int = 1
    progress: bool = False
    ray: str = ""
    """Empty: local processes. Otherwise the tasks go to Ray (the optional extra
    ``.[ray]``): ``local`` starts a Ray instance on this machine with ``count`` CPUs,
    ``auto`` joins the cluster this machine belongs to (``ray start``), anything else is
    the cluster's address (``ray.init(address=...)``); a Ray session this process already
    holds is used as it is. Each task runs in a temporary folder of its worker and its
    files come back through Ray's object store, so the nodes share no file system."""

    def run(self, name: str, tasks: Sequence[RunTask], done: Callable[[int], None]) -> None:
        """Run every task, calling ``done(index)`` here as each one finishes (in the tasks'
        order with one worker, as they finish with more)."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        if self.count < 1:
            raise ValueError(f"workers = {self.count}: allowed >= 1")
        logs = logging_redirect_tqdm() if self.progress else nullcontext()  # under the bar
        bar = tqdm(total=len(tasks), desc=name, unit="run", disable=not self.progress)

        def finished(index: int) -> None:
            bar.update()
            done(index)

        with logs, bar:
            if self.ray:
                _run_ray(self, tasks, finished)
            elif self.count == 1:
                for index, task in enumerate(tasks):
                    run_task(task)
                    finished(index)
            else:
                _run_restarting_pools(name, self.count, tasks, finished)


IN_THIS_PROCESS = Workers()
"""Every task in this process, one after the other, without a progress bar."""


def _run_restarting_pools(
    name: str, count: int, tasks: Sequence[RunTask], done: Callable[[int], None]
) -> None:
    """The tasks in a pool of ``count`` processes; when a worker dies, a new pool runs the
    unfinished ones (at most :data:`MAX_POOL_RESTARTS` times)."""
    pending = dict(enumerate(tasks))
    for restart in range(MAX_POOL_RESTARTS + 1):
        try:
            _run_pool(count, pending, done)
            return
        except BrokenProcessPool as exc:
            # its runs are unfinished, and tasks are idempotent, so a new pool runs them
            if restart == MAX_POOL_RESTARTS:
                raise
            _log.warning(
                "%s: a worker process died (%s); a new pool runs the %d unfinished runs",
                name,
                exc,
                len(pending),
            )


def _children() -> set[BaseProcess]:
    return set(multiprocessing.active_children())


def _run_pool(count: int, pending: dict[int, RunTask], done: Callable[[int], None]) -> None:
    """The tasks of ``pending`` in one pool, removing each from it as it finishes."""
    others = _children()  # what this process ran before the pool: never the pool's
    workers: set[BaseProcess] = set()
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=_start_worker)
    try:
        futures = {pool.submit(run_task, task): i for i, task in pending.items()}
        workers = _children() - others  # submitting started every worker the pool will have
        for future in as_completed(futures):
            future.result()
            index = futures[future]
            del pending[index]
            done(index)
    except BaseException:
        # Ctrl-C, SIGTERM, a failed run or a dead worker: stop the runs in flight too (an
        # unfinished run is trained again from scratch, so nothing finished is lost).
        # SIGKILL, since a worker blocked on the pool's queues never sees a SIGTERM, and
        # the pool's own shutdown waits for every worker to exit
        for process in workers | (_children() - others):
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def _run_ray(workers: Workers, tasks: Sequence[RunTask], done: Callable[[int], None]) -> None:
    """The tasks on Ray, one CPU each; finished ones (:func:`task_complete`) are skipped
    here, since the workers do not see this machine's folders."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        if workers.ray == "local":
            try:
                ray.init(num_cpus=workers.count, include_dashboard=False, log_to_driver=False)
            except Exception as exc:
                raise UsageError(f"--ray local: cannot start Ray: {exc}") from exc
        else:
            _join_ray_cluster(ray, workers.ray)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_run_packed)
        pending = {}
        for index, task in enumerate(tasks):
            if task_complete(task):
                done(index)
            else:
                files = _pack(Path(task.run_dir)) if training_finished(task) else {}
                pending[remote.remote(task, files)] = index
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            _unpack(ray.get(ready[0]), Path(tasks[index].run_dir))
            done(index)
    finally:
        if started:
            ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--ray needs the optional extra: pip install -e '.[ray]'") from exc
    return ray


def check_ray_reachable(address: str) -> str:
    """The ``host:port`` Ray dials for the cluster ``address`` (``auto``: the one this
    machine joined; ``ray://HOST:PORT``: a Ray Client server), once it has accepted a TCP
    connection within :data:`RAY_CONNECT_TIMEOUT_S`; else `UsageError` naming it. Nothing
    is started: a command checks this before it writes anything."""
    _import_ray()
    from ray._private.services import canonicalize_bootstrap_address

    client = address.startswith("ray://")
    try:
        target = canonicalize_bootstrap_address(address.removeprefix("ray://"))
    except Exception as exc:  # no cluster for `auto`, a malformed address
        raise UsageError(
            f"--ray {address}: {str(exc).rstrip('.')}; allowed local, auto or HOST:PORT of a "
            "running cluster"
        ) from None
    if target is None:
        raise UsageError(f"--ray {address}: no running Ray cluster found; use --ray local")
    host, _, port = target.rpartition(":")
    if client:  # Ray Client listens on its own port, on the resolved host
        port = address.rpartition(":")[2]
    if ":" in host and not host.startswith("["):  # an IPv6 host, as Ray writes it
        host = f"[{host}]"
    host, port_number = check_address("--ray", f"{host}:{port}")
    host = host.removeprefix("[").removesuffix("]")
    try:
        socket.create_connection((host, port_number), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"--ray {address}: nothing answers at {host}:{port_number} within "
            f"{RAY_CONNECT_TIMEOUT_S:g} s ({reason}); start the cluster (ray start --head) "
            "or use --ray local"
        ) from None
    return f"{host}:{port_number}"


def _join_ray_cluster(ray: Any, address: str) -> None:
    """``ray.init(address=...)`` once the address is reachable (:func:`check_ray_reachable`);
    `UsageError` naming it otherwise. Ray joins in this thread: a driver that joined from
    another one loses the processes Ray started for it when that thread ends."""
    target = check_ray_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:
        raise UsageError(f"--ray {address}: cannot reach Ray at {target}: {exc}") from exc


def _pack(folder: Path) -> dict[str, bytes]:
    """A run folder's files (relative path -> bytes), to travel through Ray."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _run_packed(task: RunTask, files: dict[str, bytes]) -> dict[str, bytes]:
    """A Ray task: run ``task`` in a temporary folder of the worker's machine, seeded with
    ``files`` (the driver's finished training run, if any, so that only its evaluation
    is left), and return the folder's files; the driver writes them into ``task.run_dir``.
    No shared file system is needed."""
    _start_worker()
    with tempfile.TemporaryDirectory(prefix="testbed-ray-") as tmp:
        folder = Path(tmp) / "run"
        _unpack(files, folder)
        run_task(replace(task, run_dir=str(folder)))
        return _pack(folder)


def _unpack(files: dict[str, bytes], run_dir: Path) -> None:
    """Write a run folder returned by :func:`_run_packed` in place of ``run_dir``."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for name, data in files.items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def timed(out: Path, workers: Workers, log: Callable[[str], None], run: Callable[[], Any]) -> None:
    """``run()``, then ``timing.json`` in ``out``: the wall time of this invocation (a
    resumed one counts only the runs it did) and how it ran them."""
    start = time.perf_counter()
    run()
    wall_s = time.perf_counter() - start
    record = {"wall_s": round(wall_s, 3), "workers": workers.count, "ray": workers.ray or None}
    RunFolder(out).write_json(TIMING, record)
    ray = f", Ray {workers.ray}" if workers.ray else ""
    log(f"{out.name}: {wall_s:.0f} s wall, {workers.count} worker(s){ray}")

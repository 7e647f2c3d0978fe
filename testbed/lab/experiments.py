"""The paper's experiments (Sec. 7.3): ``testbed experiment NAME [--quick]``.

=========  ==============================================================================
fig6a      converged reward of T2DRL vs the number of denoising steps L of the actor
fig6b      reward curves of T2DRL and DDPG-based T2DRL
fig7       hit ratio (7a) and utility (7b) vs U in {10, 12, 14, 16, 18}
fig8       hit ratio (8a) and utility (8b) vs C in {20, 22, ..., 32} GB
table3     decision time per slot vs U
=========  ==============================================================================

Figs. 7-8 compare T2DRL, DDPG-based T2DRL, SCHRS, RCARS and the exact optimiser. Every
point is the mean over seeds with a 95% Student-t interval; a learned policy is trained
with that seed and then evaluated, exploration off, on evaluation episodes that no policy
trained on, the same for every policy. Each experiment writes ``NAME.csv`` (one row per
run), ``NAME_summary.csv`` (means and intervals) and its PNG(s) into the output folder.
The ``--quick`` preset shrinks the training budget (and the L grid of fig6a) so that each
experiment finishes within ~10 minutes on a 2-core CPU; the figures of the full preset
take hours.

Every training run and every evaluation is a :class:`RunTask`, a seeded function of its
config to its folder under ``work/`` (:func:`run_task`), so that ``--workers N`` runs them in
N processes with the numbers of one, and a resumed experiment skips every finished folder.
table3 measures time and always runs alone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import UsageError
from testbed.core.metrics import summarise
from testbed.core.outputs import atomic_write_text
from testbed.core.seeding import EVAL_SEED_OFFSET, Role, policy_seed
from testbed.sim.policies import make_policies
from testbed.sim.runner import run

_log = logging.getLogger(__name__)


MAX_POOL_RESTARTS = 3
"""How many times a local pool whose worker died is replaced before the experiment fails."""

SWEEP_POLICIES = ("t2drl", "ddpg-t2drl", "schrs", "rcars", "optimal")
"""The policies of the sweeps (Figs. 7 and 8), Sec. 7.2's plus the exact optimiser."""


@dataclass(frozen=True)
class Budget:
    episodes: int
    """H, training episodes per learned run."""
    seeds: int
    """Seeds per point (>= 3 for the intervals)."""
    eval_episodes: int
    """Evaluation episodes per run."""
    quick: bool = False
    """The `--quick` preset (also shrinks the L grid of fig6a and the timing of table3)."""
    eval_every: int = 5
    """Episodes between the deterministic evaluations during training."""
    allocator: tuple[tuple[str, float], ...] = ()
    """Overrides of the allocator's config (e.g. a shorter warm-up for short budgets)."""
    caching: tuple[tuple[str, float], ...] = ()
    """Overrides of the caching agent's config."""
    policies: tuple[str, ...] = SWEEP_POLICIES
    """The policies the sweeps (Figs. 7 and 8) compare."""
    preset: str = "default"
    """The training preset of the learned runs (``agents.t2drl.PRESETS``): `default`, the
    paper's agents as documented in docs/results.md, unless ``--preset`` says otherwise."""


BUDGETS = {
    # 400 training slots: warm-ups short enough that both agents do learn
    "quick": Budget(
        eval_every=1,
        episodes=4,
        seeds=3,
        eval_episodes=1,
        quick=True,
        allocator=(("warmup", 200),),
        caching=(("warmup", 16), ("batch_size", 16)),
    ),
    "full": Budget(episodes=500, seeds=3, eval_episodes=5),
}


@dataclass(frozen=True)
class RunTask:
    """One run of an experiment, a pure function of these fields to the folder ``run_dir``
    (:func:`run_task`): picklable and seeded, sharing no state with any other run, so that
    it runs in any process. A folder that already holds the run, finished, is kept: a
    resumed experiment skips it."""

    run_dir: str
    """The run's folder (under the experiment's ``work/``)."""
    scenario: dict[str, Any]
    """``ScenarioConfig.to_dict()`` of the run, its seed the run's seed."""
    policy: str
    """The evaluated policy, or the agent of a training run."""
    seed: int
    train: dict[str, Any] | None = None
    """The ``TrainConfig`` fields of the learned run trained into ``run_dir`` first (None: a
    baseline, nothing to train)."""
    eval_episodes: int = 0
    """Evaluation episodes, exploration off, on run seed ``seed + EVAL_SEED_OFFSET``, their
    metrics written to ``run_dir/eval.json``; 0 for a training run only (the curves)."""


def run_task(task: RunTask) -> Path:
    """Train (if ``task.train``) and evaluate (if ``task.eval_episodes``) into
    ``task.run_dir``, unless it already holds them, finished; returns the folder."""
    run_dir = Path(task.run_dir)
    scenario = ScenarioConfig.from_dict(task.scenario)
    start = time.perf_counter()
    if task.train is not None:
        from agents.t2drl import TrainConfig

        _train_once(TrainConfig(**task.train), scenario, run_dir)
    if not task.eval_episodes or _evaluated(task):
        return run_dir
    eval_config = scenario.replace(seed=task.seed + EVAL_SEED_OFFSET)
    catalogue = build_catalogue(scenario.catalogue)
    if task.train is not None:
        caching, allocation = make_policies(task.policy, scenario, catalogue, checkpoint=run_dir)
    else:
        caching, allocation = make_policies(task.policy, eval_config, catalogue)
    summary, _ = run(eval_config, caching, allocation, task.eval_episodes, catalogue=catalogue)
    result = {
        "utility": summary.utility,
        "hit_ratio": summary.hit_ratio,
        "violation_rate": summary.violation_rate,
        "mean_slot_reward": summary.mean_slot_reward,
        "decision_ms_per_slot": summary.decision_ms_per_slot,
        "wall_s": time.perf_counter() - start,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"task": _identity(task), "result": result}
    atomic_write_text(run_dir / "eval.json", json.dumps(record, indent=2))
    return run_dir


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def _identity(task: RunTask) -> dict[str, Any]:
    """What an evaluation's results depend on: the task without its folder (a moved
    experiment keeps its runs)."""
    return _as_json({k: v for k, v in asdict(task).items() if k != "run_dir"})


def _trained(run_dir: Path, settings: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds the training run of ``settings`` (TrainConfig fields),
    finished."""
    manifest, stored = run_dir / "checkpoint" / "manifest.json", run_dir / "train.json"
    return (
        manifest.is_file()
        and stored.is_file()
        and json.loads(stored.read_text()) == _as_json(settings)
        and json.loads(manifest.read_text())["episode"] == settings["episodes"]
    )


def _evaluated(task: RunTask) -> bool:
    """Whether ``task.run_dir`` holds this task's evaluation."""
    result = Path(task.run_dir) / "eval.json"
    return result.is_file() and json.loads(result.read_text())["task"] == _identity(task)


def _start_worker() -> None:
    import torch

    torch.set_num_threads(1)


def task_complete(task: RunTask) -> bool:
    """Whether ``task.run_dir`` already holds the task's results, finished (then a run of
    it would change nothing)."""
    trained = task.train is None or _trained(Path(task.run_dir), task.train)
    return trained and (not task.eval_episodes or _evaluated(task))


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
    import tempfile

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
        with logs, bar:
            if self.ray:
                self._run_ray(tasks, done, bar)
                return
            if self.count == 1:
                for index, task in enumerate(tasks):
                    run_task(task)
                    bar.update()
                    done(index)
                return
            pending = dict(enumerate(tasks))
            for restart in range(MAX_POOL_RESTARTS + 1):
                try:
                    self._run_pool(pending, done, bar)
                    return
                except BrokenProcessPool as exc:
                    # a worker died (killed, out of memory, a crash in native code): its
                    # runs are unfinished, and tasks are idempotent, so a new pool runs them
                    if restart == MAX_POOL_RESTARTS:
                        raise
                    _log.warning(
                        "%s: a worker process died (%s); a new pool runs the %d unfinished runs",
                        name,
                        exc,
                        len(pending),
                    )

    def _run_pool(self, pending: dict[int, RunTask], done: Callable[[int], None], bar) -> None:
        """The tasks of ``pending`` in one pool, removing each from it as it finishes."""
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.count, mp_context=context, initializer=_start_worker)
        futures = {pool.submit(run_task, task): i for i, task in pending.items()}
        processes = list((getattr(pool, "_processes", None) or {}).values())
        try:
            for future in as_completed(futures):
                future.result()
                index = futures[future]
                del pending[index]
                bar.update()
                done(index)
        except BaseException:
            # Ctrl-C, SIGTERM, a failed run or a dead worker: stop the runs in flight too (an
            # unfinished run is trained again from scratch, so nothing finished is lost).
            # SIGKILL, since a worker blocked on the pool's queues never sees a SIGTERM, and
            # the pool's own shutdown waits for every worker to exit
            for process in processes + list((getattr(pool, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()

    def _run_ray(self, tasks: Sequence[RunTask], done: Callable[[int], None], bar) -> None:
        """The tasks on Ray, one CPU each; finished ones (:func:`task_complete`) are skipped
        here, since the workers do not see this machine's folders."""
        try:
            import ray
        except ImportError as exc:
            raise UsageError("--ray needs the optional extra: pip install -e '.[ray]'") from exc
        started = False
        if not ray.is_initialized():
            try:
                if self.ray == "local":
                    ray.init(num_cpus=self.count, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=self.ray, log_to_driver=False)
            except Exception as exc:
                raise UsageError(f"--ray {self.ray}: cannot start or reach Ray: {exc}") from exc
            started = True
        try:
            remote = ray.remote(num_cpus=1)(_run_packed)
            pending = {}
            for index, task in enumerate(tasks):
                if task_complete(task):
                    bar.update()
                    done(index)
                else:
                    run_dir = Path(task.run_dir)
                    trained = task.train is not None and _trained(run_dir, task.train)
                    pending[remote.remote(task, _pack(run_dir) if trained else {})] = index
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready[0])
                _unpack(ray.get(ready[0]), Path(tasks[index].run_dir))
                bar.update()
                done(index)
        finally:
            if started:
                ray.shutdown()


def _train_settings(
    budget: Budget, agent: str, seed: int, eval_every: int, allocator: dict | None = None
) -> dict[str, Any]:
    """The ``TrainConfig`` fields of a learned run of an experiment."""
    from agents.t2drl import TrainConfig

    settings = TrainConfig(
        agent=agent,
        preset=budget.preset,
        episodes=budget.episodes,
        seed=seed,
        allocator={**dict(budget.allocator), **(allocator or {})},
        caching=dict(budget.caching),
        checkpoint_every=10_000,
        eval_every=eval_every,
    )
    return asdict(settings)


def _train_once(settings, scenario: ScenarioConfig, run_dir: Path) -> None:
    """Train into ``run_dir`` unless it already holds this run, finished (a resumed
    experiment keeps it); an unfinished one is trained again from scratch."""
    from testbed.training.trainer import train

    if _trained(run_dir, asdict(settings)):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    train(settings, scenario, run_dir)


def _plot_lines(
    summary: pd.DataFrame,
    x: str,
    metric: str,
    group: str,
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, part in summary.groupby(group, sort=False):
        ax.errorbar(
            part[x],
            part[metric],
            yerr=part[f"{metric}_ci95"],
            marker="o",
            capsize=3,
            label=str(name),
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SWEEP_METRICS = (
    "utility",
    "hit_ratio",
    "violation_rate",
    "mean_slot_reward",
    "decision_ms_per_slot",
)


def _point_folder(key: str, value: Any) -> str:
    """The work folder of one point of a sweep, e.g. ``users10`` or
    ``catalogue.cache_capacity_gb24.5`` (characters a path cannot hold become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{key}{value}")


def _sweep(
    name: str,
    key: str,
    label: str,
    values: Sequence[float],
    budget: Budget,
    out: Path,
    configure: Callable[[float], ScenarioConfig],
    log: Callable[[str], None],
    workers: Workers,
) -> None:
    tasks, points = [], []
    for value in values:
        scenario = configure(value)
        point = _point_folder(key, value)
        for policy in budget.policies:
            for seed in range(budget.seeds):
                settings = None
                if policy in ("t2drl", "ddpg-t2drl"):  # evaluated afterwards, on own episodes
                    # the full budget's evaluation curve shows each run's convergence
                    every = budget.episodes if budget.quick else budget.eval_every
                    settings = _train_settings(budget, policy, seed, eval_every=every)
                tasks.append(
                    RunTask(
                        run_dir=str(out / "work" / point / f"{policy}_seed{seed}"),
                        scenario=scenario.replace(seed=seed).to_dict(),
                        policy=policy,
                        seed=seed,
                        train=settings,
                        eval_episodes=budget.eval_episodes,
                    )
                )
                points.append({key: value, "policy": policy, "seed": seed})
    finished: dict[int, dict] = {}

    def done(index: int) -> None:
        result = json.loads((Path(tasks[index].run_dir) / "eval.json").read_text())["result"]
        point = points[index]
        finished[index] = {**point, **result}
        log(
            f"{name} {key}={point[key]} {point['policy']} seed {point['seed']}: utility "
            f"{result['utility']:.3f} hit {result['hit_ratio']:.3f} ({result['wall_s']:.1f} s)"
        )
        rows = [finished[i] for i in sorted(finished)]  # the tasks' order, whatever finished
        atomic_write_text(out / f"{name}.csv", pd.DataFrame(rows).to_csv(index=False))

    workers.run(name, tasks, done)
    rows = [finished[i] for i in range(len(tasks))]
    summary = summarise(pd.DataFrame(rows), [key, "policy"], SWEEP_METRICS)
    summary.to_csv(out / f"{name}_summary.csv", index=False)
    learned = [(i, task) for i, task in enumerate(tasks) if task.train is not None]
    if learned:
        checks = [
            {**points[i], **convergence(pd.read_csv(Path(task.run_dir) / "metrics.csv"))}
            for i, task in learned
        ]
        _write_convergence(name, pd.DataFrame(checks), out, log)
    note = f"H={budget.episodes}, {budget.seeds} seeds, 95% CI"
    _plot_lines(
        summary,
        key,
        "hit_ratio",
        "policy",
        out / f"{name}a.png",
        label,
        "model hit ratio",
        f"{name}a: hit ratio ({note})",
    )
    _plot_lines(
        summary,
        key,
        "utility",
        "policy",
        out / f"{name}b.png",
        label,
        "utility, eq. (11) (lower is better)",
        f"{name}b: utility ({note})",
    )


def fig7(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = Workers()
) -> None:
    base = ScenarioConfig()
    _sweep(
        "fig7",
        "users",
        "number of users U",
        [10, 12, 14, 16, 18],
        budget,
        out,
        lambda u: base.replace(**{"network.num_users": int(u)}),
        log,
        workers,
    )


def fig8(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = Workers()
) -> None:
    base = ScenarioConfig()
    _sweep(
        "fig8",
        "capacity_gb",
        "edge storage C (GB)",
        [20, 22, 24, 26, 28, 30, 32],
        budget,
        out,
        lambda c: base.replace(**{"catalogue.cache_capacity_gb": float(c)}),
        log,
        workers,
    )


def _curves(
    name: str,
    variants: dict[str, tuple[str, dict]],
    budget: Budget,
    out: Path,
    log: Callable[[str], None],
    workers: Workers,
) -> pd.DataFrame:
    """Train every variant on every seed; returns the stacked metrics.csv rows."""
    tasks, labels = [], []
    for label, (agent, allocator) in variants.items():
        for seed in range(budget.seeds):
            tasks.append(
                RunTask(
                    run_dir=str(out / "work" / f"{label}_seed{seed}"),
                    scenario=ScenarioConfig().replace(seed=seed).to_dict(),
                    policy=agent,
                    seed=seed,
                    train=_train_settings(budget, agent, seed, budget.eval_every, allocator),
                )
            )
            labels.append((label, seed))
    frames: dict[int, pd.DataFrame] = {}

    def done(index: int) -> None:
        label, seed = labels[index]
        metrics = pd.read_csv(Path(tasks[index].run_dir) / "metrics.csv")
        metrics.insert(0, "variant", label)
        metrics.insert(1, "seed", seed)
        frames[index] = metrics
        log(
            f"{name} {label} seed {seed}: last mean slot reward "
            f"{metrics['mean_slot_reward'].iloc[-1]:.3f}"
        )
        stacked = pd.concat([frames[i] for i in sorted(frames)])  # the tasks' order
        atomic_write_text(out / f"{name}.csv", stacked.to_csv(index=False))

    workers.run(name, tasks, done)
    checks = [
        {"variant": label, "seed": seed, **convergence(frames[i], "eval_mean_slot_reward")}
        for i, (label, seed) in enumerate(labels)
    ]
    _write_convergence(name, pd.DataFrame(checks), out, log)
    return pd.concat([frames[i] for i in range(len(tasks))])


CONVERGENCE_TAIL = 0.2
"""The share of a training run's evaluation curve whose flatness says it has converged."""
FLAT_DRIFT = 0.01
"""A curve is flat when the least-squares line through its tail moves by at most this share
of the tail's mean over the tail."""


def convergence(
    metrics: pd.DataFrame, column: str = "eval_utility", tail: float = CONVERGENCE_TAIL
) -> dict[str, Any]:
    """Whether a training run (its ``metrics.csv``) has converged: its deterministic
    evaluations (exploration off, every ``eval_every`` episodes) over the last ``tail`` of
    training. ``drift`` is how far the least-squares line through them moves across that
    window, ``spread`` their max - min, both as shares of their mean |value|; ``flat`` is
    ``drift <= FLAT_DRIFT`` (a curve with fewer than 3 points in its tail is not judged)."""
    evals = metrics.dropna(subset=[column])
    episodes = evals["episode"].to_numpy(dtype=float)
    values = evals[column].to_numpy(dtype=float)
    start = metrics["episode"].max() + 1 - max(1, round(tail * len(metrics)))
    window = episodes >= start
    x, y = episodes[window], values[window]
    result: dict[str, Any] = {
        "eval_points": len(values),
        "tail_points": len(y),
        "tail_mean": float(y.mean()) if len(y) else float("nan"),
        "drift": float("nan"),
        "spread": float("nan"),
        "flat": False,
    }
    if len(y) >= 3:
        scale = max(abs(float(y.mean())), 1e-12)
        slope = float(np.polyfit(x, y, 1)[0])
        result["drift"] = abs(slope) * float(x[-1] - x[0]) / scale
        result["spread"] = float(y.max() - y.min()) / scale
        result["flat"] = bool(result["drift"] <= FLAT_DRIFT)
    return result


def _write_convergence(
    name: str, checks: pd.DataFrame, out: Path, log: Callable[[str], None]
) -> None:
    """``<name>_convergence.csv``: :func:`convergence` of every learned run of an experiment."""
    atomic_write_text(out / f"{name}_convergence.csv", checks.to_csv(index=False))
    judged = checks[checks["tail_points"] >= 3]
    log(
        f"{name}: {int(judged['flat'].sum())} of {len(judged)} learned runs flat over the last "
        f"{CONVERGENCE_TAIL:.0%} of training (largest drift {judged['drift'].max():.2%})"
        if len(judged)
        else f"{name}: too few evaluations to judge convergence"
    )


def _smoothed_last(metrics: pd.DataFrame, fraction: float = 0.1) -> float:
    """The 'converged' reward: the deterministic evaluations (exploration off) over the last
    10% of training (at least the last one)."""
    evals = metrics.dropna(subset=["eval_mean_slot_reward"])
    tail = max(1, round(len(evals) * fraction))
    return float(evals["eval_mean_slot_reward"].iloc[-tail:].mean())


def fig6a(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = Workers()
) -> None:
    steps = [1, 3, 5] if budget.quick else [1, 2, 3, 5, 8, 10]
    variants = {f"L={s}": ("t2drl", {"denoising_steps": s}) for s in steps}
    rows = _curves("fig6a", variants, budget, out, log, workers)
    converged = (
        rows.groupby(["variant", "seed"], sort=False)
        .apply(_smoothed_last, include_groups=False)
        .rename("converged_reward")
        .reset_index()
    )
    converged["L"] = converged["variant"].str.slice(2).astype(int)
    summary = summarise(converged, ["L"], ["converged_reward"])
    summary.to_csv(out / "fig6a_summary.csv", index=False)
    summary["agent"] = "t2drl"
    _plot_lines(
        summary,
        "L",
        "converged_reward",
        "agent",
        out / "fig6a.png",
        "denoising steps L of the actor",
        "converged mean slot reward, eq. (23)",
        f"fig6a (H={budget.episodes}, {budget.seeds} seeds, 95% CI)",
    )


def fig6b(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = Workers()
) -> None:
    variants = {"t2drl": ("t2drl", {}), "ddpg-t2drl": ("ddpg-t2drl", {})}
    rows = _curves("fig6b", variants, budget, out, log, workers)
    summary = summarise(rows, ["variant", "episode"], ["mean_slot_reward", "episode_reward"])
    summary.to_csv(out / "fig6b_summary.csv", index=False)
    evals = rows.dropna(subset=["eval_mean_slot_reward"])
    eval_summary = summarise(evals, ["variant", "episode"], ["eval_mean_slot_reward"])
    eval_summary.to_csv(out / "fig6b_eval_summary.csv", index=False)
    _plot_lines(
        eval_summary,
        "episode",
        "eval_mean_slot_reward",
        "variant",
        out / "fig6b_eval.png",
        "episode",
        "mean slot reward, exploration off",
        f"fig6b, evaluation on an unseen episode (H={budget.episodes}, {budget.seeds} seeds)",
    )
    _plot_lines(
        summary,
        "episode",
        "mean_slot_reward",
        "variant",
        out / "fig6b.png",
        "episode",
        "mean slot reward, eq. (23)",
        f"fig6b (H={budget.episodes}, {budget.seeds} seeds, 95% CI)",
    )


def table3(
    budget: Budget, out: Path, log: Callable[[str], None], workers: Workers = Workers()
) -> None:
    """Decision time per slot vs U; the learned policies' time does not depend on training.

    Always sequential, in this process, whatever ``workers`` says: it measures time, and
    runs sharing the CPU would measure each other."""
    from agents.t2drl import LearnedAllocation, T2DRLAgents, TrainConfig
    from testbed.core.system_model import popular_cache
    from ue_emulator.world import World

    slots = 10 if budget.quick else 200
    rows = []
    for users in (10, 12, 14, 16, 18):
        config = ScenarioConfig().replace(**{"network.num_users": users})
        catalogue = build_catalogue(config.catalogue)
        world = World(config)
        for seed in range(budget.seeds):
            world.reset(seed)
            frame = world.begin_frame()
            cache = popular_cache(config, catalogue, frame.gamma)
            samples = [world.next_slot() for _ in range(min(slots, config.timing.slots_per_frame))]
            policies = {
                name: LearnedAllocation(
                    T2DRLAgents(
                        config, TrainConfig(agent=name, seed=seed, preset=budget.preset)
                    ).allocator,
                    config,
                    catalogue,
                    name,
                )
                for name in ("t2drl", "ddpg-t2drl")
            }
            policies.update(
                {n: make_policies(n, config, catalogue)[1] for n in ("schrs", "optimal")}
            )
            for name, policy in policies.items():
                policy.reset(policy_seed(seed, 0, Role.ALLOCATION))
                repeats = max(1, slots // len(samples))
                start = time.perf_counter()
                for _ in range(repeats):
                    for slot in samples:
                        policy.allocate(slot, cache)
                ms = (time.perf_counter() - start) / (repeats * len(samples)) * 1e3
                rows.append(
                    {"users": users, "policy": name, "seed": seed, "decision_ms_per_slot": ms}
                )
        log(f"table3 U={users} done")
    frame_rows = pd.DataFrame(rows)
    frame_rows.to_csv(out / "table3.csv", index=False)
    summary = summarise(frame_rows, ["users", "policy"], ["decision_ms_per_slot"])
    summary.to_csv(out / "table3_summary.csv", index=False)
    wide = summary.pivot(index="policy", columns="users", values="decision_ms_per_slot")
    lines = [
        "| policy | " + " | ".join(f"U={u}" for u in wide.columns) + " |",
        "|---" * (len(wide.columns) + 1) + "|",
    ]
    lines += [
        f"| {p} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for p, row in wide.iterrows()
    ]
    (out / "table3.md").write_text("\n".join(lines) + "\n")
    summary["label"] = summary["policy"]
    _plot_lines(
        summary,
        "users",
        "decision_ms_per_slot",
        "label",
        out / "table3.png",
        "number of users U",
        "decision time per slot (ms)",
        "table3",
    )


EXPERIMENTS: dict[str, Callable[[Budget, Path, Callable[[str], None], Workers], None]] = {
    "fig6a": fig6a,
    "fig6b": fig6b,
    "fig7": fig7,
    "fig8": fig8,
    "table3": table3,
}


def make_budget(
    quick: bool,
    seeds: int | None = None,
    episodes: int | None = None,
    preset: str | None = None,
    policies: Sequence[str] | None = None,
) -> Budget:
    """The quick or full budget with the caller's overrides (None keeps the budget's)."""
    budget = BUDGETS["quick" if quick else "full"]
    if seeds is not None or episodes is not None:
        budget = replace(budget, episodes=episodes or budget.episodes, seeds=seeds or budget.seeds)
    if preset is not None:
        budget = replace(budget, preset=preset)
    if policies is not None:
        unknown = sorted(set(policies) - set(SWEEP_POLICIES))
        if unknown:
            raise ValueError(f"policies {unknown}: allowed {list(SWEEP_POLICIES)}")
        budget = replace(budget, policies=tuple(policies))
    return budget


def run_sweep(
    base: ScenarioConfig,
    key: str,
    values: Sequence[float],
    out: Path,
    budget: Budget,
    log: Callable[[str], None] = _log.info,
    workers: int = 1,
    progress: bool = False,
    ray: str = "",
) -> Path:
    """``testbed sweep``: every policy of ``budget`` at every value of the scenario key
    ``key`` (dotted, e.g. ``network.num_users``) over ``base``, ``budget.seeds`` seeds each,
    the learned ones trained first; the same tasks, folders, CSVs and plots as Figs. 7-8
    (``sweep.csv``, ``sweep_summary.csv``, ``sweepa.png`` hit ratio and ``sweepb.png``
    utility against the key). Finished runs in ``out`` are skipped."""
    if workers < 1:
        raise ValueError(f"workers = {workers}: allowed >= 1")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _sweep(
        "sweep",
        key,
        key,
        values,
        budget,
        out,
        lambda value: base.replace(**{key: value}),
        log,
        Workers(workers, progress, ray),
    )
    _write_timing(out, time.perf_counter() - start, workers, ray, log)
    return out


def run_experiment(
    name: str,
    out: Path,
    quick: bool,
    log: Callable[[str], None] = _log.info,
    seeds: int | None = None,
    episodes: int | None = None,
    preset: str | None = None,
    workers: int = 1,
    progress: bool = False,
    policies: Sequence[str] | None = None,
    ray: str = "",
) -> Path:
    """Run experiment ``name`` into ``out``, its runs ``workers`` at a time in as many
    processes (1: one after the other in this process), with a progress bar over them if
    ``progress``. Finished runs already in ``out`` (from an interrupted run of the same
    experiment) are kept and skipped. ``policies`` narrows the sweeps' policies; ``ray``
    sends the runs to Ray instead (:class:`Workers`)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    if workers < 1:
        raise ValueError(f"workers = {workers}: allowed >= 1")
    budget = make_budget(quick, seeds, episodes, preset, policies)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    EXPERIMENTS[name](budget, out, log, Workers(workers, progress, ray))
    _write_timing(out, time.perf_counter() - start, workers, ray, log)
    return out


def _write_timing(
    out: Path, wall_s: float, workers: int, ray: str, log: Callable[[str], None]
) -> None:
    """``timing.json``: the wall time of this invocation (a resumed one counts only the runs
    it did) and how it ran them."""
    record = {"wall_s": round(wall_s, 3), "workers": workers, "ray": ray or None}
    atomic_write_text(out / "timing.json", json.dumps(record, indent=2))
    log(f"{out.name}: {wall_s:.0f} s wall, {workers} worker(s){f', Ray {ray}' if ray else ''}")


def plot_training_curves(
    run_dirs: Sequence[Path], path: Path, metric: str = "mean_slot_reward", window: int = 10
) -> pd.DataFrame:
    """Overlay the ``metrics.csv`` curves of training runs (moving average over ``window``).

    Returns the plotted (smoothed) curves, one column per run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for run_dir in run_dirs:
        metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
        if metric not in metrics:
            raise ValueError(f"{run_dir}/metrics.csv has no column {metric!r}")
        metrics = metrics.dropna(subset=[metric])  # eval_* columns: every eval_every episodes
        smooth = metrics[metric].rolling(window, min_periods=1).mean()
        curves[Path(run_dir).name] = smooth.to_numpy()
        ax.plot(metrics["episode"], smooth, label=Path(run_dir).name)
    ax.set_xlabel("episode")
    ax.set_ylabel(f"{metric} (moving average of {window})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return pd.DataFrame({k: pd.Series(v) for k, v in curves.items()})

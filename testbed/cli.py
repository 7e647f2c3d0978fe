"""The ``testbed`` command line.

``testbed simulate`` plays a policy on a scenario and writes a run folder:
``trace.parquet`` (one row per user and slot), ``metrics.csv`` (one row per episode),
``config.toml`` (the full scenario), ``summary.json`` (eq. (11) utility, hit ratio, (11h)
violation rate, decision time) and ``run.json`` (git revision, package versions, device,
command line).

Every scenario key and every training option can be set from the command line with
``--set SECTION.KEY=VALUE`` (repeatable; VALUE is read as TOML, e.g. ``--set
network.num_users=14``, ``--set train.eval_every=10``, ``--set allocator.warmup=200``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
import tomllib
from dataclasses import asdict, fields
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from testbed.core.config import (
    ScenarioConfig,
    build_catalogue,
    load_config,
    save_config,
)
from testbed.core.errors import TestbedError, UsageError
from testbed.core.outputs import atomic_write_text, check_out_dir, check_out_file, claim_out_dir
from testbed.proto.security import (
    add_security_flags,
    child_security,
    redacted_argv,
    security_from_args,
)
from testbed.runs.interrupts import Interrupted, raise_interrupted
from testbed.runs.logs import LOG_LEVELS, configure_logging
from testbed.runs.provenance import run_metadata
from testbed.sim.policies import COMPOSITE, LEARNED, POLICIES, learned_parts

log = logging.getLogger("testbed")
_EXPERIMENT_LOG = logging.getLogger("testbed.lab.experiments")

# Subcommands that other packages add (imported only when present; they load torch lazily).
_PLUGINS = ("calibration.cli",)
_SCENARIO_SECTIONS = ("network", "timing", "catalogue", "utility")
_TRAINING_SECTIONS = ("train", "allocator", "caching")
_TRAIN_FLAGS = ("agent", "preset", "threads", "caching_agent", "credit")
_FLAG_NAMES = {"caching_agent": "caching"}
"""Training flags whose name differs from their TrainConfig key."""
DEFAULT_EPISODES = 500
"""H of Table 2: the episodes of a new training run."""


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, arrays, quoted strings), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str], sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set SECTION.KEY=VALUE`` items grouped by section (``seed`` is its own section)."""
    grouped: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not key or (key != "seed" and (not dot or not name)):
            raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE or seed=VALUE")
        if key == "seed":
            section, name = "seed", "seed"
        if section not in sections:
            allowed = ["seed", *(f"{s}.KEY" for s in sections if s != "seed")]
            raise UsageError(f"--set {key}: unknown section {section!r}; allowed: {allowed}")
        grouped.setdefault(section, {})[name] = _parse_value(text)
    return grouped


def _scenario(args: argparse.Namespace, base: ScenarioConfig | None = None) -> ScenarioConfig:
    """The scenario of ``--config`` (else ``base``, else Table 2) with ``--set``, ``--seed``
    and ``--users`` applied."""
    if args.config:
        config = load_config(args.config)
    else:
        config = base if base is not None else ScenarioConfig()
    sets = parse_sets(args.set, ("seed", *_SCENARIO_SECTIONS, *_TRAINING_SECTIONS))
    overrides: dict[str, Any] = {}
    for section in ("seed", *_SCENARIO_SECTIONS):
        for name, value in sets.get(section, {}).items():
            overrides[name if section == "seed" else f"{section}.{name}"] = value
    if args.seed is not None:
        overrides["seed"] = args.seed
    if getattr(args, "users", None) is not None:
        overrides["network.num_users"] = args.users
    return config.replace(**overrides) if overrides else config


def _simulate(args: argparse.Namespace) -> int:
    from testbed.sim.policies import make_policies
    from testbed.sim.runner import run

    config = _scenario(args)
    _reject_training_sets(args)
    catalogue = build_catalogue(config.catalogue)
    learned = learned_parts(args.policy)
    if learned and not args.checkpoint:
        part = "" if learned == [args.policy] else f" (for its part {learned[0]})"
        raise UsageError(f"--policy {args.policy} needs --checkpoint RUN_DIR{part}")
    if args.checkpoint and not learned:
        raise UsageError(
            f"--checkpoint applies to {list(LEARNED)} (also as a part), not --policy {args.policy}"
        )
    caching, allocation = make_policies(args.policy, config, catalogue, args.checkpoint)
    out = check_out_dir(
        args.out or f"runs/simulate__{args.policy}__seed{config.seed}__{int(time.time())}",
        overwrite=args.overwrite,
    )
    claim_out_dir(out, args.overwrite)
    save_config(config, out / "config.toml")
    (out / "run.json").write_text(json.dumps(run_metadata(sys.argv), indent=2) + "\n")
    args.kept = lambda: f"every finished episode is in {out / 'trace.parquet'} and metrics.csv"
    summary, _ = run(
        config,
        caching,
        allocation,
        args.episodes,
        trace_path=out / "trace.parquet",
        catalogue=catalogue,
        progress=not args.quiet,
        metrics_dir=out,
    )
    payload = {"policy": args.policy, **summary.to_dict()}
    atomic_write_text(out / "summary.json", json.dumps(payload, indent=2) + "\n")
    print(
        f"{args.policy}: utility {summary.utility:.3f}  hit ratio {summary.hit_ratio:.3f}  "
        f"violation rate {summary.violation_rate:.3f}  "
        f"decision {summary.decision_ms_per_slot:.2f} ms/slot  "
        f"({summary.episodes} episodes, {summary.slots} slots) -> {out}"
    )
    return 0


def _reject_training_sets(args: argparse.Namespace) -> None:
    sets = parse_sets(args.set, ("seed", *_SCENARIO_SECTIONS, *_TRAINING_SECTIONS))
    for section in _TRAINING_SECTIONS:
        if section in sets:
            key = f"{section}.{next(iter(sets[section]))}"
            raise UsageError(f"--set {key}: training options apply to `testbed train` only")


def _compare(args: argparse.Namespace) -> int:
    from testbed.lab.compare import write_comparison
    from testbed.sim.policies import make_policies

    config = _scenario(args)
    _reject_training_sets(args)
    seeds = range(config.seed, config.seed + args.seeds)
    if len(set(args.policies)) != len(args.policies):
        twice = sorted({p for p in args.policies if args.policies.count(p) > 1})
        raise UsageError(f"--policies names {twice} more than once: list each policy once")
    used = {policy: learned_parts(policy) for policy in args.policies}  # names checked here
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or name not in LEARNED:
            raise UsageError(
                f"--checkpoint {item!r}: expected NAME=RUN_DIR with NAME in {list(LEARNED)}"
            )
        if not any(name in parts for parts in used.values()):
            raise UsageError(
                f"--checkpoint {item!r}: {name} is not among --policies (nor a part of one)"
            )
        checkpoints[name] = Path(path)
    missing = [p for p, parts in used.items() if any(n not in checkpoints for n in parts)]
    if missing:
        names = list(dict.fromkeys(n for p in missing for n in used[p] if n not in checkpoints))
        raise UsageError(
            f"--policies {missing} need --checkpoint NAME=RUN_DIR with NAME in {names}"
        )
    catalogue = build_catalogue(config.catalogue)
    for name, path in checkpoints.items():
        make_policies(name, config, catalogue, path)  # verified before anything is written
    if args.resume:
        out = Path(args.resume)
        if not (out / "config.toml").is_file():
            raise UsageError(f"--resume {out}: no comparison to continue (no config.toml)")
        if load_config(out / "config.toml").to_dict() != config.to_dict():
            raise UsageError(
                f"--resume {out}: the scenario differs from the stored one; "
                "give the same --config/--seed/--users/--set"
            )
    else:
        out = _new_run_folder(args, f"runs/compare__seed{config.seed}__{int(time.time())}", config)
    args.kept = lambda: f"every finished run is in {out / 'compare.csv'}; --resume {out} continues"
    summary = write_comparison(
        config,
        args.policies,
        seeds,
        args.episodes,
        out,
        not args.quiet,
        checkpoints,
        resume=bool(args.resume),
    )
    width = max(10, *(len(p) for p in args.policies))
    for row in summary.itertuples():
        interval = f"+- {row.utility_ci95:.3f}" if args.seeds > 1 else "(1 seed: no 95% interval)"
        print(
            f"{row.policy:{width}s} utility {row.utility:8.3f} {interval}  "
            f"hit ratio {row.hit_ratio:.3f}  violation rate {row.violation_rate:.3f}  "
            f"decision {row.decision_ms_per_slot:.2f} ms"
        )
    print(f"-> {out}")
    return 0


def train_config_from_args(args: argparse.Namespace, seed: int) -> Any:
    """The :class:`agents.t2drl.TrainConfig` of the flags and the ``--set train.*``,
    ``allocator.*`` and ``caching.*`` items, checked before anything is written."""
    from agents.t2drl import TrainConfig, allocator_config, caching_config

    sets = parse_sets(args.set, ("seed", *_SCENARIO_SECTIONS, *_TRAINING_SECTIONS))
    values: dict[str, Any] = {"episodes": args.episodes or DEFAULT_EPISODES, "seed": seed}
    values.update({flag: getattr(args, flag) for flag in _TRAIN_FLAGS if getattr(args, flag)})
    allowed = {f.name for f in fields(TrainConfig)} - {"allocator", "caching"}
    for name, value in sets.get("train", {}).items():
        if name not in allowed:
            raise UsageError(f"--set train.{name}: unknown key; allowed: {sorted(allowed)}")
        values[name] = value
    values["allocator"] = sets.get("allocator", {})
    values["caching"] = sets.get("caching", {})
    train_config = TrainConfig(**values)
    try:
        train_config.validate()
        allocator_config(train_config)
        caching_config(train_config)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"training options (--set train.*, allocator.*, caching.*): {exc}"
        ) from exc
    return train_config


def _check_resume_flags(args: argparse.Namespace, out: Path) -> None:
    """Refuse flags that contradict the stored run instead of silently dropping them."""
    from testbed.runs.folder import RunFolder

    stored = RunFolder(out).read_train()
    for flag in _TRAIN_FLAGS:
        given = getattr(args, flag)
        if given is not None and given != getattr(stored, flag):
            raise UsageError(
                f"--{_FLAG_NAMES.get(flag, flag)} {given} contradicts the stored run ({flag} = "
                f"{getattr(stored, flag)!r} in {out / 'train.json'}); drop it to resume"
            )
    if args.out is not None and Path(args.out).resolve() != out.resolve():
        raise UsageError(f"--out {args.out} contradicts --resume {out}: a run resumes in place")
    sets = parse_sets(args.set, ("seed", *_SCENARIO_SECTIONS, *_TRAINING_SECTIONS))
    for section in _TRAINING_SECTIONS:
        for name, value in sets.get(section, {}).items():
            current = getattr(stored, name, None) if section == "train" else None
            if section != "train":
                current = getattr(stored, section).get(name)
            if current != value:
                raise UsageError(
                    f"--set {section}.{name}={value!r} contradicts the stored run "
                    f"({current!r} in {out / 'train.json'}); drop it to resume"
                )
    stored_scenario = load_config(out / "config.toml")
    if _scenario(args, base=stored_scenario).to_dict() != stored_scenario.to_dict():
        raise UsageError(
            f"--config/--seed/--users/--set contradict the stored scenario "
            f"{out / 'config.toml'}; drop them to resume"
        )


def _train(args: argparse.Namespace) -> int:
    from testbed.runs.folder import RunFolder
    from testbed.training.trainer import resume, train

    if args.resume:
        out = Path(args.resume)
        if not (out / "train.json").is_file() or not (out / "config.toml").is_file():
            raise UsageError(
                f"--resume {out}: not a run folder of `testbed train` "
                "(expected train.json, config.toml and checkpoint/)"
            )
        _check_resume_flags(args, out)
        RunFolder(out).verify_checkpoint()
        args.kept = lambda: f"{out} holds a checkpoint; --resume {out} continues"
        result = resume(out, args.episodes, progress=not args.quiet)
    else:
        config = _scenario(args)
        train_config = train_config_from_args(args, config.seed)
        from agents.t2drl import T2DRLAgents

        try:  # the agents fit the scenario (e.g. the DDQN's 2^M outputs), checked up front
            T2DRLAgents(config, train_config)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        default = f"runs/train__{train_config.agent}__seed{config.seed}__{int(time.time())}"
        out = check_out_dir(args.out or default, overwrite=args.overwrite, resumable=True)
        claim_out_dir(out, args.overwrite)
        log.info("training %s", json.dumps(asdict(train_config)))
        args.kept = lambda: f"{out} holds a checkpoint; --resume {out} continues"
        RunFolder(out).write_provenance()
        result = train(train_config, config, out, progress=not args.quiet)
    print(
        f"{out}: {result.get('episode', -1) + 1} episodes, last episode utility "
        f"{result.get('utility', float('nan')):.3f}, hit ratio "
        f"{result.get('hit_ratio', float('nan')):.3f}"
    )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from testbed.lab.experiments import run_experiment

    preset = "quick" if args.quick else "full"
    if args.resume:
        out = Path(args.resume)
        if not out.is_dir():
            raise UsageError(f"--resume {out}: no such experiment folder")
    else:
        out = _new_run_folder(
            args, f"runs/experiment__{args.name}__{preset}__{int(time.time())}", None
        )
    args.kept = lambda: f"every finished run is in {out}; --resume {out} continues"
    report = (lambda message: None) if args.quiet else _EXPERIMENT_LOG.info
    run_experiment(
        args.name,
        out,
        args.quick,
        report,
        seeds=args.seeds,
        episodes=args.episodes,
        preset=args.preset,
        workers=args.workers,
        progress=not args.quiet,
        ray=args.ray or "",
    )
    print(f"{args.name} ({preset}) -> {out}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    from testbed.lab.experiments import plot_training_curves

    out = check_out_file(args.out, overwrite=args.overwrite)
    table = out.with_suffix(".csv")
    check_out_file(table, flag="--out (its CSV)", overwrite=args.overwrite)
    for run_dir in args.runs:
        if not (Path(run_dir) / "metrics.csv").is_file():
            raise UsageError(f"{run_dir}: not a run of `testbed train` (no metrics.csv)")
    curves = plot_training_curves([Path(r) for r in args.runs], out, args.metric, args.window)
    curves.to_csv(table, index_label="episode")
    print(f"-> {out}")
    return 0


def _new_run_folder(args: argparse.Namespace, default: str, config: ScenarioConfig | None) -> Path:
    """A resumable command's new ``--out`` (else ``default``): checked, claimed, with the
    scenario (if any) and the provenance ``run.json`` written first."""
    out = check_out_dir(args.out or default, overwrite=args.overwrite, resumable=True)
    claim_out_dir(out, args.overwrite)
    if config is not None:
        save_config(config, out / "config.toml")
    (out / "run.json").write_text(json.dumps(run_metadata(sys.argv), indent=2) + "\n")
    return out


def _split_sweep(items: list[str]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """``--set`` items of `testbed sweep`: the fixed ones, and those whose VALUE is a list
    ``V1,V2,...`` (the swept key)."""
    fixed, swept = [], []
    for item in items:
        key, sep, text = item.partition("=")
        if sep and "," in text and not text.lstrip().startswith(("[", '"', "'")):
            swept.append((key, [_parse_value(value.strip()) for value in text.split(",")]))
        else:
            fixed.append(item)
    return fixed, swept


def _sweep_values(base: ScenarioConfig, key: str, values: list[Any]) -> list[float]:
    """The swept values, each checked on the scenario (one line naming the key if bad)."""
    if key == "seed":
        raise UsageError("--set seed=...: the seeds are swept by --seeds N, not as a key")
    if len(set(values)) != len(values) or len(values) < 2:
        raise UsageError(f"--set {key}={values}: give at least two distinct values, V1,V2,...")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"--set {key}={value!r}: a sweep plots against numbers")
        try:
            base.replace(**{key: value})
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {key}={value!r}: {exc}") from exc
    return values


def _sweep_cmd(args: argparse.Namespace) -> int:
    from testbed.lab.experiments import make_budget, run_sweep

    _reject_training_sets(args)
    fixed, swept = _split_sweep(args.set)
    if len(swept) != 1:
        raise UsageError(
            "name exactly one swept key as --set SECTION.KEY=V1,V2,... "
            f"(got {len(swept)}: {[key for key, _ in swept]})"
        )
    key, raw = swept[0]
    args.set = fixed
    base = _scenario(args)
    values = _sweep_values(base, key, raw)
    try:
        budget = make_budget(args.quick, args.seeds, args.episodes, args.preset, args.policies)
    except ValueError as exc:
        raise UsageError(f"--policies: {exc}") from exc
    identity = {
        "key": key,
        "values": values,
        "base": base.to_dict(),
        "budget": asdict(budget),
    }
    if args.resume:
        out = Path(args.resume)
        stored = out / "sweep.json"
        if not stored.is_file():
            raise UsageError(f"--resume {out}: no sweep to continue (no sweep.json)")
        if json.loads(stored.read_text()) != json.loads(json.dumps(identity)):
            raise UsageError(
                f"--resume {out}: the key, values, scenario, policies or budget differ from "
                f"{stored}; drop them or start a new --out"
            )
    else:
        out = _new_run_folder(args, f"runs/sweep__{key}__{int(time.time())}", base)
        (out / "sweep.json").write_text(json.dumps(identity, indent=2) + "\n")
    args.kept = lambda: f"every finished run is in {out}; --resume {out} continues"
    report = (lambda message: None) if args.quiet else _EXPERIMENT_LOG.info
    run_sweep(base, key, values, out, budget, report, args.workers, not args.quiet, args.ray or "")
    print(f"sweep of {key} over {values} -> {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from testbed.runs.folder import RunFolder

    run_dir = Path(args.run)
    if not (run_dir / "train.json").is_file() or not (run_dir / "config.toml").is_file():
        raise UsageError(
            f"{run_dir}: not a run of `testbed train` (expected train.json, config.toml "
            "and checkpoint/)"
        )
    out = check_out_dir(args.out, overwrite=args.overwrite)
    if out.resolve() == run_dir.resolve():
        raise UsageError(f"--out {out} is the run itself: export into another folder")
    if args.overwrite and out.exists():
        shutil.rmtree(out)
    manifest = RunFolder(run_dir).export(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{manifest['agent']} policy of episode {manifest['episode']} -> {out} ({size:,} bytes)")
    return 0


def _config(args: argparse.Namespace) -> int:
    config = _scenario(args)
    _reject_training_sets(args)
    if args.out:
        check_out_file(args.out, overwrite=args.overwrite)
        save_config(config, args.out)
        print(f"wrote {args.out}")
    else:
        import tomli_w

        print(tomli_w.dumps(config.to_dict()), end="")
    return 0


LIVE_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "live_cpu.toml"
"""The default scenario of `testbed run`: the CPU calibration of the shipped zoo."""


def _live_scenario(args: argparse.Namespace) -> ScenarioConfig:
    config = _scenario(args, base=load_config(LIVE_SCENARIO))
    overrides = {
        key: value
        for key, value in (
            ("timing.num_frames", args.frames),
            ("timing.slots_per_frame", args.slots),
        )
        if value is not None
    }
    return config.replace(**overrides) if overrides else config


def _check_zoo_catalogue(config: ScenarioConfig) -> None:
    from edge_node.zoo import zoo_names

    names = build_catalogue(config.catalogue).names
    unknown = [n for n in names if n not in zoo_names()]
    if unknown:
        raise UsageError(
            f"catalogue models {unknown} are not zoo models: the live testbed serves real "
            "models, so its catalogue.profile must name them (e.g. "
            "calibration/profiles/cpu_zoo.toml)"
        )


RUN_OPTIONS = (
    "policy",
    "checkpoint",
    "episodes",
    "time_scale",
    "request_timeout",
    "gallery",
    "device",
    "threads",
    "inject",
    "restart_nodes",
    "edge",
    "users_node",
)
"""What `testbed run` stores in the run folder's live.json, for `--resume`."""


def _resume_live(args: argparse.Namespace) -> tuple[Path, int]:
    """Take a killed run's stored options; returns its folder and first unfinished slot.

    A slot is finished once its trace part and its metrics row are both on disk; a part
    written without its row (the controller died between the two) is dropped and served
    again: at most the slot in flight is lost.
    """
    import pandas as pd

    from testbed.runs.traces import trace_parts

    out = Path(args.resume)
    if not (out / "live.json").is_file() or not (out / "config.toml").is_file():
        raise UsageError(
            f"--resume {out}: not a run folder of `testbed run` (expected live.json, config.toml)"
        )
    stored = json.loads((out / "live.json").read_text())
    for name in RUN_OPTIONS:
        setattr(args, name, stored[name])
    args.config, args.set, args.seed, args.users = str(out / "config.toml"), [], None, None
    args.frames = args.slots = None
    parts = trace_parts(out / "trace.parquet")
    metrics = out / "metrics.csv"
    rows = len(pd.read_csv(metrics)) if metrics.is_file() and metrics.stat().st_size else 0
    finished = min(len(parts), rows)
    for part in parts[finished:]:
        part.unlink()
    return out, finished


def _run(args: argparse.Namespace) -> int:
    from testbed.live.controller import NodeSupervisor, run_live
    from testbed.live.report import loop_overhead, summarise_live, write_report
    from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace
    from testbed.sim.policies import make_policies

    resume_from = 0
    if args.resume:
        out, resume_from = _resume_live(args)
    config = _live_scenario(args)
    _reject_training_sets(args)
    _check_zoo_catalogue(config)
    if args.time_scale <= 0 or not np.isfinite(args.time_scale):
        raise UsageError(f"--time-scale = {args.time_scale}: allowed finite values > 0")
    if args.request_timeout <= 0:
        raise UsageError(f"--request-timeout = {args.request_timeout}: allowed > 0")
    given = [a for a in (args.edge, args.users_node) if a]
    if len(given) == 1:
        raise UsageError("--edge and --users-node go together (nodes started elsewhere)")
    learned = learned_parts(args.policy)  # a composite CACHING+ALLOCATION is checked here
    if learned and not args.checkpoint:
        part = "" if learned == [args.policy] else f" (for its part {learned[0]})"
        raise UsageError(f"--policy {args.policy} needs --checkpoint RUN_DIR{part}")
    faults = parse_faults(args.inject)
    security = security_from_args(args)
    if args.edge and (faults.edge_kill_slot is not None or faults.cloud_kill_slot is not None):
        raise UsageError("--inject edge-kill/cloud-kill needs the nodes `testbed run` starts")
    if args.edge and args.restart_nodes:
        raise UsageError("--restart-nodes needs the nodes `testbed run` starts (no --edge)")
    catalogue = build_catalogue(config.catalogue)
    caching, allocation = make_policies(args.policy, config, catalogue, args.checkpoint)
    if not args.resume:
        out = check_out_dir(
            args.out or f"runs/run__{args.policy}__seed{config.seed}__{int(time.time())}",
            overwrite=args.overwrite,
            resumable=True,
        )
        claim_out_dir(out, args.overwrite)
        save_config(config, out / "config.toml")
        metadata = run_metadata(redacted_argv(sys.argv))
        (out / "run.json").write_text(json.dumps(metadata, indent=2) + "\n")
        options = {name: getattr(args, name) for name in RUN_OPTIONS}
        atomic_write_text(out / "live.json", json.dumps(options, indent=2) + "\n")
    args.kept = lambda: f"every finished slot is in {out / 'trace.parquet'}; the nodes stopped"
    supervisor = None
    try:
        if args.edge:
            edge_address, users_address = args.edge, args.users_node
        else:
            flags, env = child_security(args)
            supervisor = NodeSupervisor(
                out / "nodes",
                out / "config.toml",
                device=args.device,
                threads=args.threads or 1,  # 2 cores: one torch thread per node
                timeout_s=args.start_timeout,
                security_flags=flags,
                security_env=env,
                security=security,
            )
            supervisor.start()
            edge_address, users_address = supervisor.address("edge"), supervisor.address("users")
        info = run_live(
            config,
            catalogue,
            caching,
            allocation,
            users_address,
            edge_address,
            out,
            episodes=args.episodes,
            time_scale=args.time_scale,
            request_timeout_s=args.request_timeout,
            gallery_users=args.gallery,
            progress=not args.quiet,
            faults=faults,
            supervisor=supervisor,
            restart_nodes=args.restart_nodes,
            resume_from=resume_from,
            security=security,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    net = config.network
    summary = {
        "policy": args.policy,
        "time_scale": args.time_scale,
        **info,
        **summarise_live(
            trace, config.utility.alpha, net.backhaul_up_rate_bps, net.backhaul_down_rate_bps
        ),
    }
    summary["refit"] = _refit_comparison(config, summary)
    import pandas as pd

    slots = pd.read_csv(out / "metrics.csv")
    summary["loop_overhead"] = loop_overhead(trace, slots, args.time_scale)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    write_report(out, summary, trace, slots)
    sim, meas = summary["simulated"], summary["measured"]
    if summary["ended_early"]:
        print(
            f"testbed: the run ended early: {summary['ended_early']}; the "
            f"{summary['slots']} finished slots are kept in {out}",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.policy} live: measured utility {meas['utility']:.3f} (simulated "
        f"{sim['utility']:.3f}, MAPE of G {summary['mape_percent']['G']:.1f}%)  hit ratio "
        f"{meas['hit_ratio']:.3f}  violation rate {meas['violation_rate']:.3f} "
        f"({summary['slots']} slots, {summary['wall_s']:.0f} s) -> {out}"
    )
    return 0


def _refit_comparison(config: ScenarioConfig, summary: dict) -> dict | None:
    """With a profile refitted from a live run (``calibrate --from-run``), that run's MAPE
    beside this one's: the fit before and after."""
    if not config.catalogue.profile:
        return None
    try:
        with open(config.catalogue.profile, "rb") as fh:
            source = tomllib.load(fh).get("meta", {}).get("from_run")
        before = json.loads((Path(source) / "summary.json").read_text()) if source else None
    except (OSError, ValueError, TypeError):
        return None
    if before is None:
        return None
    return {
        "from_run": source,
        "mape_before_percent": before["mape_percent"],
        "mape_after_percent": summary["mape_percent"],
    }


def parse_faults(items: list[str]):
    """``--inject`` items: ``edge-kill@SLOT``, ``cloud-kill@SLOT``, ``link-loss=P``."""
    from testbed.live.controller import Faults
    from testbed.proto.runtime import MAX_LINK_LOSS

    values: dict[str, float | int] = {}
    for item in items:
        kind, at, slot = item.partition("@")
        if kind in ("edge-kill", "cloud-kill") and at:
            if not slot.isdigit():
                raise UsageError(f"--inject {item}: SLOT must be a whole number >= 0")
            values[f"{kind.split('-')[0]}_kill_slot"] = int(slot)
            continue
        name, eq, text = item.partition("=")
        if name == "link-loss" and eq:
            try:
                loss = float(text)
            except ValueError:
                loss = math.nan
            if not 0.0 <= loss <= MAX_LINK_LOSS:
                raise UsageError(f"--inject {item}: P must be in [0, {MAX_LINK_LOSS}]")
            values["link_loss"] = loss
            continue
        raise UsageError(f"--inject {item!r}: allowed edge-kill@SLOT, cloud-kill@SLOT, link-loss=P")
    return Faults(**values)


def _node_config(args: argparse.Namespace) -> ScenarioConfig:
    config = load_config(args.config) if args.config else load_config(LIVE_SCENARIO)
    _check_zoo_catalogue(config)
    return config


def _announce(address: str) -> None:
    print(f"listening on {address}", flush=True)


def _serve_node(args: argparse.Namespace, serve, **options) -> int:
    """Start one node with its scenario, address and security, announce it, and serve until
    SIGINT or SIGTERM (a graceful stop: NOT_SERVING first)."""
    from testbed.proto.runtime import serve_until_signalled

    node = serve(
        _node_config(args), listen=args.listen, security=security_from_args(args), **options
    )
    serve_until_signalled(node, _announce)
    return 0


def _edge_node(args: argparse.Namespace) -> int:
    from edge_node.server import serve

    return _serve_node(
        args,
        serve,
        cloud=args.cloud,
        device=args.device,
        threads=args.threads,
        cache_dir=args.cache_dir,
    )


def _cloud_node(args: argparse.Namespace) -> int:
    from cloud_node.server import serve

    return _serve_node(args, serve, device=args.device, threads=args.threads)


def _ue_emulator(args: argparse.Namespace) -> int:
    from ue_emulator.server import serve

    return _serve_node(args, serve, edge=args.edge, cloud=args.cloud)


def _add_set(parser: argparse.ArgumentParser, training: bool = False) -> None:
    sections = ", ".join(f"{s}.KEY" for s in _SCENARIO_SECTIONS)
    extra = ", train.KEY, allocator.KEY, caching.KEY" if training else ""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one option (repeatable; VALUE as TOML): seed, {sections}{extra}",
    )


RAY_HELP = (
    "send the runs to Ray: `local` (a Ray instance on this machine with --workers CPUs), "
    "`auto` (the cluster this machine joined with `ray start`) or the cluster's ADDRESS; "
    "needs pip install -e '.[ray]'"
)
_POLICY_HELP = (
    f"one of {', '.join(POLICIES)}, or CACHING{COMPOSITE}ALLOCATION: the caching of one "
    "with the allocation of another (e.g. t2drl+optimal)"
)


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
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="play a policy on a scenario and write a run folder")
    sim.add_argument("--policy", default="optimal", metavar="NAME", help=_POLICY_HELP)
    sim.add_argument(
        "--checkpoint", default=None, help="run folder of `testbed train` (for a learned part)"
    )
    sim.add_argument("--episodes", type=int, default=1, help="episodes of T frames x K slots")
    sim.add_argument("--seed", type=int, default=None, help="run seed (overrides the config's)")
    sim.add_argument("--users", type=int, default=None, help="U (overrides the config's)")
    sim.add_argument("--out", default=None, help="run folder (default: runs/simulate__...)")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    sim.add_argument("--config", default=None, help="scenario TOML (default: the paper's)")
    _add_set(sim)
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_simulate)

    cmp_ = sub.add_parser("compare", help="several policies on the same worlds over seeds")
    cmp_.add_argument(
        "--policies",
        nargs="+",
        default=["optimal", "schrs", "rcars"],
        metavar="NAME",
        help=f"{_POLICY_HELP}; `t2drl optimal t2drl+optimal optimal+t2drl` splits a gap "
        "between the two timescales",
    )
    cmp_.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="a trained run for a learned policy, e.g. t2drl=runs/train_... "
        "(also used by the composites with a t2drl part)",
    )
    cmp_.add_argument("--seeds", type=int, default=5, help="number of seeds (from --seed on)")
    cmp_.add_argument("--episodes", type=int, default=1, help="episodes per seed")
    cmp_.add_argument("--seed", type=int, default=None, help="first seed (default: config's)")
    cmp_.add_argument("--users", type=int, default=None)
    cmp_.add_argument("--out", default=None)
    cmp_.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    cmp_.add_argument(
        "--resume", default=None, metavar="DIR", help="continue an interrupted comparison"
    )
    cmp_.add_argument("--config", default=None)
    _add_set(cmp_)
    cmp_.add_argument("--quiet", action="store_true")
    cmp_.set_defaults(handler=_compare)

    trn = sub.add_parser("train", help="train T2DRL (DDQN + D3PG) or DDPG-based T2DRL")
    trn.add_argument("--agent", choices=list(LEARNED), default=None, help="default: t2drl")
    trn.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"H (default {DEFAULT_EPISODES}, Table 2; with --resume: the stored count)",
    )
    trn.add_argument("--seed", type=int, default=None)
    trn.add_argument("--users", type=int, default=None)
    trn.add_argument(
        "--preset",
        choices=["best", "default", "paper"],
        default=None,
        help="`best` (the default): factored caching credited greedily, the allocator "
        "cloning the exact optimiser; `default`: issue 4's settings of the paper's agents; "
        "`paper`: Sec. 7.1 as printed (Adam at 1e-6, the paper's amender); docs/agents.md",
    )
    trn.add_argument(
        "--caching",
        dest="caching_agent",
        choices=["ddqn", "factored"],
        default=None,
        help="the caching agent: `ddqn` (the paper's, 2^M outputs) or `factored` "
        "(per-model values + exact knapsack); default: the preset's",
    )
    trn.add_argument(
        "--credit",
        choices=["explore", "greedy"],
        default=None,
        help="the caching learner's frame reward: the slots as the exploring allocator "
        "served them (`explore`, Algorithm 1) or re-scored under the greedy allocator "
        "(`greedy`); default: the preset's",
    )
    trn.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    trn.add_argument("--out", default=None)
    trn.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    trn.add_argument("--config", default=None)
    _add_set(trn, training=True)
    trn.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue an interrupted run (up to --episodes); other flags must agree with it",
    )
    trn.add_argument("--quiet", action="store_true")
    trn.set_defaults(handler=_train)

    from testbed.lab.experiments import EXPERIMENTS

    exp = sub.add_parser("experiment", help="the paper's Figs. 6-8 and Table 3")
    exp.add_argument("name", choices=sorted(EXPERIMENTS))
    exp.add_argument("--quick", action="store_true", help="small budget (<= ~10 min on CPU)")
    exp.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3)")
    exp.add_argument("--episodes", type=int, default=None, help="H per training run")
    exp.add_argument(
        "--preset",
        choices=["best", "default", "paper"],
        default=None,
        help="training preset of the learned runs (default: `default`, the paper's agents)",
    )
    exp.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run the training and evaluation runs in N processes, one torch thread each "
        "(default 1: one after the other; table3 always runs alone: it measures time)",
    )
    exp.add_argument("--ray", default=None, metavar="local|auto|ADDRESS", help=RAY_HELP)
    exp.add_argument("--out", default=None)
    exp.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    exp.add_argument(
        "--resume", default=None, metavar="DIR", help="continue an interrupted experiment"
    )
    exp.add_argument("--quiet", action="store_true")
    exp.set_defaults(handler=_experiment)

    swp = sub.add_parser(
        "sweep",
        help="any scenario key over a list of values: every policy at every value, "
        "learned ones trained, CSV + plots against the key",
    )
    swp.add_argument("--config", default=None, help="the base scenario TOML (default: Table 2)")
    _add_set(swp)
    swp.add_argument(
        "--policies",
        nargs="+",
        default=["optimal", "schrs", "rcars"],
        metavar="NAME",
        help="of t2drl, ddpg-t2drl, schrs, rcars, optimal (the learned ones are trained at "
        "every point and seed; default: optimal schrs rcars)",
    )
    swp.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3)")
    swp.add_argument("--episodes", type=int, default=None, help="H per training run")
    swp.add_argument("--quick", action="store_true", help="the quick budget of `experiment`")
    swp.add_argument(
        "--preset",
        choices=["best", "default", "paper"],
        default=None,
        help="training preset of the learned runs (default: `default`)",
    )
    swp.add_argument("--workers", type=int, default=1, metavar="N", help="processes (default 1)")
    swp.add_argument("--ray", default=None, metavar="local|auto|ADDRESS", help=RAY_HELP)
    swp.add_argument("--out", default=None)
    swp.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    swp.add_argument("--resume", default=None, metavar="DIR", help="continue an interrupted sweep")
    swp.add_argument("--quiet", action="store_true")
    swp.set_defaults(handler=_sweep_cmd, seed=None)

    exp_ = sub.add_parser(
        "export",
        help="write the acting networks of a trained run (no critic, optimiser or replay) "
        "into a small folder that --checkpoint accepts",
    )
    exp_.add_argument("run", help="run folder of `testbed train`")
    exp_.add_argument("--out", required=True, help="the new folder")
    exp_.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    exp_.set_defaults(handler=_export)

    crv = sub.add_parser("curves", help="overlay the training curves of `testbed train` runs")
    crv.add_argument("runs", nargs="+", help="run folders of `testbed train`")
    crv.add_argument("--metric", default="mean_slot_reward")
    crv.add_argument("--window", type=int, default=10, help="moving-average window (episodes)")
    crv.add_argument("--out", default="curves.png", help="PNG (its CSV is written beside it)")
    crv.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    crv.set_defaults(handler=_curves)

    run = sub.add_parser(
        "run", help="the live testbed: user, edge and cloud nodes with real RePaint, one policy"
    )
    run.add_argument("--policy", default="optimal", metavar="NAME", help=_POLICY_HELP)
    run.add_argument(
        "--checkpoint", default=None, help="run folder of `testbed train` (for a learned part)"
    )
    run.add_argument("--episodes", type=int, default=1, help="episodes of T frames x K slots")
    run.add_argument("--frames", type=int, default=None, help="T (overrides the scenario's)")
    run.add_argument("--slots", type=int, default=None, help="K (overrides the scenario's)")
    run.add_argument("--users", type=int, default=None, help="U (overrides the scenario's)")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument(
        "--config", default=None, help="scenario TOML (default: the live CPU scenario)"
    )
    _add_set(run)
    run.add_argument("--out", default=None, help="run folder (default: runs/run__...)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    run.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="emulated seconds per wall second on the paced links (generation stays real)",
    )
    run.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    run.add_argument("--gallery", type=int, default=2, help="users per slot kept as images")
    run.add_argument("--device", default=None, help="cuda or cpu for the edge and the cloud")
    run.add_argument("--threads", type=int, default=None, help="torch threads per node (default 1)")
    run.add_argument("--start-timeout", type=float, default=120.0, help="seconds per node start")
    run.add_argument("--edge", default=None, help="use a running edge node (HOST:PORT)")
    run.add_argument("--users-node", default=None, help="use a running users' node (HOST:PORT)")
    run.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="FAULT",
        help="edge-kill@SLOT, cloud-kill@SLOT (SIGKILL before that slot of the run) or "
        "link-loss=P (chunks lost and retransmitted on every paced link); repeatable",
    )
    run.add_argument(
        "--restart-nodes",
        action="store_true",
        help="restart a dead edge at the next frame (its cache is refilled then)",
    )
    run.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue a run whose controller was killed, from its first unfinished slot, "
        "with its stored options (other flags are ignored)",
    )
    run.add_argument("--quiet", action="store_true")
    add_security_flags(run)
    run.set_defaults(handler=_run)

    for name, handler, help_text in (
        ("edge-node", _edge_node, "start the edge node (model cache, RePaint, forwarding)"),
        ("cloud-node", _cloud_node, "start the cloud node (every model, full quality, weights)"),
        ("ue-emulator", _ue_emulator, "start the users' node (world, uploads, scoring)"),
    ):
        node = sub.add_parser(name, help=help_text)
        node.add_argument(
            "--listen", default="127.0.0.1:0", help="HOST:PORT (default: loopback, a free port)"
        )
        node.add_argument("--config", default=None, help="scenario TOML (default: live CPU)")
        if name == "edge-node":
            node.add_argument("--cloud", required=True, help="the cloud node's HOST:PORT")
            node.add_argument("--cache-dir", type=Path, default=None, help="model cache folder")
        if name == "ue-emulator":
            node.add_argument("--edge", required=True, help="the edge node's HOST:PORT")
            node.add_argument(
                "--cloud",
                default=None,
                help="the cloud's HOST:PORT, to relay to when the edge dies",
            )
        else:
            node.add_argument("--device", default=None, help="cuda or cpu")
            node.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        add_security_flags(node)
        node.set_defaults(handler=handler)

    cfg = sub.add_parser("config", help="print or write the scenario (defaults: Table 2)")
    cfg.add_argument("--config", default=None, help="scenario TOML to start from")
    cfg.add_argument("--seed", type=int, default=None)
    cfg.add_argument("--users", type=int, default=None)
    _add_set(cfg)
    cfg.add_argument("--out", default=None, help="write TOML here instead of printing it")
    cfg.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    cfg.set_defaults(handler=_config)

    for plugin in _PLUGINS:
        if find_spec(plugin) is not None:
            import_module(plugin).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    if threading.current_thread() is threading.main_thread():
        # a terminated run unwinds like Ctrl-C, so every writer keeps its finished rows
        signal.signal(signal.SIGTERM, raise_interrupted)
    for flag in ("episodes", "seeds", "threads", "workers"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            print(f"testbed: error: --{flag} = {value}: allowed >= 1", file=sys.stderr)
            return 2
    try:
        return int(args.handler(args) or 0)
    except TestbedError as exc:
        if args.debug:
            raise
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        name = "SIGTERM" if code == 143 else "Ctrl-C"
        kept = getattr(args, "kept", None)
        detail = f"; {kept()}" if kept is not None else "; nothing had been written yet"
        print(f"testbed: stopped by {name}{detail}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

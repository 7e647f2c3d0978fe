"""The ``testbed`` command line.

``testbed simulate`` plays a policy on a scenario and writes a run folder:
``trace.parquet`` (one row per user and slot), ``config.toml`` (the full scenario),
``summary.json`` (eq. (11) utility, hit ratio, (11h) violation rate, decision time) and
``run.json`` (git revision, package versions, device, command line).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from testbed.config import ConfigError, ScenarioConfig, build_catalogue, load_config, save_config
from testbed.provenance import run_metadata

LEARNED = ("t2drl", "ddpg-t2drl")

# Subcommands that other packages add (imported only when present; they load torch lazily).
_PLUGINS = ("edge_node.cli", "calibration.cli")


def _scenario(args: argparse.Namespace) -> ScenarioConfig:
    config = load_config(args.config) if args.config else ScenarioConfig()
    overrides = {"seed": args.seed} if args.seed is not None else {}
    if getattr(args, "users", None) is not None:
        overrides["network.num_users"] = args.users
    return config.replace(**overrides) if overrides else config


def _simulate(args: argparse.Namespace) -> int:
    from agents import make_policies
    from testbed.runner import run

    config = _scenario(args)
    catalogue = build_catalogue(config.catalogue)
    out = Path(args.out or f"runs/simulate__{args.policy}__seed{config.seed}__{int(time.time())}")
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.toml")
    (out / "run.json").write_text(json.dumps(run_metadata(sys.argv), indent=2) + "\n")
    if args.policy in LEARNED:
        if not args.checkpoint:
            print(
                f"testbed: error: --policy {args.policy} needs --checkpoint RUN_DIR",
                file=sys.stderr,
            )
            return 2
        from agents.t2drl import load_policies

        if not (Path(args.checkpoint) / "checkpoint" / "networks.safetensors").is_file():
            print(
                f"testbed: error: {args.checkpoint} holds no trained checkpoint "
                "(expected checkpoint/networks.safetensors from `testbed train`)",
                file=sys.stderr,
            )
            return 2
        caching, allocation = load_policies(args.checkpoint, config, catalogue)
    else:
        caching, allocation = make_policies(args.policy, config, catalogue)
    summary, _ = run(
        config,
        caching,
        allocation,
        args.episodes,
        trace_path=out / "trace.parquet",
        catalogue=catalogue,
        progress=not args.quiet,
    )
    payload = {"policy": args.policy, **summary.to_dict()}
    (out / "summary.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"{args.policy}: utility {summary.utility:.3f}  hit ratio {summary.hit_ratio:.3f}  "
        f"violation rate {summary.violation_rate:.3f}  "
        f"decision {summary.decision_ms_per_slot:.2f} ms/slot  "
        f"({summary.episodes} episodes, {summary.slots} slots) -> {out}"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from testbed.compare import write_comparison

    config = _scenario(args)
    out = Path(args.out or f"runs/compare__seed{config.seed}__{int(time.time())}")
    seeds = range(config.seed, config.seed + args.seeds)
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or name not in LEARNED:
            print(
                f"testbed: error: --checkpoint {item!r}: expected NAME=RUN_DIR with NAME in "
                f"{list(LEARNED)}",
                file=sys.stderr,
            )
            return 2
        checkpoints[name] = Path(path)
    missing = [p for p in args.policies if p in LEARNED and p not in checkpoints]
    if missing:
        print(f"testbed: error: {missing} need --checkpoint NAME=RUN_DIR", file=sys.stderr)
        return 2
    summary = write_comparison(
        config, args.policies, seeds, args.episodes, out, not args.quiet, checkpoints
    )
    save_config(config, out / "config.toml")
    (out / "run.json").write_text(json.dumps(run_metadata(sys.argv), indent=2) + "\n")
    for row in summary.itertuples():
        print(
            f"{row.policy:8s} utility {row.utility:8.3f} +- {row.utility_ci95:.3f}  "
            f"hit ratio {row.hit_ratio:.3f} +- {row.hit_ratio_ci95:.3f}  "
            f"violation rate {row.violation_rate:.3f}  decision {row.decision_ms_per_slot:.2f} ms"
        )
    print(f"-> {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from agents.t2drl import TrainConfig, train

    if args.resume:
        out = Path(args.resume)
        if not (out / "checkpoint" / "state.json").is_file():
            print(
                f"testbed: error: --resume {out}: no checkpoint to continue from "
                "(expected checkpoint/state.json)",
                file=sys.stderr,
            )
            return 2
        result = train(
            TrainConfig(episodes=args.episodes),
            ScenarioConfig(),
            out,
            resume=True,
            progress=not args.quiet,
        )
    else:
        config = _scenario(args)
        out = Path(args.out or f"runs/train__{args.agent}__seed{config.seed}__{int(time.time())}")
        train_config = TrainConfig(
            agent=args.agent,
            episodes=args.episodes,
            seed=config.seed,
            preset=args.preset,
            threads=args.threads,
        )
        result = train(
            train_config, config, out, progress=not args.quiet, run_info=run_metadata(sys.argv)
        )
    print(
        f"{out}: {result.get('episode', -1) + 1} episodes, last episode utility "
        f"{result.get('utility', float('nan')):.3f}, hit ratio "
        f"{result.get('hit_ratio', float('nan')):.3f}"
    )
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from testbed.experiments import run_experiment

    preset = "quick" if args.quick else "full"
    out = Path(args.out or f"runs/experiment__{args.name}__{preset}__{int(time.time())}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(run_metadata(sys.argv), indent=2) + "\n")
    log = (lambda message: None) if args.quiet else print
    run_experiment(args.name, out, args.quick, log, seeds=args.seeds, episodes=args.episodes)
    print(f"{args.name} ({preset}) -> {out}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    from testbed.experiments import plot_training_curves

    curves = plot_training_curves(
        [Path(r) for r in args.runs], Path(args.out), args.metric, args.window
    )
    curves.to_csv(Path(args.out).with_suffix(".csv"), index_label="episode")
    print(f"-> {args.out}")
    return 0


def _config(args: argparse.Namespace) -> int:
    config = _scenario(args)
    if args.out:
        save_config(config, args.out)
        print(f"wrote {args.out}")
    else:
        import tomli_w

        print(tomli_w.dumps(config.to_dict()), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from agents import POLICIES

    parser = argparse.ArgumentParser(
        prog="testbed", description="Edge-AIGC testbed: simulate, calibrate, train, compare."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="play a policy on a scenario and write a run folder")
    sim.add_argument("--policy", choices=sorted(POLICIES) + list(LEARNED), default="optimal")
    sim.add_argument("--checkpoint", default=None, help="run folder of `testbed train`")
    sim.add_argument("--episodes", type=int, default=1, help="episodes of T frames x K slots")
    sim.add_argument("--seed", type=int, default=None, help="run seed (overrides the config's)")
    sim.add_argument("--users", type=int, default=None, help="U (overrides the config's)")
    sim.add_argument("--out", default=None, help="run folder (default: runs/simulate__...)")
    sim.add_argument("--config", default=None, help="scenario TOML (default: the paper's)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_simulate)

    cmp_ = sub.add_parser("compare", help="several policies on the same worlds over seeds")
    cmp_.add_argument(
        "--policies",
        nargs="+",
        choices=sorted(POLICIES) + list(LEARNED),
        default=["optimal", "schrs", "rcars"],
    )
    cmp_.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="a trained run for a learned policy, e.g. t2drl=runs/train_...",
    )
    cmp_.add_argument("--seeds", type=int, default=5, help="number of seeds (from --seed on)")
    cmp_.add_argument("--episodes", type=int, default=1, help="episodes per seed")
    cmp_.add_argument("--seed", type=int, default=None, help="first seed (default: config's)")
    cmp_.add_argument("--users", type=int, default=None)
    cmp_.add_argument("--out", default=None)
    cmp_.add_argument("--config", default=None)
    cmp_.add_argument("--quiet", action="store_true")
    cmp_.set_defaults(handler=_compare)

    trn = sub.add_parser("train", help="train T2DRL (DDQN + D3PG) or DDPG-based T2DRL")
    trn.add_argument("--agent", choices=list(LEARNED), default="t2drl")
    trn.add_argument("--episodes", type=int, default=500, help="H (Table 2: 500)")
    trn.add_argument("--seed", type=int, default=None)
    trn.add_argument("--users", type=int, default=None)
    trn.add_argument(
        "--preset",
        choices=["default", "paper"],
        default="default",
        help="`paper`: Adam at 1e-6 for every network (Sec. 7.1)",
    )
    trn.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    trn.add_argument("--out", default=None)
    trn.add_argument("--config", default=None)
    trn.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue an interrupted run (up to --episodes)",
    )
    trn.add_argument("--quiet", action="store_true")
    trn.set_defaults(handler=_train)

    from testbed.experiments import EXPERIMENTS

    exp = sub.add_parser("experiment", help="the paper's Figs. 6-8 and Table 3")
    exp.add_argument("name", choices=sorted(EXPERIMENTS))
    exp.add_argument("--quick", action="store_true", help="small budget (<= ~10 min on CPU)")
    exp.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3)")
    exp.add_argument("--episodes", type=int, default=None, help="H per training run")
    exp.add_argument("--out", default=None)
    exp.add_argument("--quiet", action="store_true")
    exp.set_defaults(handler=_experiment)

    crv = sub.add_parser("curves", help="overlay the training curves of `testbed train` runs")
    crv.add_argument("runs", nargs="+", help="run folders of `testbed train`")
    crv.add_argument("--metric", default="mean_slot_reward")
    crv.add_argument("--window", type=int, default=10, help="moving-average window (episodes)")
    crv.add_argument("--out", default="curves.png")
    crv.set_defaults(handler=_curves)

    cfg = sub.add_parser("config", help="print or write the scenario (defaults: Table 2)")
    cfg.add_argument("--config", default=None, help="scenario TOML to start from")
    cfg.add_argument("--seed", type=int, default=None)
    cfg.add_argument("--users", type=int, default=None)
    cfg.add_argument("--out", default=None, help="write TOML here instead of printing it")
    cfg.set_defaults(handler=_config)

    for plugin in _PLUGINS:
        if find_spec(plugin) is not None:
            import_module(plugin).register(sub)
    return parser


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # a terminated run unwinds like Ctrl-C, so the trace writer keeps every row
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    for flag in ("episodes", "seeds"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            print(f"testbed: error: --{flag} must be >= 1", file=sys.stderr)
            return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"testbed: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("testbed: interrupted; rows simulated so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

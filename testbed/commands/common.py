"""What the ``testbed`` commands share: their common flags, declared once, the typed options
built from them, the new run folder, and what a command states it kept when interrupted.

A command module declares its parser with the ``add_*`` functions below, turns the parsed
flags into a frozen options object at once (:func:`set_handler`), and runs its ``handle`` on
that object; the argparse Namespace stays in the command module. A command checks the
optional packages it needs (:func:`require_modules`) with its other inputs; a new run folder
(:func:`new_run_folder`) whose command then fails before its first result is marked failed,
and the retry with the same ``--out`` replaces it unasked.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

from testbed.commands.overrides import SCENARIO_SECTIONS, Overrides, ScenarioOptions
from testbed.core.config import ScenarioConfig
from testbed.core.errors import UsageError
from testbed.proto.security import TOKEN_ENV, SecurityOptions, check_address
from testbed.runs.folder import RunFolder
from testbed.sim.policies import COMPOSITE, POLICIES, learned_parts

Options = TypeVar("Options")

PRESET_CHOICES = ("best", "default", "paper")
"""The names of ``agents.t2drl.PRESETS``, written out so that building the parser loads no
torch."""
KEPT = "kept"
"""The attribute of an interrupt (``KeyboardInterrupt``) that says what the command kept."""
POLICY_HELP = (
    f"one of {', '.join(POLICIES)}, or CACHING{COMPOSITE}ALLOCATION: the caching of one "
    "with the allocation of another (e.g. t2drl+optimal)"
)
RAY_HELP = (
    "send the runs to Ray: `local` (a Ray instance on this machine with --workers CPUs), "
    "`auto` (the cluster this machine joined with `ray start`) or the cluster's ADDRESS; "
    "needs pip install -e '.[ray]'"
)
EXTRA_OF = {
    "torch": "edge",
    "safetensors": "edge",
    "tensorboard": "edge",
    "diffusers": "edge",
    "piq": "edge",
    "skimage": "edge",
    "ray": "ray",
}
"""The optional packages (by import name) and the extra of ``pyproject.toml`` holding each."""
LEARNED_MODULES = ("torch", "safetensors")
"""What playing a learned policy (a checkpoint) needs."""
TRAINING_MODULES = (*LEARNED_MODULES, "tensorboard")
"""What training a learned policy needs (its metrics go to TensorBoard too)."""
NODE_MODULES = ("torch", "diffusers", "piq", "skimage")
"""What the live nodes need: RePaint at the edge and the cloud, the users' images and scores."""
_claimed: list[RunFolder] = []
"""The new run folders the running command claimed (:func:`new_run_folder`)."""


# Running a command ---------------------------------------------------------------------------


def set_handler(
    parser: argparse.ArgumentParser,
    options: Callable[[argparse.Namespace], Options],
    handle: Callable[[Options], int],
) -> None:
    """Make ``parser``'s command run ``handle`` on the options built from its flags."""
    parser.set_defaults(
        handler=lambda namespace: _handle_marking_failures(handle, options(namespace))
    )


def _handle_marking_failures(handle: Callable[[Options], int], options: Options) -> int:
    """``handle(options)``; if it fails (an exception, not an interrupt, which keeps a
    resumable folder), each new run folder it claimed that holds no result yet is marked
    failed (``RunFolder.mark_failed``), so that a retry with the same ``--out`` works."""
    _claimed.clear()
    try:
        return handle(options)
    except Exception as exc:
        for folder in _claimed:
            folder.mark_failed(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _claimed.clear()


def require_modules(what: str, modules: Iterable[str]) -> None:
    """Refuse, in one line with the ``pip install`` that fixes it, a command that needs an
    optional package which is not installed (found without importing it)."""
    missing = [name for name in dict.fromkeys(modules) if find_spec(name) is None]
    if missing:
        extras = ",".join(sorted({EXTRA_OF[name] for name in missing}))
        raise UsageError(
            f"{what} needs {', '.join(missing)}, not installed: pip install -e '.[{extras}]'"
        )


@contextmanager
def keeping(kept: str) -> Iterator[None]:
    """Within the block, an interrupt (Ctrl-C, SIGTERM) carries ``kept``, what the command
    has kept so far, which the CLI prints as it stops (the innermost block's statement)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if getattr(exc, KEPT, None) is None:
            setattr(exc, KEPT, kept)
        raise


def lab_log(quiet: bool) -> Callable[[str], None]:
    """Where the experiments report their progress: the log, or nowhere with ``--quiet``."""
    if quiet:
        return lambda message: None
    return logging.getLogger("testbed.lab.experiments").info


# Counts --------------------------------------------------------------------------------------


class AtLeastOne(argparse.Action):
    """Stores an integer flag, refusing a value below 1 in one line (``--workers = 0:
    allowed >= 1``, exit 2) as every other input error, not with argparse's usage text."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values < 1:
            raise UsageError(f"{option_string} = {values}: allowed >= 1")
        setattr(namespace, self.dest, values)


def add_count(
    parser: argparse.ArgumentParser, flag: str, default: int | None, help: str, **kwargs: Any
) -> None:
    """An integer flag allowed >= 1 (``--episodes``, ``--seeds``, ``--threads``, ...)."""
    parser.add_argument(flag, type=int, action=AtLeastOne, default=default, help=help, **kwargs)


def add_episodes(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    add_count(parser, "--episodes", default, help)


def add_seeds(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    add_count(parser, "--seeds", default, help)


def add_threads(parser: argparse.ArgumentParser, help: str) -> None:
    add_count(parser, "--threads", None, help)


def add_workers(parser: argparse.ArgumentParser, help: str) -> None:
    """``--workers N`` processes and ``--ray`` to send the runs to a Ray cluster instead."""
    add_count(parser, "--workers", 1, help, metavar="N")
    parser.add_argument("--ray", default=None, metavar="local|auto|ADDRESS", help=RAY_HELP)


# The scenario --------------------------------------------------------------------------------


def add_scenario_flags(
    parser: argparse.ArgumentParser,
    default: str = "Table 2",
    seed_help: str = "the run's seed (overrides the scenario's)",
    seed_and_users: bool = True,
    training: bool = False,
) -> None:
    """``--config``, ``--set`` (the training sections too with ``training``), and unless
    told otherwise ``--seed`` and ``--users``."""
    parser.add_argument("--config", default=None, help=f"scenario TOML (default: {default})")
    sections = ", ".join(f"{s}.KEY" for s in SCENARIO_SECTIONS)
    extra = ", train.KEY, allocator.KEY, caching.KEY" if training else ""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one option (repeatable; VALUE as TOML): seed, {sections}{extra}",
    )
    if seed_and_users:
        parser.add_argument("--seed", type=int, default=None, help=seed_help)
        parser.add_argument(
            "--users", type=int, default=None, help="U, the users (overrides the scenario's)"
        )


def scenario_options(namespace: argparse.Namespace, sweep: bool = False) -> ScenarioOptions:
    """The :class:`ScenarioOptions` of :func:`add_scenario_flags`' flags (``--set`` parsed
    here, once)."""
    return ScenarioOptions(
        Path(namespace.config) if namespace.config else None,
        Overrides.parse(namespace.set, sweep=sweep),
        getattr(namespace, "seed", None),
        getattr(namespace, "users", None),
    )


# The output ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """Where a command writes: ``--out`` (None: the command's default), ``--overwrite``
    and, for a resumable command, ``--resume``."""

    out: Path | None = None
    overwrite: bool = False
    resume: Path | None = None

    def path(self, default: str) -> Path:
        return self.out if self.out is not None else Path(default)


def add_output_flags(
    parser: argparse.ArgumentParser, default: str | None, resume: str | None = None
) -> None:
    """``--out`` (a run folder, ``default`` when not given), ``--overwrite``, and ``--resume``
    with the help ``resume`` for a resumable command."""
    where = f" (default: {default})" if default else ""
    parser.add_argument("--out", default=None, help=f"run folder{where}")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    if resume is not None:
        parser.add_argument("--resume", default=None, metavar="DIR", help=resume)


def output_options(namespace: argparse.Namespace) -> Output:
    resume = getattr(namespace, "resume", None)
    return Output(
        Path(namespace.out) if namespace.out else None,
        namespace.overwrite,
        Path(resume) if resume else None,
    )


def new_run_folder(
    output: Output,
    default: str,
    scenario: ScenarioConfig | None = None,
    resumable: bool = True,
) -> RunFolder:
    """The command's new run folder (``--out``, else ``default``), once every input is
    checked: refused if it is not empty (unless ``--overwrite``, or its command failed
    before its first result), claimed, with the scenario (if any) and the provenance
    ``run.json`` written first."""
    path = output.path(default)
    replace = output.overwrite or RunFolder.failed_before_results(path)
    RunFolder.check_new(path, overwrite=replace, resumable=resumable)
    folder = RunFolder.claim(path, replace)
    _claimed.append(folder)
    if scenario is not None:
        folder.write_scenario(scenario)
    folder.write_provenance()
    return folder


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# Policies ------------------------------------------------------------------------------------


def add_policy_flags(parser: argparse.ArgumentParser) -> None:
    """``--policy`` (a registry name or a composite) and its ``--checkpoint``."""
    parser.add_argument("--policy", default="optimal", metavar="NAME", help=POLICY_HELP)
    parser.add_argument(
        "--checkpoint", default=None, help="run folder of `testbed train` (for a learned part)"
    )


def require_checkpoint(policy: str, checkpoint: str | None) -> list[str]:
    """The learned parts of ``policy`` (checking its name), refused without ``--checkpoint``."""
    learned = learned_parts(policy)
    if learned and not checkpoint:
        part = "" if learned == [policy] else f" (for its part {learned[0]})"
        raise UsageError(f"--policy {policy} needs --checkpoint RUN_DIR{part}")
    if learned:
        require_modules(f"--policy {policy}", LEARNED_MODULES)
    return learned


def add_preset(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--preset", choices=PRESET_CHOICES, default=None, help=help)


def add_budget_flags(parser: argparse.ArgumentParser, preset_help: str, workers_help: str) -> None:
    """The budget of many training runs (`experiment`, `sweep`): quick or full, seeds,
    episodes, preset; and the workers that run them."""
    parser.add_argument("--quick", action="store_true", help="small budget (<= ~10 min on CPU)")
    add_seeds(parser, None, "seeds per point (default 3)")
    add_episodes(parser, None, "H per training run")
    add_preset(parser, preset_help)
    add_workers(parser, workers_help)


def finished_line(folder: RunFolder, what: str) -> str | None:
    """The one line of a ``--resume`` of a finished experiment or sweep (its ``timing.json``,
    written once its last run finished, is there), else None: nothing is run or written."""
    from testbed.lab.workers import TIMING

    if not folder.has(TIMING):
        return None
    return (
        f"{folder.path}: the {what} is finished ({TIMING} written); nothing to resume, "
        "nothing changed (another budget: a new --out)"
    )


@dataclass(frozen=True)
class BudgetOptions:
    """:func:`add_budget_flags`' flags: the budget of many runs and where they run."""

    quick: bool = False
    """The quick budget (else the full one)."""
    seeds: int | None = None
    episodes: int | None = None
    preset: str | None = None
    workers: int = 1
    ray: str = ""
    """A Ray address (``local``, ``auto``, ADDRESS); empty: local processes."""

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> BudgetOptions:
        return cls(
            namespace.quick,
            namespace.seeds,
            namespace.episodes,
            namespace.preset,
            namespace.workers,
            ray_address(namespace.ray),
        )

    def require_modules(self, what: str, trains: bool) -> None:
        """Refuse a budget whose runs need a package that is not installed: training (if
        ``trains``) and Ray (with ``--ray``)."""
        needs = (*(TRAINING_MODULES if trains else ()), *(("ray",) if self.ray else ()))
        require_modules(what, needs)


def ray_address(ray: str | None) -> str:
    """``--ray`` checked: ``local``, ``auto``, or a cluster's HOST:PORT (``ray://`` before
    it for Ray Client); empty when not given."""
    if ray and ray not in ("local", "auto"):
        check_address("--ray", ray.removeprefix("ray://"))
    return ray or ""


# Security ------------------------------------------------------------------------------------


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-cert``, ``--tls-key``, ``--tls-ca`` and ``--token`` to ``parser``."""
    group = parser.add_argument_group(
        "security", "loopback needs none of these; any other --listen address needs all but CA"
    )
    group.add_argument(
        "--tls-cert", default=None, metavar="PATH", help="this node's TLS certificate (PEM)"
    )
    group.add_argument("--tls-key", default=None, metavar="PATH", help="its private key (PEM)")
    group.add_argument(
        "--tls-ca",
        default=None,
        metavar="PATH",
        help="CA certificate (PEM) that signed the nodes this one calls: they are verified",
    )
    group.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help=f"shared secret every call carries and every node checks (default: the "
        f"environment variable {TOKEN_ENV}, better: a flag shows in the process list)",
    )


def security_options(namespace: argparse.Namespace) -> SecurityOptions:
    """The :class:`SecurityOptions` of :func:`add_security_flags`' flags; the token from
    ``$TESTBED_TOKEN`` when ``--token`` is absent."""
    return SecurityOptions(
        namespace.tls_cert,
        namespace.tls_key,
        namespace.tls_ca,
        namespace.token or os.environ.get(TOKEN_ENV) or None,
    )

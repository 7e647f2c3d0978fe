"""The run folder: the one owner of its files.

Every command writes into a run folder, and every read or write of the folder's own files
goes through :class:`RunFolder`:

=====================  =====================================================================
``config.toml``        the scenario that ran (``testbed.core.config``'s TOML)
``run.json``           provenance: creation time, command line (tokens redacted), git
                       revision, package versions, device
``train.json``         a training run's hyperparameters, resolved against their preset
                       (:class:`agents.t2drl.TrainConfig`)
``live.json``          the options of a live run (``testbed run``), for ``--resume``
``checkpoint/``        a training run's checkpoint (``testbed.runs.checkpoints``)
``failed.txt``         why the command failed before its first result: a new command may
                       claim the folder again without ``--overwrite`` (:meth:`mark_failed`)
other ``*.json``       a command's own small files (summaries, sweep identity, timing),
                       written atomically through :meth:`RunFolder.write_json`
=====================  =====================================================================

A command first checks its new folder with every other input (:meth:`RunFolder.check_new`)
and only then claims it (:meth:`RunFolder.claim`), so a refused input leaves nothing on
disk. The agents know no folder layout: checkpoints hand tensors to and from them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.core.config import ScenarioConfig, load_config, save_config
from testbed.core.errors import UsageError
from testbed.core.outputs import atomic_write_text, check_out_dir, claim_out_dir
from testbed.proto.security import redacted_argv
from testbed.runs.provenance import run_metadata

if TYPE_CHECKING:
    from agents.t2drl import T2DRLAgents, TrainConfig

CONFIG = "config.toml"
PROVENANCE = "run.json"
TRAIN = "train.json"
LIVE = "live.json"
CHECKPOINT = "checkpoint"
FAILED = "failed.txt"
EVALUATION = "eval.json"
"""An experiment run's evaluation (``testbed.lab.tasks``): a result, as a CSV row is."""


class RunFolder:
    """One run folder and the files in it (nothing is read or written on construction)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- creating ---------------------------------------------------------------------------

    @staticmethod
    def check_new(
        path: str | Path, flag: str = "--out", overwrite: bool = False, resumable: bool = False
    ) -> Path:
        """Refuse a new folder that exists and is not empty (unless ``overwrite``) or cannot
        be written; nothing is created (``testbed.core.outputs.check_out_dir``)."""
        return check_out_dir(path, flag=flag, overwrite=overwrite, resumable=resumable)

    @classmethod
    def claim(cls, path: str | Path, overwrite: bool = False) -> RunFolder:
        """Create the checked folder; with ``overwrite`` an existing one is replaced whole."""
        return cls(claim_out_dir(path, overwrite))

    @classmethod
    def create(
        cls,
        path: str | Path,
        flag: str = "--out",
        overwrite: bool = False,
        resumable: bool = False,
    ) -> RunFolder:
        """:meth:`check_new`, then :meth:`claim`: for a command whose inputs are all checked."""
        cls.check_new(path, flag, overwrite, resumable)
        return cls.claim(path, overwrite)

    @staticmethod
    def failed_before_results(path: str | Path) -> bool:
        """Whether ``path`` is a folder whose command failed before its first result (it
        holds :data:`FAILED` and no result): a new command replaces it unasked."""
        folder = RunFolder(path)
        return folder.has(FAILED) and not folder.holds_results()

    def holds_results(self) -> bool:
        """Whether anything in the folder is a result: a CSV with a data row (a metrics,
        comparison or sweep row), a checkpoint, or an experiment run's evaluation."""
        for path in self.path.rglob("*"):
            if (path.name == CHECKPOINT and path.is_dir()) or path.name == EVALUATION:
                return True
            if path.suffix == ".csv" and path.is_file() and _has_data_row(path):
                return True
        return False

    def mark_failed(self, reason: str) -> None:
        """Record that the command failed here with ``reason``, unless the folder holds
        results (which a retry must not replace unasked: ``--resume`` or ``--overwrite``)."""
        if self.path.is_dir() and not self.holds_results():
            (self.path / FAILED).write_text(
                f"{reason}\nThe command failed before its first result: a retry with the same "
                "--out replaces this folder.\n"
            )

    def require(self, *names: str, command: str, flag: str = "--resume") -> None:
        """Refuse a folder that lacks any of ``names``: one line naming what was expected."""
        if not all((self.path / name).exists() for name in names):
            expected = ", ".join(names)
            raise UsageError(
                f"{flag} {self.path}: not a run folder of `testbed {command}` (expected {expected})"
            )

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    # -- the scenario and the provenance ----------------------------------------------------

    def write_scenario(self, config: ScenarioConfig) -> None:
        save_config(config, self.path / CONFIG)

    def read_scenario(self) -> ScenarioConfig:
        return load_config(self.path / CONFIG)

    def write_provenance(self, argv: list[str] | None = None) -> dict[str, Any]:
        """``run.json`` for the command ``argv`` (default: this process's), tokens redacted."""
        metadata = run_metadata(redacted_argv(list(sys.argv if argv is None else argv)))
        self.write_json(PROVENANCE, metadata)
        return metadata

    # -- small JSON files -------------------------------------------------------------------

    def write_json(self, name: str, data: Any, default: Any = None) -> None:
        """``name`` as indented JSON, written atomically (never half a file)."""
        text = json.dumps(data, indent=2, default=default) + "\n"
        atomic_write_text(self.path / name, text)

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    # -- training runs ----------------------------------------------------------------------

    def write_train(self, train: TrainConfig) -> None:
        """``train.json``: the resolved hyperparameters (``TrainConfig.to_json``)."""
        self.write_json(TRAIN, train.to_json())

    def read_train(self) -> TrainConfig:
        """The stored hyperparameters, in the resolved form or the older form that left the
        preset's choices as placeholders (``TrainConfig.from_json`` reads both)."""
        from agents.t2drl import TrainConfig

        try:
            return TrainConfig.from_json(self.read_json(TRAIN))
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"{self.path / TRAIN} is missing or unreadable: {exc}") from exc

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def write_checkpoint(
        self,
        agents: T2DRLAgents,
        train: TrainConfig,
        scenario: ScenarioConfig,
        state: dict[str, Any],
    ) -> None:
        from testbed.runs.checkpoints import write_checkpoint

        write_checkpoint(self.checkpoint, agents, train, scenario, state)

    def verify_checkpoint(
        self, agent: str | None = None, scenario: ScenarioConfig | None = None
    ) -> dict[str, Any]:
        """The checkpoint's manifest once kind, shape and checksums match (by default the
        stored agent and scenario); its ``path`` is the folder actually read."""
        from testbed.runs.checkpoints import verify_checkpoint

        agent = agent if agent is not None else self.read_train().agent
        scenario = scenario if scenario is not None else self.read_scenario()
        return verify_checkpoint(self.checkpoint, agent, scenario)

    def load_acting(
        self, scenario: ScenarioConfig | None = None
    ) -> tuple[T2DRLAgents, TrainConfig]:
        """The trained agents with their acting networks loaded (verified against
        ``scenario``, default the one trained on), and the run's hyperparameters."""
        from agents.t2drl import T2DRLAgents
        from testbed.runs.checkpoints import read_networks

        train, trained_on = self.read_train(), self.read_scenario()
        manifest = self.verify_checkpoint(train.agent, scenario or trained_on)
        agents = T2DRLAgents(trained_on, train)
        agents.load_acting(read_networks(Path(manifest["path"]), check_finite=False))
        return agents, train

    def export(self, out: str | Path) -> dict[str, Any]:
        """Write the acting part of this trained run into the new folder ``out`` (which
        ``--checkpoint`` accepts): its ``train.json``, ``config.toml`` and ``run.json``, and
        a checkpoint with the actor and the caching network only (no critic, optimiser or
        replay: a few hundred kB). The checkpoint is verified first."""
        from testbed.runs.checkpoints import write_acting

        manifest = self.verify_checkpoint()
        agents, train = self.load_acting()
        target = RunFolder(out)
        for name in (TRAIN, CONFIG, PROVENANCE):
            if self.has(name):
                target.path.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.path / name, target.path / name)
        state = {"episode": int(manifest["episode"]), "exported_from": self.path.name}
        return write_acting(target.checkpoint, agents, train.agent, self.read_scenario(), state)


def _has_data_row(path: Path) -> bool:
    """Whether the CSV at ``path`` has a complete line after its header."""
    with open(path, "rb") as fh:
        fh.readline()
        return fh.readline().endswith(b"\n")

"""The options of a live run (``testbed run``), typed and checked once, and the scenario
the live testbed starts from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from testbed.core.config import ScenarioConfig, build_catalogue, is_model_path, load_config
from testbed.core.errors import UsageError
from testbed.live.faults import Faults, parse_faults
from testbed.proto.security import SecurityOptions, check_address
from testbed.runs.folder import LIVE, RunFolder
from testbed.sim.policies import learned_parts

LIVE_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "live_cpu.toml"
"""The default scenario of `testbed run` and of the nodes: the CPU calibration of the
shipped zoo."""

STORED = {
    "policy": "policy",
    "checkpoint": "checkpoint",
    "episodes": "episodes",
    "time_scale": "time_scale",
    "request_timeout": "request_timeout_s",
    "gallery": "gallery_users",
    "device": "device",
    "dtype": "dtype",
    "threads": "threads",
    "inject": "inject",
    "restart_nodes": "restart_nodes",
    "edge": "edge",
    "users_node": "users_node",
}
"""The options a run folder's ``live.json`` stores, for ``--resume``: its key (the flag's
name) -> the :class:`LiveOptions` field."""
ADDED_LATER = {"dtype": "float32"}
"""Stored options that a run folder written before they existed lacks: what it ran with."""


@dataclass(frozen=True)
class LiveOptions:
    """Every option of one live run, as given; :meth:`check` refuses a bad one (a
    `UsageError` naming the flag) with the run's other inputs. The scenario is apart:
    :class:`~testbed.core.config.ScenarioConfig`."""

    policy: str = "optimal"
    """A registry name or CACHING+ALLOCATION (``testbed.sim.policies``)."""
    checkpoint: str | None = None
    """Run folder of ``testbed train`` for a learned policy or part."""
    episodes: int = 1
    """Episodes of T frames x K slots."""
    time_scale: float = 1.0
    """Emulated seconds per wall second on the paced links (generation stays real)."""
    request_timeout_s: float = 120.0
    """Deadline of one user's request."""
    gallery_users: int = 2
    """Users per slot whose images are kept in ``gallery/``."""
    device: str | None = None
    """Torch device of the edge and the cloud the run starts (default: theirs)."""
    dtype: str = "float32"
    """Precision of the UNet at the edge and the cloud the run starts
    (``edge_node.executor.DTYPES``)."""
    threads: int | None = None
    """Torch CPU threads per node the run starts (default 1)."""
    inject: tuple[str, ...] = ()
    """The ``--inject`` items as given (stored so in ``live.json``): :attr:`faults`."""
    restart_nodes: bool = False
    """Restart a dead edge at the next frame (its cache is refilled then)."""
    edge: str | None = None
    """A running edge node (HOST:PORT), with :attr:`users_node`: no nodes are started."""
    users_node: str | None = None
    """A running users' node (HOST:PORT), with :attr:`edge`."""
    start_timeout_s: float = 120.0
    """Seconds each node the run starts may take to answer SERVING."""
    max_failed_share: float = 0.5
    """The run fails (exits non-zero) when more than this share of its user-slots failed;
    one in which every user-slot failed always does. Not stored: a resumed run is judged by
    the value given to ``--resume``."""
    progress: bool = True
    """Draw a progress bar."""
    security: SecurityOptions = field(default_factory=SecurityOptions)
    """TLS and the token of the controller's channels and of the nodes it starts."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inject", tuple(self.inject))  # live.json stores a list

    def check(self) -> None:
        """Refuse options that cannot run, in one line naming the flag."""
        if self.time_scale <= 0 or not math.isfinite(self.time_scale):
            raise UsageError(f"--time-scale = {self.time_scale}: allowed finite values > 0")
        for flag, seconds in (
            ("--request-timeout", self.request_timeout_s),
            ("--start-timeout", self.start_timeout_s),
        ):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise UsageError(f"{flag} = {seconds}: allowed finite values > 0 (seconds)")
        if self.gallery_users < 0:
            raise UsageError(f"--gallery = {self.gallery_users}: allowed >= 0")
        if not 0.0 <= self.max_failed_share <= 1.0:
            raise UsageError(f"--max-failed-share = {self.max_failed_share}: allowed 0 to 1")
        if (self.edge is None) != (self.users_node is None):
            raise UsageError("--edge and --users-node go together (nodes started elsewhere)")
        for flag, address in (("--edge", self.edge), ("--users-node", self.users_node)):
            if address is not None:
                check_address(flag, address)
                self.security.check_target(flag, address)
        learned = learned_parts(self.policy)  # a composite CACHING+ALLOCATION is checked here
        if learned and not self.checkpoint:
            part = "" if learned == [self.policy] else f" (for its part {learned[0]})"
            raise UsageError(f"--policy {self.policy} needs --checkpoint RUN_DIR{part}")
        faults = self.faults  # a bad --inject item is refused here
        if self.external_nodes and faults.kills_nodes:
            raise UsageError("--inject edge-kill/cloud-kill needs the nodes `testbed run` starts")
        if self.external_nodes and self.restart_nodes:
            raise UsageError("--restart-nodes needs the nodes `testbed run` starts (no --edge)")
        if not self.external_nodes:
            self._check_engine()

    def _check_engine(self) -> None:
        """Refuse a ``--device`` or ``--dtype`` the nodes the run starts could not run on."""
        if self.device is None and self.dtype == "float32":
            return  # the nodes' defaults: nothing to check (and no torch to import)
        from edge_node.executor import check_dtype, resolve_device

        try:
            device = resolve_device(self.device)
        except ValueError as exc:
            raise UsageError(f"--device {self.device}: {exc}") from None
        try:
            check_dtype(self.dtype, device)
        except ValueError as exc:
            raise UsageError(f"--dtype {self.dtype}: {exc}") from None

    @property
    def faults(self) -> Faults:
        """The faults of :attr:`inject`."""
        return parse_faults(self.inject)

    @property
    def external_nodes(self) -> bool:
        """The nodes were started elsewhere (:attr:`edge`, :attr:`users_node`)."""
        return self.edge is not None

    def store(self, folder: RunFolder) -> None:
        """Write the options :data:`STORED` names to the run folder's ``live.json``."""
        stored = {
            key: list(value) if isinstance(value := getattr(self, name), tuple) else value
            for key, name in STORED.items()
        }
        folder.write_json(LIVE, stored)

    def stored_in(self, folder: RunFolder) -> LiveOptions:
        """The options of the run stored in ``folder`` (its ``live.json``), with these
        options' progress bar, node start timeout and security (which are not stored)."""
        try:
            stored = folder.read_json(LIVE)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{folder / LIVE} is unreadable: {exc}") from exc
        stored = {**ADDED_LATER, **stored}
        missing = [key for key in STORED if key not in stored]
        if missing:
            raise UsageError(f"{folder / LIVE} lacks the options {missing}")
        return replace(self, **{name: stored[key] for key, name in STORED.items()})


def load_live_scenario(path: str | Path | None = None) -> ScenarioConfig:
    """The scenario TOML at ``path`` (default :data:`LIVE_SCENARIO`)."""
    return load_config(path if path is not None else LIVE_SCENARIO)


def check_live_catalogue(config: ScenarioConfig) -> None:
    """Refuse a catalogue the live nodes cannot serve: every model is a zoo model or a
    checkpoint folder (``catalogue.models``, labelled as the profile names it), and has an
    image source its users' requests come from (``catalogue.sources``)."""
    from edge_node.zoo import catalogue_model_dirs, zoo_names
    from ue_emulator.server import request_kinds

    names = build_catalogue(config.catalogue).names  # a label that is not the profile's: here
    entries = config.catalogue.model_entries(names)
    unknown = [e for e in entries if not is_model_path(e) and e not in zoo_names()]
    if unknown:
        raise UsageError(
            f"catalogue models {unknown} are not zoo models: the live testbed serves real "
            "models, so its catalogue.profile must name them (e.g. "
            "calibration/profiles/cpu_zoo.toml); catalogue.models may give a checkpoint "
            "folder for each (a path holds a '/', e.g. ./my_ddpm)"
        )
    catalogue_model_dirs(names, entries)  # every checkpoint folder a DDPM checkpoint
    request_kinds(config)  # every model an image source, every checkpoint RGB and square

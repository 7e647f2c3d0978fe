"""Typed scenario configuration: defaults are the paper's Table 2 and Sec. 7.1.

A scenario is four sections (network, timing, catalogue, utility) plus a run seed.
It loads from and saves to TOML; every value is checked on construction and a
wrong one raises :class:`ConfigError` naming the key and the allowed range.

Units are in the field names (``_hz``, ``_dbm``, ``_bps``, ``_mb``, ``_gb``, ``_s``,
``_m``). MB = 10^6 bytes, GB = 10^9 bytes. dBm values are converted to watts once,
in :func:`ScenarioConfig.derived`.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from testbed.core.errors import TestbedError

BITS_PER_MB = 8e6
BYTES_PER_GB = 1e9


class ConfigError(TestbedError):
    """A configuration value is missing, of the wrong type or out of range."""


def _check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{lo}, {hi}{right}"
        raise ConfigError(f"{key} = {value!r} is out of range: allowed {interval}")


def _check_int(key: str, value: int, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    _check_range(key, value, low, high)


def _check_interval(
    key: str, value: tuple[float, float], low: float, high: float, *, low_open: bool = False
) -> None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{key} must be a [low, high] pair, got {value!r}")
    for bound in value:
        _check_range(key, bound, low, high, low_open=low_open)
    if value[0] > value[1]:
        raise ConfigError(f"{key} = {list(value)!r}: low must not exceed high")


def _check_stochastic(key: str, matrix: list[list[float]], size: int) -> None:
    arr = np.asarray(matrix, dtype=float)
    if arr.shape != (size, size):
        raise ConfigError(f"{key} must be a {size}x{size} matrix, got shape {arr.shape}")
    if (arr < 0).any() or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-9):
        raise ConfigError(f"{key} must be row-stochastic: entries in [0, 1], rows summing to 1")


@dataclass(frozen=True)
class NetworkConfig:
    """Radio access and backhaul (Table 2, Sec. 7.1)."""

    num_users: int = 10
    """U, users in the cell."""
    area_side_m: float = 250.0
    """Side of the square area; the BS sits at its centre."""
    min_distance_m: float = 10.0
    """Users never come closer to the BS than this (keeps eq. (3) finite)."""
    uplink_bandwidth_hz: float = 20e6
    """W_up, shared by all users through the ratios b_u (eq. (2))."""
    downlink_bandwidth_hz: float = 40e6
    """W_dw, per-user downlink bandwidth (eq. (5))."""
    user_tx_power_dbm: float = 23.0
    """p_u."""
    bs_tx_power_dbm: float = 43.0
    """p_BS."""
    noise_psd_dbm_per_hz: float = -176.0
    """N0."""
    backhaul_up_rate_bps: float = 100e6
    """R_bc, BS to cloud (eq. (4))."""
    backhaul_down_rate_bps: float = 100e6
    """R_cb, cloud to BS (eq. (6))."""
    input_size_mb: tuple[float, float] = (5.0, 10.0)
    """Range of the request input size d_in (uniform)."""
    location_transition: tuple[tuple[float, ...], ...] = (
        (0.6, 0.1, 0.3),
        (0.3, 0.6, 0.1),
        (0.1, 0.3, 0.6),
    )
    """P^Lambda of eq. (36): uniform, concentrated, boundary."""
    concentrated_sigma_m: float = 30.0
    """Std. dev. per axis of user positions around the BS in the concentrated state."""
    boundary_band_m: float = 25.0
    """Width of the band along the area's edge that holds users in the boundary state."""

    def validate(self) -> None:
        _check_int("network.num_users", self.num_users, 1, 256)
        _check_range("network.area_side_m", self.area_side_m, 0, None, low_open=True)
        _check_range(
            "network.min_distance_m", self.min_distance_m, 0, self.area_side_m / 2, low_open=True
        )
        for key in ("uplink_bandwidth_hz", "downlink_bandwidth_hz"):
            _check_range(f"network.{key}", getattr(self, key), 0, None, low_open=True)
        for key in ("user_tx_power_dbm", "bs_tx_power_dbm"):
            _check_range(f"network.{key}", getattr(self, key), -50, 80)
        _check_range("network.noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, -250, -100)
        for key in ("backhaul_up_rate_bps", "backhaul_down_rate_bps"):
            _check_range(f"network.{key}", getattr(self, key), 0, None, low_open=True)
        _check_interval("network.input_size_mb", self.input_size_mb, 0, 1e6, low_open=True)
        _check_stochastic("network.location_transition", self.location_transition, 3)
        _check_range(
            "network.concentrated_sigma_m", self.concentrated_sigma_m, 0, None, low_open=True
        )
        _check_range(
            "network.boundary_band_m",
            self.boundary_band_m,
            0,
            self.area_side_m / 2 - self.min_distance_m,
            low_open=True,
        )


@dataclass(frozen=True)
class TimingConfig:
    """The two timescales (Sec. 3.1)."""

    num_frames: int = 10
    """T, frames per episode (caching decisions)."""
    slots_per_frame: int = 10
    """K, slots per frame (allocation decisions)."""
    slot_duration_s: float = 20.0
    """tau, also the delay bound of (11h)."""

    def validate(self) -> None:
        _check_int("timing.num_frames", self.num_frames, 1, 100_000)
        _check_int("timing.slots_per_frame", self.slots_per_frame, 1, 100_000)
        _check_range("timing.slot_duration_s", self.slot_duration_s, 0, None, low_open=True)


QUALITY_METRICS: dict[str, str] = {
    "tv": "total variation of the output (piq, l2 norm, [0, 1] pixels): the paper's measure",
    "hole_mae": "mean absolute error of the inpainted pixels against the ground truth, "
    "in % of the pixel range (100 x mean |x - y| over the hole)",
}
"""The quality measures of eq. (7), all lower-is-better; the users' side scores each
(``ue_emulator.quality``) and calibration fits A1..A4 on each."""


@dataclass(frozen=True)
class RepaintSettings:
    """RePaint's resampling schedule (Lugmayr et al., 2022), as the profile was measured with:
    after every ``jump_length`` denoising steps go back ``jump_length`` steps and redo them,
    ``jump_n_sample - 1`` times; ``jump_n_sample = 1`` is plain DDPM-style inpainting, one
    UNet call per step."""

    jump_length: int = 10
    jump_n_sample: int = 1

    def validate(self, where: str) -> None:
        _check_int(f"{where}.jump_length", self.jump_length, 1, 10_000)
        _check_int(f"{where}.jump_n_sample", self.jump_n_sample, 1, 10_000)


@dataclass(frozen=True)
class CatalogueConfig:
    """GenAI models, their popularity and their quality/latency curves (Sec. 7.1)."""

    num_models: int = 10
    """M, model types; model m serves service type m (0-based in code)."""
    cache_capacity_gb: float = 20.0
    """C, storage of the edge server."""
    total_steps: int = 1000
    """L (script L in the paper), denoising steps the edge runs per slot."""
    model_size_gb: tuple[float, float] = (2.0, 10.0)
    """Range of c_m."""
    output_size_mb: tuple[float, float] = (5.0, 10.0)
    """Range of d_op."""
    a1_steps: tuple[float, float] = (50.0, 100.0)
    """Range of A1, steps where quality starts to improve (eq. (7))."""
    a2_tv: tuple[float, float] = (100.0, 150.0)
    """Range of A2, the worst TV (eq. (7))."""
    a3_steps: tuple[float, float] = (150.0, 200.0)
    """Range of A3, steps where quality stabilises (eq. (7))."""
    a4_tv: tuple[float, float] = (0.0, 50.0)
    """Range of A4 in (0, 50], the best TV (eq. (7)); the low end is open."""
    b1_s_per_step: tuple[float, float] = (0.0, 0.5)
    """Range of B1 in (0, 0.5], seconds per denoising step (eq. (8))."""
    b2_s: tuple[float, float] = (0.0, 10.0)
    """Range of B2 in (0, 10], fixed generation overhead in seconds (eq. (8))."""
    model_seed: int = 2024
    """Seed of the draws of c_m, d_op and the curve parameters (independent of the run seed)."""
    profile: str = ""
    """Calibration profile (TOML/JSON, `[[model]]` tables): replaces the A/B draws when set."""
    quality_metric: str = "tv"
    """The quality measure of eq. (7), one of :data:`QUALITY_METRICS` (lower is better): the
    profile's A1..A4 fitted on it are used by the simulator, the agents, the live scoring and
    the report. "tv" is the paper's; the draws of ``a2_tv``/``a4_tv`` are TV, so any other
    measure needs a ``profile`` that holds its fit."""
    models: tuple[str, ...] = ()
    """Per model m, what the live nodes serve: a zoo name (a bare name, no ``/``) or the path
    of a local diffusers DDPM checkpoint folder (a relative one is taken relative to the
    scenario TOML's folder; write ``./name`` for a folder beside it). Each entry's label (the
    zoo name, or the folder's basename, :func:`model_label`) must be the profile's name of
    model m. Empty: the profile's names, all zoo models."""
    sources: tuple[str, ...] = ()
    """Per model m, the image source its users' requests come from (a name of
    ``ue_emulator.sources.SOURCE_LOADERS``). Empty: each model's label (a zoo model's own
    source); a checkpoint folder whose basename is not a source needs one."""
    popularity_states: tuple[float, ...] = (0.2, 0.5, 0.7)
    """Gamma, the Zipf skewness states (Sec. 7.1)."""
    popularity_transition: tuple[tuple[float, ...], ...] = (
        (0.6, 0.2, 0.2),
        (0.1, 0.7, 0.2),
        (0.2, 0.3, 0.5),
    )
    """P^Gamma of eq. (37)."""

    def validate(self) -> None:
        _check_int("catalogue.num_models", self.num_models, 1, 64)
        _check_range("catalogue.cache_capacity_gb", self.cache_capacity_gb, 0, None)
        _check_int("catalogue.total_steps", self.total_steps, 1, 100_000)
        _check_interval("catalogue.model_size_gb", self.model_size_gb, 0, 1e6, low_open=True)
        _check_interval("catalogue.output_size_mb", self.output_size_mb, 0, 1e6, low_open=True)
        _check_interval("catalogue.a1_steps", self.a1_steps, 0, 1e6)
        _check_interval("catalogue.a2_tv", self.a2_tv, 0, 1e9)
        _check_interval("catalogue.a3_steps", self.a3_steps, 0, 1e6)
        _check_interval("catalogue.a4_tv", self.a4_tv, 0, 1e9)
        _check_interval("catalogue.b1_s_per_step", self.b1_s_per_step, 0, 1e3)
        _check_interval("catalogue.b2_s", self.b2_s, 0, 1e6)
        if self.a1_steps[1] >= self.a3_steps[0]:
            raise ConfigError(
                "catalogue.a1_steps must lie below catalogue.a3_steps (A1 < A3 in eq. (7)): "
                f"got {list(self.a1_steps)} and {list(self.a3_steps)}"
            )
        _check_int("catalogue.model_seed", self.model_seed, 0)
        if not isinstance(self.profile, str):
            raise ConfigError(f"catalogue.profile must be a path string, got {self.profile!r}")
        if self.quality_metric not in QUALITY_METRICS:
            raise ConfigError(
                f"catalogue.quality_metric = {self.quality_metric!r}: "
                f"allowed {list(QUALITY_METRICS)}"
            )
        if self.quality_metric != "tv" and not self.profile:
            raise ConfigError(
                f"catalogue.quality_metric = {self.quality_metric!r} needs a catalogue.profile "
                "that holds its eq. (7) fit (the drawn catalogue.a2_tv/a4_tv are TV)"
            )
        self._validate_models()
        if len(self.popularity_states) < 1:
            raise ConfigError("catalogue.popularity_states must hold at least one state")
        for gamma in self.popularity_states:
            _check_range("catalogue.popularity_states", gamma, 0, 10)
        _check_stochastic(
            "catalogue.popularity_transition",
            self.popularity_transition,
            len(self.popularity_states),
        )

    def _validate_models(self) -> None:
        """``models`` and ``sources``: strings, one per model (or none); a path entry an
        existing folder."""
        for key in ("models", "sources"):
            entries = getattr(self, key)
            if not isinstance(entries, tuple) or not all(isinstance(e, str) and e for e in entries):
                raise ConfigError(f"catalogue.{key} must be a list of non-empty strings")
            if entries and len(entries) != self.num_models:
                raise ConfigError(
                    f"catalogue.{key} has {len(entries)} entries: allowed none or "
                    f"catalogue.num_models = {self.num_models}"
                )
        if self.models and not self.profile:
            raise ConfigError(
                "catalogue.models needs a catalogue.profile that names its models (their "
                "calibration: `testbed calibrate --models`)"
            )
        for entry in self.models:
            if is_model_path(entry) and not Path(entry).expanduser().is_dir():
                raise ConfigError(
                    f"catalogue.models: {entry!r} is not a folder: allowed a zoo name or the "
                    "path of a diffusers DDPM checkpoint folder"
                )
            if model_label(entry) in ("", ".", ".."):  # the label names the edge's cache folder
                raise ConfigError(
                    f"catalogue.models: {entry!r} has no basename: allowed a folder path that "
                    "ends in the folder's name"
                )

    def model_entries(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """What model m is served from: ``models`` or, empty, the catalogue ``names``."""
        return self.models or names

    def model_sources(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The request-image source of each model: ``sources`` or, empty, each label."""
        return self.sources or tuple(model_label(e) for e in self.model_entries(names))


def is_model_path(entry: str) -> bool:
    """Whether a ``catalogue.models`` entry is a folder path (it holds a ``/`` or starts with
    ``~``) rather than a zoo name."""
    return "/" in entry or entry.startswith("~")


def model_label(entry: str) -> str:
    """The profile name of a ``catalogue.models`` entry: a zoo name itself, a checkpoint
    folder its basename (as ``testbed calibrate --models`` names it)."""
    return Path(entry).expanduser().name if is_model_path(entry) else entry


@dataclass(frozen=True)
class UtilityConfig:
    """Utility (10) and the penalties of (23) and (32)."""

    alpha: float = 0.7
    """Preference weight of delay against TV in eq. (10)."""
    slot_penalty: float = 10.0
    """chi, added per user whose delay exceeds tau (eq. (23))."""
    frame_penalty: float = 100.0
    """Xi, subtracted when the cache exceeds C (eq. (32))."""
    delay_cap_s: float = 200.0
    """Uplink delays are recorded at most as this: a user starved of bandwidth never finishes."""

    def validate(self) -> None:
        _check_range("utility.alpha", self.alpha, 0, 1)
        _check_range("utility.slot_penalty", self.slot_penalty, 0, None)
        _check_range("utility.frame_penalty", self.frame_penalty, 0, None)
        _check_range("utility.delay_cap_s", self.delay_cap_s, 0, None, low_open=True)


_SECTIONS = {
    "network": NetworkConfig,
    "timing": TimingConfig,
    "catalogue": CatalogueConfig,
    "utility": UtilityConfig,
}


@dataclass(frozen=True)
class ScenarioConfig:
    """One scenario: the paper's defaults unless overridden."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    catalogue: CatalogueConfig = field(default_factory=CatalogueConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    seed: int = 0
    """Run seed: drives every random draw of the world and of the policies."""

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0)
        for name in _SECTIONS:
            getattr(self, name).validate()
        if self.utility.delay_cap_s <= self.timing.slot_duration_s:
            raise ConfigError(
                f"utility.delay_cap_s = {self.utility.delay_cap_s!r} is out of range: "
                f"allowed (timing.slot_duration_s = {self.timing.slot_duration_s:g}, inf)"
            )

    def to_dict(self) -> dict[str, Any]:
        return _listify(asdict(self))

    def replace(self, **overrides: Any) -> ScenarioConfig:
        """A copy with dotted overrides, e.g. ``replace(**{"network.num_users": 18})``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.rpartition(".")
            if section and section not in _SECTIONS:
                allowed = ["seed", *(f"{name}.KEY" for name in _SECTIONS)]
                raise ConfigError(f"unknown config key {dotted!r}; allowed: {allowed}")
            target = data[section] if section else data
            if key not in target:
                allowed = sorted(f"{section}.{k}" if section else k for k in target)
                raise ConfigError(f"unknown config key {dotted!r}; allowed: {allowed}")
            target[key] = value
        return ScenarioConfig.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioConfig:
        unknown = set(data) - set(_SECTIONS) - {"seed"}
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            if not isinstance(data.get(name, {}), Mapping):
                raise ConfigError(f"{name} must be a table of keys ([{name}]), got {data[name]!r}")
            values = dict(data.get(name, {}))
            allowed = {f.name for f in fields(section_cls)}
            bad = set(values) - allowed
            if bad:
                keys = sorted(f"{name}.{k}" for k in bad)
                raise ConfigError(f"unknown key(s) {keys}; allowed: {sorted(allowed)}")
            kwargs[name] = section_cls(**{k: _tuplify(v) for k, v in values.items()})
        if "seed" in data:
            kwargs["seed"] = data["seed"]
        return cls(**kwargs)


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_listify(v) for v in value]
    return value


MAX_TOML_BYTES = 1_000_000
"""Largest scenario or profile file read (the shipped ones are a few kB)."""


def read_bounded(path: Path, what: str) -> bytes:
    """The bytes of the scenario or profile file at ``path``: a `ConfigError` naming
    ``what`` and the file when it cannot be read or is larger than :data:`MAX_TOML_BYTES`."""
    try:
        size = path.stat().st_size
        if size > MAX_TOML_BYTES:
            raise ConfigError(f"{what} {path}: {size:,} bytes; allowed <= {MAX_TOML_BYTES:,}")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TOML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_TOML_BYTES:  # a file that grows, or one that reports no size (a pipe)
        raise ConfigError(f"{what} {path}: larger than {MAX_TOML_BYTES:,} bytes")
    return raw


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path`` (:func:`read_bounded`): a `ConfigError` naming ``what``
    and the file when it is not UTF-8 or not TOML, or nests too deep to parse."""
    raw = read_bounded(path, what)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not valid TOML: not UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path}: not valid TOML: nested too deep to read") from None


def load_config(path: str | Path) -> ScenarioConfig:
    """Read a scenario from TOML; keys left out keep their defaults.

    A relative ``catalogue.profile`` or ``catalogue.models`` path is taken relative to the
    TOML file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scenario file {path} does not exist (or is not a file)")
    data = read_toml(path, "scenario file")
    profile = data.get("catalogue", {}).get("profile")
    if isinstance(profile, str) and profile and not Path(profile).is_absolute():
        data["catalogue"]["profile"] = str((path.parent / profile).resolve())
    models = data.get("catalogue", {}).get("models")
    if isinstance(models, list):
        data["catalogue"]["models"] = [
            os.path.abspath(path.parent / Path(m).expanduser())  # a link keeps its name
            if isinstance(m, str) and is_model_path(m)
            else m
            for m in models
        ]
    return ScenarioConfig.from_dict(data)


def save_config(config: ScenarioConfig, path: str | Path) -> None:
    """Write the full scenario (every key, defaults included) as TOML."""
    Path(path).write_text(tomli_w.dumps(config.to_dict()))


def dbm_to_watt(power_dbm: float | np.ndarray) -> float | np.ndarray:
    """dBm to W: 10^((P_dBm - 30) / 10)."""
    return 10.0 ** ((np.asarray(power_dbm, dtype=float) - 30.0) / 10.0)


@dataclass(frozen=True)
class ModelCatalogue:
    """Resolved per-model arrays (index m is the 0-based model / service type)."""

    names: tuple[str, ...]
    size_gb: np.ndarray
    output_bits: np.ndarray
    a1_steps: np.ndarray
    a2_quality: np.ndarray
    """A2 of eq. (7): the quality (lower is better) at up to A1 steps, in ``quality_metric``."""
    a3_steps: np.ndarray
    a4_quality: np.ndarray
    """A4 of eq. (7): the quality from A3 steps on (the cloud's full quality)."""
    b1_s_per_step: np.ndarray
    b2_s: np.ndarray
    quality_metric: str = "tv"
    repaint: RepaintSettings = RepaintSettings()
    """The resampling schedule the edge and the cloud run (the profile's ``[repaint]``)."""

    @property
    def num_models(self) -> int:
        return len(self.names)


_CURVE_KEYS = ("A1", "A2", "A3", "A4")
_LATENCY_KEYS = ("B1", "B2")


@dataclass(frozen=True)
class Profile:
    """A calibration profile: per model its eq. (8) fit and an eq. (7) fit per quality
    measure, and the RePaint schedule they were measured with."""

    models: tuple[dict[str, Any], ...]
    """The ``[[model]]`` tables as read (name, B1, B2, optional size_gb, ...)."""
    curves: dict[str, tuple[dict[str, float], ...]]
    """measure -> per model {"A1", "A2", "A3", "A4"} (and "r2" where the profile has it)."""
    repaint: RepaintSettings

    def curve(self, metric: str, path: str | Path) -> dict[str, np.ndarray]:
        """A1..A4 of every model fitted on ``metric``; ConfigError if the profile lacks it."""
        if metric not in self.curves:
            raise ConfigError(
                f"catalogue.quality_metric = {metric!r}: {path} holds no [model.quality.{metric}] "
                f"fit (it has {sorted(self.curves)}); recalibrate, or refit its measurements "
                "with `testbed calibrate --measurements`"
            )
        return {k: np.array([float(c[k]) for c in self.curves[metric]]) for k in _CURVE_KEYS}


def _check_curve(where: str, curve: Any) -> dict[str, float]:
    if not isinstance(curve, Mapping):
        raise ConfigError(f"{where} must be a table of A1..A4, got {curve!r}")
    for key in _CURVE_KEYS:
        if key not in curve:
            raise ConfigError(f"{where} lacks {key}")
        _check_range(f"{where}.{key}", curve[key], 0, None)
    if not curve["A1"] < curve["A3"]:
        raise ConfigError(f"{where}: A1 must be below A3")
    return dict(curve)


def load_profile(path: str | Path) -> Profile:
    """Read a calibration profile: ``[[model]]`` tables with B1, B2 and eq. (7) fits.

    Accepts TOML or JSON of the same shape (``{"model": [{...}, ...]}``). Each model holds
    ``[model.quality.<measure>]`` tables of A1..A4 (and r2); a model's top-level A1..A4 (the
    form before the quality measures) is its TV fit. An optional ``size_gb`` per model sets its
    catalogue size c_m; an optional top-level ``[repaint]`` (jump_length, jump_n_sample) the
    resampling schedule, plain RePaint without resampling when absent.
    """
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(read_bounded(path, "catalogue.profile"))
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"catalogue.profile: cannot read {path}: {exc}") from exc
    else:
        data = read_toml(path, "catalogue.profile")
    models = data.get("model") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models:
        raise ConfigError(f"catalogue.profile: {path} holds no [[model]] tables")
    curves: dict[str, list[dict[str, float]]] = {}
    for i, entry in enumerate(models):
        where = f"catalogue.profile model[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table, got {entry!r}")
        for key in _LATENCY_KEYS:
            if key not in entry:
                raise ConfigError(f"catalogue.profile: model[{i}] lacks {key}")
            _check_range(f"{where}.{key}", entry[key], 0, None)
        _check_range(f"{where}.B1", entry["B1"], 0, None, low_open=True)
        if "size_gb" in entry:
            _check_range(f"{where}.size_gb", entry["size_gb"], 0, None, low_open=True)
        fits = dict(entry.get("quality", {}))
        if any(key in entry for key in _CURVE_KEYS):
            old = {k: entry[k] for k in _CURVE_KEYS if k in entry}
            fits.setdefault("tv", old | ({"r2": entry["r2_tv"]} if "r2_tv" in entry else {}))
        if not fits:
            raise ConfigError(f"catalogue.profile: model[{i}] lacks A1 (no eq. (7) fit)")
        for metric, curve in fits.items():
            if metric not in QUALITY_METRICS:
                raise ConfigError(
                    f"{where}.quality.{metric}: unknown measure; allowed {list(QUALITY_METRICS)}"
                )
            curves.setdefault(metric, []).append(_check_curve(f"{where}.quality.{metric}", curve))
    complete = {m: tuple(c) for m, c in curves.items() if len(c) == len(models)}
    repaint_table = data.get("repaint", {})
    if not isinstance(repaint_table, Mapping) or set(repaint_table) - {
        "jump_length",
        "jump_n_sample",
    }:
        raise ConfigError(
            f"catalogue.profile: [repaint] of {path} allows jump_length and jump_n_sample only"
        )
    repaint = RepaintSettings(**repaint_table)
    repaint.validate("catalogue.profile repaint")
    return Profile(models=tuple(models), curves=complete, repaint=repaint)


def build_catalogue(config: CatalogueConfig) -> ModelCatalogue:
    """Draw c_m, d_op and the curve parameters from ``model_seed`` (or take them from a profile).

    The draws use their own generator, so the same ``model_seed`` gives the same models
    whatever the run seed. Open interval ends of the paper, e.g. A4 in (0, 50], are
    honoured by drawing from the half-open interval the other way round.
    """
    m = config.num_models
    rng = np.random.default_rng(config.model_seed)

    def draw(bounds: tuple[float, float], open_low: bool = False) -> np.ndarray:
        low, high = bounds
        if open_low:  # (low, high]: mirror numpy's [low, high)
            return high - rng.uniform(0.0, 1.0, m) * (high - low)
        return rng.uniform(low, high, m)

    size_gb = draw(config.model_size_gb)
    output_bits = draw(config.output_size_mb) * BITS_PER_MB
    params = {
        "A1": draw(config.a1_steps),
        "A2": draw(config.a2_tv),
        "A3": draw(config.a3_steps),
        "A4": draw(config.a4_tv, open_low=True),
        "B1": draw(config.b1_s_per_step, open_low=True),
        "B2": draw(config.b2_s, open_low=True),
    }
    names = tuple(f"model{i}" for i in range(m))
    repaint = RepaintSettings()
    if config.profile:
        profile = load_profile(config.profile)
        entries = profile.models
        if len(entries) != m:
            raise ConfigError(
                f"catalogue.profile has {len(entries)} models but catalogue.num_models = {m}"
            )
        params = profile.curve(config.quality_metric, config.profile)
        params |= {k: np.array([float(e[k]) for e in entries]) for k in _LATENCY_KEYS}
        names = tuple(str(e.get("name", f"model{i}")) for i, e in enumerate(entries))
        for i, entry in enumerate(config.models):
            if model_label(entry) != names[i]:
                raise ConfigError(
                    f"catalogue.models[{i}] = {entry!r} is labelled {model_label(entry)!r} but "
                    f"the profile's model {i} is {names[i]!r}: allowed the profile's names in order"
                )
        size_gb = np.array(
            [float(e.get("size_gb", s)) for e, s in zip(entries, size_gb, strict=True)]
        )
        repaint = profile.repaint
    return ModelCatalogue(
        names=names,
        size_gb=size_gb,
        output_bits=output_bits,
        a1_steps=params["A1"],
        a2_quality=params["A2"],
        a3_steps=params["A3"],
        a4_quality=params["A4"],
        b1_s_per_step=params["B1"],
        b2_s=params["B2"],
        quality_metric=config.quality_metric,
        repaint=repaint,
    )

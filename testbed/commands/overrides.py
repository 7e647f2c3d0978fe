"""``--set SECTION.KEY=VALUE``: parsed once per command line into one typed object.

Every scenario key and every training option can be set from the command line with
``--set SECTION.KEY=VALUE`` (repeatable; VALUE is read as TOML, e.g. ``--set
network.num_users=14``, ``--set train.eval_every=10``, ``--set allocator.warmup=200``).
:class:`Overrides` holds the items by section: the scenario's (for
:meth:`ScenarioConfig.replace`) and the training ones (for `testbed train` only);
:class:`ScenarioOptions` is the scenario a command's ``--config``, ``--set``, ``--seed`` and
``--users`` describe.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from testbed.core.config import ScenarioConfig, load_config
from testbed.core.errors import UsageError

SCENARIO_SECTIONS = ("network", "timing", "catalogue", "utility")
TRAINING_SECTIONS = ("train", "allocator", "caching")
SEED = "seed"
"""The one ``--set`` key without a section: the scenario's seed."""


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, arrays, quoted strings), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _is_list(text: str) -> bool:
    """Whether a `testbed sweep` VALUE is a list ``V1,V2,...`` (not a TOML array or string)."""
    return "," in text and not text.lstrip().startswith(("[", '"', "'"))


def _split(item: str) -> tuple[str, str, str]:
    """An item's section, key and VALUE text; a one-line error naming the allowed sections."""
    key, sep, text = item.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not key or (key != SEED and (not dot or not name)):
        raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE or seed=VALUE")
    if key == SEED:
        section, name = SEED, SEED
    if section not in (SEED, *SCENARIO_SECTIONS, *TRAINING_SECTIONS):
        allowed = [SEED, *(f"{s}.KEY" for s in (*SCENARIO_SECTIONS, *TRAINING_SECTIONS))]
        raise UsageError(f"--set {key}: unknown section {section!r}; allowed: {allowed}")
    return section, name, text


@dataclass(frozen=True)
class Overrides:
    """The ``--set`` items of one command line, by section (read-only mappings)."""

    scenario: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """``seed`` and ``SECTION.KEY`` of the scenario's sections, as
    :meth:`ScenarioConfig.replace` takes them."""
    train: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """``train.KEY``: fields of ``agents.t2drl.TrainConfig``."""
    allocator: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """``allocator.KEY``: fields of the allocator's config."""
    caching: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """``caching.KEY``: fields of the caching agent's config."""
    swept: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """With ``sweep``: the items whose VALUE is a list ``V1,V2,...``, as (key, values)."""
    given: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """(section, key) of every item in the order given, swept ones included."""

    @classmethod
    def parse(cls, items: Sequence[str], sweep: bool = False) -> Overrides:
        """The items grouped by section; with ``sweep``, list values are kept apart in
        :attr:`swept`. A malformed item or an unknown section is a one-line `UsageError`."""
        grouped: dict[str, dict[str, Any]] = {}
        swept: list[tuple[str, tuple[Any, ...]]] = []
        given: list[tuple[str, str]] = []
        for item in items:
            section, name, text = _split(item)
            given.append((section, name))
            if sweep and _is_list(text):
                key = item.partition("=")[0]
                swept.append((key, tuple(parse_value(v.strip()) for v in text.split(","))))
            else:
                grouped.setdefault(section, {})[name] = parse_value(text)
        scenario = {
            name if section == SEED else f"{section}.{name}": value
            for section in (SEED, *SCENARIO_SECTIONS)
            for name, value in grouped.get(section, {}).items()
        }
        return cls(
            MappingProxyType(scenario),
            *(MappingProxyType(grouped.get(s, {})) for s in TRAINING_SECTIONS),
            swept=tuple(swept),
            given=tuple(given),
        )

    def training(self) -> dict[str, Mapping[str, Any]]:
        """The training sections that were given, in the order train, allocator, caching."""
        sections = {"train": self.train, "allocator": self.allocator, "caching": self.caching}
        return {section: values for section, values in sections.items() if values}

    def refuse_training(self) -> None:
        """Refuse training items: they apply to `testbed train` only."""
        for section in TRAINING_SECTIONS:
            name = next((n for s, n in self.given if s == section), None)
            if name is not None:
                raise UsageError(
                    f"--set {section}.{name}: training options apply to `testbed train` only"
                )


@dataclass(frozen=True)
class ScenarioOptions:
    """The scenario of ``--config`` (else a base) with ``--set``, ``--seed`` and ``--users``."""

    path: Path | None = None
    """``--config``: a scenario TOML (None: the command's base scenario)."""
    overrides: Overrides = field(default_factory=Overrides)
    seed: int | None = None
    users: int | None = None

    def build(self, base: ScenarioConfig | None = None) -> ScenarioConfig:
        """The scenario of ``--config`` (else ``base``, else Table 2) with the overrides,
        ``--seed`` and ``--users`` applied; a bad key or value is a one-line error."""
        if self.path is not None:
            config = load_config(self.path)
        else:
            config = base if base is not None else ScenarioConfig()
        overrides = dict(self.overrides.scenario)
        if self.seed is not None:
            overrides[SEED] = self.seed
        if self.users is not None:
            overrides["network.num_users"] = self.users
        return config.replace(**overrides) if overrides else config

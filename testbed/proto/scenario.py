"""The scenario a node serves, as its ``Describe`` RPC tells it: the keys that shape the world
and a hash of them, so the controller refuses nodes started with another scenario.

The keys are every value of the ``network``, ``timing`` and ``catalogue`` sections (what the
users' world and the edge's cache are built from), with the catalogue's model names and sizes
in place of its paths (``catalogue.profile``, ``catalogue.models``), which differ from host
to host for the same models. ``seed`` (each episode's seed travels in ``BeginEpisode``) and
``utility`` (the controller's scoring alone) are not among them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.proto import common_pb2

WORLD_SECTIONS = ("network", "timing", "catalogue")
"""The sections of a scenario the nodes build the world from."""
PATH_KEYS = ("catalogue.profile", "catalogue.models")
"""Keys whose values are paths on one host: described by the model names instead."""


def _flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in values.items()}


def world_keys(config: ScenarioConfig) -> dict[str, str]:
    """Each key of ``config`` that shapes the world, with its value as canonical JSON."""
    data = config.to_dict()
    keys: dict[str, Any] = {}
    for section in WORLD_SECTIONS:
        keys.update(_flatten(section, data[section]))
    for key in PATH_KEYS:
        del keys[key]
    catalogue = build_catalogue(config.catalogue)
    keys["catalogue.model_names"] = list(catalogue.names)
    keys["catalogue.model_sizes_gb"] = [round(float(size), 9) for size in catalogue.size_gb]
    return {key: json.dumps(value, sort_keys=True) for key, value in sorted(keys.items())}


def scenario_hash(keys: Mapping[str, str]) -> str:
    """sha256 (hex) of the canonical JSON of ``keys``."""
    canonical = json.dumps(dict(keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def describe(config: ScenarioConfig) -> common_pb2.ScenarioDescription:
    """The ``Describe`` reply of a node serving ``config``."""
    keys = world_keys(config)
    return common_pb2.ScenarioDescription(scenario_sha256=scenario_hash(keys), keys=keys)


def differing_keys(
    here: common_pb2.ScenarioDescription, there: common_pb2.ScenarioDescription
) -> list[str]:
    """``key = THERE there, HERE here`` for each key on which the descriptions differ
    (a key one of them lacks shows as ``missing``)."""
    if here.scenario_sha256 == there.scenario_sha256:
        return []
    differing = []
    for key in sorted(set(here.keys) | set(there.keys)):
        ours, theirs = here.keys.get(key, "missing"), there.keys.get(key, "missing")
        if ours != theirs:
            differing.append(f"{key} = {theirs} there, {ours} here")
    return differing or ["the hash of the keys (same keys, another hash function?)"]

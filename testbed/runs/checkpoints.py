"""The checkpoint folder of a training run: its files, its manifest, and its checks.

A checkpoint is ``checkpoint/`` inside a run folder: ``networks.safetensors`` (every
network, optimiser state and the torch generator), ``replay_<agent>.safetensors`` (each
replay buffer), ``state.json`` (episode, numpy generator states, epsilon) and
``manifest.json`` (agent kind, scenario shape, episode and the SHA-256 of every file).
Everything is safetensors or JSON, never pickle. An exported policy is the same folder
with the acting networks only, its manifest marked ``acting_only``. The agents know
nothing of this layout: they hand over and take back tensors
(:meth:`agents.t2drl.T2DRLAgents.tensors`, ``acting_state_dict``, ``load_acting``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from agents.t2drl import T2DRLAgents, TrainConfig, refuse_non_finite
from testbed.core.config import ScenarioConfig
from testbed.core.errors import CheckpointError

CHECKPOINT_VERSION = 1
NETWORKS = "networks.safetensors"
STATE = "state.json"
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_manifest(
    folder: Path, agent: str, scenario: ScenarioConfig, episode: int, **extra: Any
) -> dict[str, Any]:
    """``manifest.json`` of a checkpoint folder: agent kind, scenario shape, episode and the
    SHA-256 of every file already in it."""
    manifest = {
        "version": CHECKPOINT_VERSION,
        "agent": agent,
        "num_users": scenario.network.num_users,
        "num_models": scenario.catalogue.num_models,
        "episode": episode,
        **extra,
        "files": {f.name: sha256(f) for f in sorted(folder.iterdir())},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_checkpoint(
    ckpt: Path,
    agents: T2DRLAgents,
    train: TrainConfig,
    scenario: ScenarioConfig,
    state: dict[str, Any],
) -> None:
    """Every network, optimiser, replay buffer and random state, ``state.json`` and the
    manifest. Written into ``<ckpt>.tmp`` and swapped in, so a kill mid-write leaves the
    previous checkpoint (as ``<ckpt>`` or ``<ckpt>.old``) intact."""
    tmp, old = ckpt.with_name(ckpt.name + ".tmp"), ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(agents.tensors(), tmp / NETWORKS)
    for agent in (agents.allocator, agents.caching):
        save_numpy(agent.buffer.arrays(), tmp / f"replay_{agent.name}.safetensors")
    (tmp / STATE).write_text(json.dumps(state, indent=2, default=int) + "\n")
    write_manifest(tmp, train.agent, scenario, int(state["episode"]))
    if ckpt.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(ckpt: Path, agent: str, scenario: ScenarioConfig) -> dict[str, Any]:
    """The checkpoint's manifest, once its kind, its shape and every file's checksum match;
    a checkpoint caught between its write and its swap is read from ``<ckpt>.old``. The
    manifest's ``path`` is the folder actually read."""
    old = ckpt.with_name(ckpt.name + ".old")
    if not (ckpt / MANIFEST).is_file() and (old / MANIFEST).is_file():
        ckpt = old
    manifest_path = ckpt / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{ckpt} holds no complete checkpoint (no manifest.json); "
            "expected the checkpoint/ folder of `testbed train`"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files, kind = dict(manifest["files"]), manifest["agent"]
        shape = (int(manifest["num_users"]), int(manifest["num_models"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{manifest_path} is unreadable: {exc}") from exc
    if kind != agent:
        raise CheckpointError(f"{ckpt} holds a {kind!r} checkpoint, not {agent!r}")
    wanted = (scenario.network.num_users, scenario.catalogue.num_models)
    if shape != wanted:
        raise CheckpointError(
            f"{ckpt} was trained for U={shape[0]}, M={shape[1]}; "
            f"the scenario has U={wanted[0]}, M={wanted[1]}"
        )
    for name, digest in files.items():
        path = ckpt / name
        if not path.is_file() or sha256(path) != digest:
            raise CheckpointError(f"{path} is missing or corrupted (SHA-256 differs from manifest)")
    return {**manifest, "path": str(ckpt)}


def read_networks(ckpt: Path, check_finite: bool = True) -> dict[str, torch.Tensor]:
    """A verified checkpoint folder's networks, refused if any tensor is NaN or infinite
    (with ``check_finite``; ``T2DRLAgents.load_acting`` checks only those it loads)."""
    tensors = load_file(ckpt / NETWORKS)
    if check_finite:
        refuse_non_finite(tensors, str(ckpt / NETWORKS))
    return tensors


def load_training_state(ckpt: Path, agents: T2DRLAgents) -> dict[str, Any]:
    """Load a verified checkpoint's networks, optimisers and replay buffers into
    ``agents``; returns its ``state.json`` (episode, generator states, epsilon)."""
    agents.load_tensors(read_networks(ckpt))
    for agent in (agents.allocator, agents.caching):
        agent.buffer.load_arrays(load_numpy(ckpt / f"replay_{agent.name}.safetensors"))
    return json.loads((ckpt / STATE).read_text())


def write_acting(
    ckpt: Path, agents: T2DRLAgents, agent: str, scenario: ScenarioConfig, state: dict[str, Any]
) -> dict[str, Any]:
    """An acting-only checkpoint (an exported policy) in the new folder ``ckpt``."""
    ckpt.mkdir(parents=True)
    save_file(agents.acting_state_dict(), ckpt / NETWORKS)
    (ckpt / STATE).write_text(json.dumps(state, indent=2) + "\n")
    return write_manifest(ckpt, agent, scenario, int(state["episode"]), acting_only=True)

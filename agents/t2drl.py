"""T2DRL, Algorithm 1: DDQN caches once per frame, D3PG (or DDPG) allocates once per slot.

This module is the algorithm: the hyperparameters (:class:`TrainConfig`), the two agents of
one instance (:class:`T2DRLAgents`), the differentiable Sec. 6.2.2 amender, and the two
learners that sit in the frame/slot loop (:class:`AllocationLearner`, lines 13-35 of
Algorithm 1, and :class:`CachingLearner`, lines 7 and 38-46): each is a policy plus the
loop hooks through which it observes, stores its transitions and updates. The loop itself,
the run folder, the metrics and the checkpoints are the application's
(``testbed.training``); trained agents act through :class:`LearnedCaching` and
:class:`LearnedAllocation` with exploration off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from agents.d3pg import D3PG, D3PGConfig
from agents.ddpg import DDPG, ActorCriticConfig
from agents.ddqn import DDQN, DDQNConfig
from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue, load_config
from testbed.core.errors import CheckpointError
from testbed.core.observation import ObservationCodec
from testbed.core.protocols import Hooks
from testbed.core.records import FrameState, FrameStep, SlotState, SlotStep
from testbed.core.seeding import agent_seeds
from testbed.core.system_model import (
    STEP_AMENDERS,
    amend_allocation,
    amend_cache,
    feasible_actions,
    served_at_edge,
)

AGENTS = ("t2drl", "ddpg-t2drl")
PRESETS = ("default", "paper")
METRIC_COLUMNS = (
    "episode",
    "episode_reward",
    "mean_slot_reward",
    "utility",
    "hit_ratio",
    "violation_rate",
    "critic_loss",
    "actor_loss",
    "q_loss",
    "epsilon",
    "eval_mean_slot_reward",
    "eval_utility",
    "eval_hit_ratio",
    "wall_s",
)
LOSS_KEYS = ("critic_loss", "actor_loss", "q_loss")


@dataclass
class TrainConfig:
    """One training run of Algorithm 1."""

    agent: str = "t2drl"
    """`t2drl` (DDQN + D3PG) or `ddpg-t2drl` (DDQN + DDPG, Sec. 7.2)."""
    episodes: int = 500
    """H of Table 2."""
    seed: int = 0
    """Seeds the networks, the exploration and the training worlds."""
    preset: str = "default"
    """`default` (documented learning rates) or `paper` (Adam at 1e-6 for all, Sec. 7.1)."""
    threads: int = 1
    """torch CPU threads (small networks: one thread is fastest)."""
    checkpoint_every: int = 10
    """Episodes between checkpoints (and always at the end)."""
    eval_every: int = 5
    """Episodes between deterministic evaluations (exploration off) on a fixed episode."""
    steps_amender: str = ""
    """`paper` (Sec. 6.2.2: all L steps always spent), `cap` (rescaled only above L), or
    empty for the preset's choice: `cap` in `default`, `paper` in `paper`."""
    allocator: dict[str, Any] = field(default_factory=dict)
    """Overrides of D3PGConfig / ActorCriticConfig fields."""
    caching: dict[str, Any] = field(default_factory=dict)
    """Overrides of DDQNConfig fields."""

    def validate(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent = {self.agent!r}: allowed {list(AGENTS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset = {self.preset!r}: allowed {list(PRESETS)}")
        if self.steps_amender and self.steps_amender not in STEP_AMENDERS:
            raise ValueError(
                f"steps_amender = {self.steps_amender!r}: allowed {list(STEP_AMENDERS)}"
            )
        for key in ("episodes", "threads", "checkpoint_every", "eval_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} = {value!r} is out of range: allowed integers >= 1")


def steps_amender(train: TrainConfig) -> str:
    """The steps amender in force: explicit, else the preset's."""
    return train.steps_amender or ("paper" if train.preset == "paper" else "cap")


def allocator_config(train: TrainConfig) -> ActorCriticConfig:
    cls = D3PGConfig if train.agent == "t2drl" else ActorCriticConfig
    values = dict(train.allocator)
    if train.preset == "paper":
        values = {"actor_lr": 1e-6, "critic_lr": 1e-6, **values}
    return _with_overrides(cls, values)


def caching_config(train: TrainConfig) -> DDQNConfig:
    values = dict(train.caching)
    if train.preset == "paper":
        values = {"lr": 1e-6, **values}
    return _with_overrides(DDQNConfig, values)


def _with_overrides(cls: type, values: dict[str, Any]) -> Any:
    allowed = {f.name for f in fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {sorted(unknown)}; allowed {sorted(allowed)}"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class TorchAmender:
    """Sec. 6.2.2 in torch, differentiable: (served mask, raw action) -> executed (b, xi).

    The served mask rho_{phi_u} comes from the slot (stored beside each transition), never
    decoded from the normalised observation, so the critic sees exactly the allocation that
    was executed; the actor's gradient flows through the normalisation (the raw action's
    scale, which the amender ignores, gets none). The torch form of
    :func:`testbed.core.system_model.amend_allocation`; a property test ties the two.
    """

    def __init__(self, num_users: int, steps_mode: str = "paper") -> None:
        if steps_mode not in STEP_AMENDERS:
            raise ValueError(f"steps amender {steps_mode!r}: allowed {list(STEP_AMENDERS)}")
        self.u, self.steps_mode = num_users, steps_mode

    def __call__(self, served: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        u = self.u
        b_raw = raw[:, :u].clamp_min(0.0)
        b_total = b_raw.sum(dim=1, keepdim=True)
        b = torch.where(b_total > 0, b_raw / _nonzero(b_total), torch.full_like(b_raw, 1 / u))
        xi_raw = raw[:, u:].clamp_min(0.0) * served
        xi_total = xi_raw.sum(dim=1, keepdim=True)
        if self.steps_mode == "cap":
            xi = xi_raw / xi_total.clamp_min(1.0)
        else:
            even = served / served.sum(dim=1, keepdim=True).clamp_min(1.0)
            xi = torch.where(xi_total > 0, xi_raw / _nonzero(xi_total), even)
        return torch.cat([b, xi], dim=1)


def _nonzero(total: torch.Tensor) -> torch.Tensor:
    """``total`` with zeros replaced by 1 (the branch torch.where then discards), as numpy's
    amenders do, so that any positive total, however small, divides exactly."""
    return torch.where(total > 0, total, torch.ones_like(total))


class T2DRLAgents:
    """The two agents of one T2DRL instance, sized for a scenario."""

    def __init__(self, scenario: ScenarioConfig, train: TrainConfig) -> None:
        u, m = scenario.network.num_users, scenario.catalogue.num_models
        alloc_seed, cache_seed = agent_seeds(train.seed)
        cls = D3PG if train.agent == "t2drl" else DDPG
        self.allocator: DDPG = cls(
            4 * u + m, 2 * u, allocator_config(train), alloc_seed, mask_dim=u
        )
        self.allocator.amend = TorchAmender(u, steps_amender(train))
        sizes = build_catalogue(scenario.catalogue).size_gb
        feasible = feasible_actions(sizes, scenario.catalogue.cache_capacity_gb)
        self.caching = DDQN(m, caching_config(train), cache_seed, feasible)

    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for agent in (self.allocator, self.caching):
            for name, module in agent.modules().items():
                for key, value in module.state_dict().items():
                    out[f"{agent.name}.{name}.{key}"] = value.contiguous()
            for name, opt in agent.optimizers().items():
                out.update(_optimizer_tensors(f"{agent.name}.{name}", opt))
        out["torch_generator"] = self.allocator.torch_generator.get_state()
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for agent in (self.allocator, self.caching):
            for name, module in agent.modules().items():
                prefix = f"{agent.name}.{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                )
            for name, opt in agent.optimizers().items():
                _load_optimizer(f"{agent.name}.{name}", opt, tensors)
        self.allocator.torch_generator.set_state(tensors["torch_generator"])


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{prefix}.{index}.{key}"] = tensor.contiguous()
    return out


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]):
    state_dict = opt.state_dict()
    for index in range(sum(len(g["params"]) for g in state_dict["param_groups"])):
        entry = {
            k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{prefix}.{index}.")
        }
        if entry:
            state_dict["state"][index] = entry
    opt.load_state_dict(state_dict)


class LearnedAllocation:
    """An allocation policy from a trained actor (deterministic: exploration off)."""

    def __init__(
        self,
        agent: DDPG,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        name: str,
        steps_amender: str = "paper",
    ) -> None:
        self.agent, self.name = agent, name
        self.codec = ObservationCodec(config, catalogue)
        self.steps_amender = steps_amender

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # deterministic in evaluation

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = self.agent.act(self.codec.encode(slot, cache), explore=False)
        return amend_allocation(raw, served_at_edge(cache, slot.services), self.steps_amender)


class LearnedCaching:
    """A caching policy from a trained DDQN (greedy)."""

    def __init__(self, agent: DDQN, num_models: int, name: str) -> None:
        self.agent, self.num_models, self.name = agent, num_models, name

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return amend_cache(self.agent.act(frame.gamma, explore=False), self.num_models)


CHECKPOINT_VERSION = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checkpoint(
    ckpt: Path,
    agents: T2DRLAgents,
    train: TrainConfig,
    scenario: ScenarioConfig,
    state: dict[str, Any],
) -> None:
    """Every network, optimizer, replay buffer and random state as safetensors (never
    pickle), ``state.json``, and ``manifest.json`` (agent kind, scenario shape, the SHA-256
    of every file). Written into ``<ckpt>.tmp`` and swapped in, so a kill mid-write leaves
    the previous checkpoint (as ``<ckpt>`` or ``<ckpt>.old``) intact."""
    tmp, old = ckpt.with_name(ckpt.name + ".tmp"), ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(agents.tensors(), tmp / "networks.safetensors")
    for agent in (agents.allocator, agents.caching):
        save_numpy(agent.buffer.arrays(), tmp / f"replay_{agent.name}.safetensors")
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=int) + "\n")
    manifest = {
        "version": CHECKPOINT_VERSION,
        "agent": train.agent,
        "num_users": scenario.network.num_users,
        "num_models": scenario.catalogue.num_models,
        "episode": int(state["episode"]),
        "files": {f.name: _sha256(f) for f in sorted(tmp.iterdir())},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if ckpt.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def verify_checkpoint(ckpt: Path, agent: str, scenario: ScenarioConfig) -> dict[str, Any]:
    """The checkpoint's manifest, once its kind, its shape and every file's checksum match;
    a checkpoint caught between its write and its swap is read from ``<ckpt>.old``."""
    old = ckpt.with_name(ckpt.name + ".old")
    if not (ckpt / "manifest.json").is_file() and (old / "manifest.json").is_file():
        ckpt = old
    manifest_path = ckpt / "manifest.json"
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
        if not path.is_file() or _sha256(path) != digest:
            raise CheckpointError(f"{path} is missing or corrupted (SHA-256 differs from manifest)")
    return {**manifest, "path": str(ckpt)}


def read_networks(path: Path) -> dict[str, torch.Tensor]:
    """A verified checkpoint's networks, refused if any weight is NaN or infinite."""
    tensors = load_file(path)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds non-finite values in {bad[:3]}")
    return tensors


def load_policies(
    run_dir: str | Path,
    scenario: ScenarioConfig | None = None,
    catalogue: ModelCatalogue | None = None,
):
    """The (caching, allocation) policies of a trained run folder, for ``testbed simulate``.

    The checkpoint is verified first (kind, shape, checksums, finite weights)."""
    run_dir = Path(run_dir)
    train = TrainConfig(**json.loads((run_dir / "train.json").read_text()))
    trained_on = load_config(run_dir / "config.toml")
    scenario = scenario or trained_on
    manifest = verify_checkpoint(run_dir / "checkpoint", train.agent, scenario)
    agents = T2DRLAgents(trained_on, train)
    agents.load_tensors(read_networks(Path(manifest["path"]) / "networks.safetensors"))
    catalogue = catalogue or build_catalogue(scenario.catalogue)
    caching = LearnedCaching(agents.caching, scenario.catalogue.num_models, train.agent)
    allocation = LearnedAllocation(
        agents.allocator, scenario, catalogue, train.agent, steps_amender(train)
    )
    return caching, allocation


class AllocationLearner(Hooks):
    """The allocator in training (Algorithm 1, lines 13-35): explores, stores, updates.

    A policy for the frame/slot driver and a hook on it. Each slot it observes s_t(k)
    (eq. (21)), stores the previous slot's transition now that s_t(k+1) is known, acts with
    exploration and amends (Sec. 6.2.2); after the slot is served it keeps
    (s, a, r) of eqs. (21)-(23) and updates once when the buffer is ready. The episode's
    last transition is stored as terminal.
    """

    def __init__(
        self,
        agent: DDPG,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        name: str,
        steps_amender: str,
    ) -> None:
        self.agent, self.name, self.steps_amender = agent, name, steps_amender
        self.codec = ObservationCodec(config, catalogue)
        self.losses: dict[str, list[float]] = {"critic_loss": [], "actor_loss": []}
        self._current: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pending: tuple[np.ndarray, np.ndarray, float, np.ndarray] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # the agent's own generators carry on across episodes

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = self.codec.encode(slot, cache)  # eq. (21), line 13
        served = served_at_edge(cache, slot.services)
        if self._pending is not None:  # s_t(k+1) of the previous slot is known now
            state, action, reward, mask = self._pending
            self.agent.store(state, action, reward, obs, False, mask, served)
        raw = self.agent.act(obs, explore=True)  # lines 15-26
        b, xi = amend_allocation(raw, served, self.steps_amender)
        self._current = (obs, np.concatenate([b, xi]), served)  # a_t(k), eq. (22)
        return b, xi

    def on_slot(self, step: SlotStep) -> None:
        assert self._current is not None
        obs, action, served = self._current
        self._pending = (obs, action, float(step.outcome.reward), served)  # eq. (23), line 27
        if self.agent.ready():  # lines 30-35
            for key, value in self.agent.update().items():
                self.losses[key].append(value)

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        state, action, reward, mask = self._pending
        self.agent.store(state, action, reward, state, True, mask, mask)  # the last slot
        self._pending = None


class CachingLearner(Hooks):
    """The DDQN in training (Algorithm 1, lines 7 and 38-46): epsilon-greedy, stores, updates.

    A caching policy for the driver and a hook on it. At the start of frame t it stores
    frame t-1's transition (gamma(t) is its next state), updates F times when ready, then
    picks a~(t) with epsilon decayed over training and amends it (Sec. 6.3.2). The frame
    reward is eq. (32) of the served slots; the episode's last frame is terminal.
    """

    def __init__(self, agent: DDQN, num_models: int, frames_per_episode: int, episodes: int):
        self.agent, self.num_models = agent, num_models
        self.name = "ddqn"
        self.frames_per_episode = frames_per_episode
        self.total_frames = episodes * frames_per_episode
        self.frames_done = 0
        self.losses: dict[str, list[float]] = {"q_loss": []}
        self._current: tuple[float, int] | None = None
        self._pending: tuple[float, int, float] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def on_episode_start(self, episode: int) -> None:
        self.frames_done = episode * self.frames_per_episode

    def select_cache(self, frame: FrameState) -> np.ndarray:
        if self._pending is not None:
            self._store(frame.gamma, done=False)
        self.agent.set_progress(self.frames_done / self.total_frames)
        action = self.agent.act(frame.gamma, explore=True)  # line 7
        self._current = (frame.gamma, action)
        self.frames_done += 1
        return amend_cache(action, self.num_models)  # Sec. 6.3.2

    def on_frame_end(self, step: FrameStep) -> None:
        assert self._current is not None
        gamma, action = self._current
        self._pending = (gamma, action, step.reward)  # eq. (32)

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        self._store(self._pending[0], done=True)

    def _store(self, next_gamma: float, done: bool) -> None:
        assert self._pending is not None
        gamma, action, reward = self._pending
        self.agent.store(gamma, action, reward, next_gamma, done)  # line 41
        self._pending = None
        if self.agent.ready():  # lines 42-46
            for _ in range(self.agent.config.updates_per_frame):
                self.losses["q_loss"].append(self.agent.update()["q_loss"])

"""T2DRL, Algorithm 1: DDQN caches once per frame, D3PG (or DDPG) allocates once per slot.

``train(TrainConfig) -> dict`` runs H episodes x T frames x K slots, each agent learning
from its own buffer (E per slot, F per frame), and writes a run folder:

* ``config.toml`` (the scenario), ``train.json`` (these hyperparameters), ``run.json``
  (git revision, package versions, device);
* ``metrics.csv`` (one row per episode) and TensorBoard events under ``tb/``
  (tags ``charts/``, ``losses/``);
* ``checkpoint/``: every network, optimizer, replay buffer and random state as
  safetensors (never pickle) plus ``state.json``; ``train(..., resume=True)`` continues
  from it and reproduces the uninterrupted run exactly.

Training worlds are seeded apart from the evaluation worlds of ``testbed simulate`` (the
same run seed never trains and evaluates on the same episodes).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from agents.d3pg import D3PG, D3PGConfig
from agents.ddpg import DDPG, ActorCriticConfig
from agents.ddqn import DDQN, DDQNConfig
from testbed.config import ModelCatalogue, ScenarioConfig, build_catalogue, load_config, save_config
from testbed.envs import slot_observation
from testbed.simulator import Simulator
from testbed.system_model import (
    STEP_AMENDERS,
    amend_allocation,
    amend_cache,
    frame_reward,
)
from ue_emulator.world import FrameState, SlotState

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
EVAL_COLUMNS = ("eval_mean_slot_reward", "eval_utility", "eval_hit_ratio")
_TRAIN_ROLE = 7  # seeds training worlds apart from evaluation worlds (runner: [seed, episode])


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
        if self.episodes < 1:
            raise ValueError(f"episodes = {self.episodes} is out of range: allowed [1, inf)")


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
    """Sec. 6.2.2 in torch, differentiable: (normalised eq. (21) state, raw action) -> (b, xi).

    The served mask rho_{phi_u} is read back from the state (phi_u / (M-1) and rho), so the
    critic sees the allocation that was executed and the actor's gradient flows through
    the normalisation (the raw action's scale, which the amender ignores, gets none).
    Mirrors :func:`testbed.system_model.amend_bandwidth` and ``amend_steps``.
    """

    def __init__(self, num_users: int, num_models: int, steps_mode: str = "paper") -> None:
        self.u, self.m, self.steps_mode = num_users, num_models, steps_mode

    def __call__(self, state: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        u, m = self.u, self.m
        services = torch.round(state[:, u : 2 * u] * max(m - 1, 1)).long()
        cache = state[:, 2 * u : 2 * u + m] > 0.5
        served = torch.gather(cache, 1, services).float()
        b_raw = raw[:, :u].clamp_min(0.0)
        b_total = b_raw.sum(dim=1, keepdim=True)
        b = torch.where(
            b_total > 0, b_raw / b_total.clamp_min(1e-12), torch.full_like(b_raw, 1 / u)
        )
        xi_raw = raw[:, u:].clamp_min(0.0) * served
        xi_total = xi_raw.sum(dim=1, keepdim=True)
        if self.steps_mode == "cap":
            xi = xi_raw / xi_total.clamp_min(1.0)
        else:
            even = served / served.sum(dim=1, keepdim=True).clamp_min(1.0)
            xi = torch.where(xi_total > 0, xi_raw / xi_total.clamp_min(1e-12), even)
        return torch.cat([b, xi], dim=1)


class T2DRLAgents:
    """The two agents of one T2DRL instance, sized for a scenario."""

    def __init__(self, scenario: ScenarioConfig, train: TrainConfig) -> None:
        u, m = scenario.network.num_users, scenario.catalogue.num_models
        seq = np.random.SeedSequence([train.seed, 1])
        alloc_seed, cache_seed = seq.spawn(2)
        cls = D3PG if train.agent == "t2drl" else DDPG
        self.allocator: DDPG = cls(4 * u + m, 2 * u, allocator_config(train), alloc_seed)
        self.allocator.amend = TorchAmender(u, m, steps_amender(train))
        self.caching = DDQN(m, caching_config(train), cache_seed)

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
        self.agent, self.config, self.catalogue, self.name = agent, config, catalogue, name
        self.num_users = config.network.num_users
        self.steps_amender = steps_amender

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # deterministic in evaluation

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = slot_observation(slot, cache, self.catalogue, self.config)
        raw = self.agent.act(obs, explore=False)
        served = np.asarray(cache, dtype=bool)[slot.services]
        return amend_allocation(raw, served, self.steps_amender)


class LearnedCaching:
    """A caching policy from a trained DDQN (greedy)."""

    def __init__(self, agent: DDQN, num_models: int, name: str) -> None:
        self.agent, self.num_models, self.name = agent, num_models, name

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return amend_cache(self.agent.act(frame.gamma, explore=False), self.num_models)


def load_policies(
    run_dir: str | Path,
    scenario: ScenarioConfig | None = None,
    catalogue: ModelCatalogue | None = None,
):
    """The (caching, allocation) policies of a trained run folder, for ``testbed simulate``."""
    run_dir = Path(run_dir)
    train = TrainConfig(**json.loads((run_dir / "train.json").read_text()))
    trained_on = load_config(run_dir / "config.toml")
    scenario = scenario or trained_on
    if (scenario.network.num_users, scenario.catalogue.num_models) != (
        trained_on.network.num_users,
        trained_on.catalogue.num_models,
    ):
        raise ValueError(
            f"checkpoint {run_dir} was trained for U={trained_on.network.num_users}, "
            f"M={trained_on.catalogue.num_models}; the scenario has "
            f"U={scenario.network.num_users}, M={scenario.catalogue.num_models}"
        )
    agents = T2DRLAgents(trained_on, train)
    agents.load_tensors(load_file(run_dir / "checkpoint" / "networks.safetensors"))
    catalogue = catalogue or build_catalogue(scenario.catalogue)
    caching = LearnedCaching(agents.caching, scenario.catalogue.num_models, train.agent)
    allocation = LearnedAllocation(
        agents.allocator, scenario, catalogue, train.agent, steps_amender(train)
    )
    return caching, allocation


class _Trainer:
    def __init__(self, scenario: ScenarioConfig, train: TrainConfig, out: Path) -> None:
        self.scenario, self.train, self.out = scenario, train, out
        self.sim = Simulator(scenario)
        self.agents = T2DRLAgents(scenario, train)
        self.amender = steps_amender(train)
        self.episode = 0

    def play_episode(self) -> dict[str, float]:
        """One episode of Algorithm 1 (lines 4-47)."""
        sc, alloc, cacher = self.scenario, self.agents.allocator, self.agents.caching
        frames, slots = sc.timing.num_frames, sc.timing.slots_per_frame
        total_frames = self.train.episodes * frames
        self.sim.reset(np.random.SeedSequence([self.train.seed, self.episode, _TRAIN_ROLE]))
        losses: dict[str, list[float]] = {"critic_loss": [], "actor_loss": [], "q_loss": []}
        frame_rewards, slot_rewards, utils, hits, viols = [], [], [], [], []
        frame = self.sim.begin_frame()
        pending: tuple[np.ndarray, np.ndarray, float] | None = None
        for t in range(frames):
            cacher.set_progress((self.episode * frames + t) / total_frames)
            action = cacher.act(frame.gamma, explore=True)  # line 7
            cache = amend_cache(action, self.sim.num_models)  # Sec. 6.3.2
            rewards = np.empty(slots)
            for k in range(slots):
                slot = self.sim.next_slot()
                obs = slot_observation(slot, cache, self.sim.catalogue, sc)  # eq. (21), line 13
                if pending is not None:  # s_t(k+1) of the previous slot is known now
                    alloc.store(*pending, obs, False)
                raw = alloc.act(obs, explore=True)  # lines 15-26
                b, xi = amend_allocation(raw, cache[slot.services], self.amender)
                outcome = self.sim.evaluate(slot, cache, b, xi)
                rewards[k] = outcome.reward  # eq. (23), line 27
                pending = (obs, np.concatenate([b, xi]), float(outcome.reward))  # a_t(k), eq. (22)
                if alloc.ready():  # lines 30-35
                    for key, value in alloc.update().items():
                        losses[key].append(value)
                utils.append(float(outcome.utility.mean()))
                hits.append(float(outcome.cached.mean()))
                viols.append(float(outcome.violation.mean()))
            r_frame = frame_reward(
                rewards,
                cache,
                self.sim.catalogue.size_gb,  # eq. (32)
                sc.catalogue.cache_capacity_gb,
                sc.utility.frame_penalty,
            )
            last = t == frames - 1
            next_frame = frame if last else self.sim.begin_frame()
            cacher.store(frame.gamma, action, r_frame, next_frame.gamma, last)  # line 41
            if cacher.ready():  # lines 42-46
                for _ in range(cacher.config.updates_per_frame):
                    losses["q_loss"].append(cacher.update()["q_loss"])
            frame = next_frame
            frame_rewards.append(r_frame)
            slot_rewards.extend(rewards)
        assert pending is not None
        alloc.store(*pending, pending[0], True)  # the episode's last slot
        self.episode += 1
        return {
            "episode_reward": float(np.sum(frame_rewards)),
            "mean_slot_reward": float(np.mean(slot_rewards)),
            "utility": float(np.mean(utils)),
            "hit_ratio": float(np.mean(hits)),
            "violation_rate": float(np.mean(viols)),
            **{k: float(np.mean(v)) if v else float("nan") for k, v in losses.items()},
            "epsilon": cacher.epsilon,
        }

    def evaluate(self) -> dict[str, float]:
        """The current agents with exploration off, on one fixed unseen episode."""
        from testbed.runner import EVAL_SEED_OFFSET, run

        name = self.train.agent
        caching = LearnedCaching(self.agents.caching, self.sim.num_models, name)
        allocation = LearnedAllocation(
            self.agents.allocator, self.scenario, self.sim.catalogue, name, self.amender
        )
        eval_config = self.scenario.replace(seed=self.train.seed + EVAL_SEED_OFFSET)
        summary, _ = run(eval_config, caching, allocation, 1, catalogue=self.sim.catalogue)
        return {
            "eval_mean_slot_reward": summary.mean_slot_reward,
            "eval_utility": summary.utility,
            "eval_hit_ratio": summary.hit_ratio,
        }

    def save(self) -> None:
        ckpt = self.out / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        save_file(self.agents.tensors(), ckpt / "networks.safetensors")
        for agent in (self.agents.allocator, self.agents.caching):
            save_numpy(agent.buffer.arrays(), ckpt / f"replay_{agent.name}.safetensors")
        state = {
            "episode": self.episode,
            "rng": {
                "allocator": self.agents.allocator.rng.bit_generator.state,
                "caching": self.agents.caching.rng.bit_generator.state,
            },
            "epsilon": self.agents.caching.epsilon,
        }
        (ckpt / "state.json").write_text(json.dumps(state, indent=2, default=int) + "\n")

    def load(self) -> None:
        ckpt = self.out / "checkpoint"
        self.agents.load_tensors(load_file(ckpt / "networks.safetensors"))
        for agent in (self.agents.allocator, self.agents.caching):
            agent.buffer.load_arrays(load_numpy(ckpt / f"replay_{agent.name}.safetensors"))
        state = json.loads((ckpt / "state.json").read_text())
        self.episode = int(state["episode"])
        self.agents.allocator.rng.bit_generator.state = state["rng"]["allocator"]
        self.agents.caching.rng.bit_generator.state = state["rng"]["caching"]
        self.agents.caching.epsilon = float(state["epsilon"])


def train(
    train_config: TrainConfig,
    scenario: ScenarioConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = False,
    run_info: dict[str, Any] | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) Algorithm 1; returns the last episode's metrics and the folder.

    ``on_episode`` is called with each episode's metrics row after it is written.
    """
    train_config.validate()
    out = Path(out)
    torch.set_num_threads(train_config.threads)
    if resume:
        stored = TrainConfig(**json.loads((out / "train.json").read_text()))
        stored.episodes = train_config.episodes
        train_config = stored
        scenario = load_config(out / "config.toml")
    else:
        out.mkdir(parents=True, exist_ok=True)
        save_config(scenario, out / "config.toml")
        (out / "train.json").write_text(json.dumps(asdict(train_config), indent=2) + "\n")
        if run_info is not None:
            (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    trainer = _Trainer(scenario, train_config, out)
    metrics_path = out / "metrics.csv"
    if resume:
        trainer.load()
        _truncate_metrics(metrics_path, trainer.episode)
    else:
        with open(metrics_path, "w", newline="") as fh:
            csv.writer(fh).writerow(METRIC_COLUMNS)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"), purge_step=trainer.episode)
    start = time.perf_counter()
    last: dict[str, Any] = {}
    bar = tqdm(
        total=train_config.episodes,
        initial=trainer.episode,
        unit="episode",
        disable=not progress,
        leave=False,
    )
    try:
        while trainer.episode < train_config.episodes:
            row = trainer.play_episode()
            evaluated = trainer.episode % train_config.eval_every == 0
            row.update(trainer.evaluate() if evaluated else dict.fromkeys(EVAL_COLUMNS, np.nan))
            row = {"episode": trainer.episode - 1, **row, "wall_s": time.perf_counter() - start}
            with open(metrics_path, "a", newline="") as fh:
                csv.writer(fh).writerow([row[c] for c in METRIC_COLUMNS])
            _log(writer, row)
            bar.update()
            bar.set_postfix(reward=f"{row['mean_slot_reward']:.2f}", hit=f"{row['hit_ratio']:.2f}")
            last = row
            if trainer.episode % train_config.checkpoint_every == 0:
                trainer.save()
            if on_episode is not None:
                on_episode(row)
    finally:
        bar.close()
        writer.close()
    trainer.save()
    return {"out": str(out), **last}


def _log(writer: Any, row: dict[str, float]) -> None:
    step = int(row["episode"])
    for key in (
        "episode_reward",
        "mean_slot_reward",
        "utility",
        "hit_ratio",
        "violation_rate",
        "epsilon",
    ):
        writer.add_scalar(f"charts/{key}", row[key], step)
    for key in ("critic_loss", "actor_loss", "q_loss"):
        if np.isfinite(row[key]):
            writer.add_scalar(f"losses/{key}", row[key], step)
    for key in EVAL_COLUMNS:
        if np.isfinite(row[key]):
            writer.add_scalar(f"eval/{key.removeprefix('eval_')}", row[key], step)


def _truncate_metrics(path: Path, episodes: int) -> None:
    """Keep the header and the rows of the episodes the checkpoint holds."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: episodes + 1]))

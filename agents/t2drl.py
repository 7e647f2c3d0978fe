"""T2DRL, Algorithm 1: DDQN caches once per frame, D3PG (or DDPG) allocates once per slot.

This module is the algorithm: the hyperparameters (:class:`TrainConfig`), the two agents of
one instance (:class:`T2DRLAgents`), the differentiable Sec. 6.2.2 amender, and the two
learners that sit in the frame/slot loop (:class:`AllocationLearner`, lines 13-35 of
Algorithm 1, and :class:`CachingLearner`, lines 7 and 38-46): each is a policy plus the
loop hooks through which it observes, stores its transitions and updates. The loop itself,
the run folder, the metrics and the checkpoints are the application's
(``testbed.training.trainer``); trained agents act through :class:`LearnedCaching` and
:class:`LearnedAllocation` with exploration off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.d3pg import D3PG, D3PGConfig
from agents.ddpg import DDPG, ActorCriticConfig
from agents.ddqn import DDQN, DDQNConfig
from agents.factored import FactoredCaching, FactoredConfig, random_fitting_cache
from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.core.errors import CheckpointError
from testbed.core.observation import ObservationCodec
from testbed.core.protocols import AllocationPolicy, Hooks
from testbed.core.records import FrameState, FrameStep, SlotState, SlotStep
from testbed.core.seeding import agent_seeds
from testbed.core.system_model import (
    STEP_AMENDERS,
    RadioParams,
    amend_allocation,
    frame_reward,
    score_slot,
    served_at_edge,
)

AGENTS = ("t2drl", "ddpg-t2drl")
PRESETS = ("best", "default", "paper")
CACHING_AGENTS = ("ddqn", "factored")
CREDITS = ("explore", "greedy")
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
    preset: str = "best"
    """`best` (the factored caching agent credited greedily, the allocator cloning the
    exact optimiser), `default` (issue 4's learning rates, the paper's agents) or `paper`
    (Sec. 7.1 as printed: Adam at 1e-6 for all, the paper's amender). See docs/agents.md."""
    threads: int = 1
    """torch CPU threads (small networks: one thread is fastest)."""
    checkpoint_every: int = 10
    """Episodes between checkpoints (and always at the end)."""
    eval_every: int = 5
    """Episodes between deterministic evaluations (exploration off) on a fixed episode."""
    steps_amender: str = ""
    """`paper` (Sec. 6.2.2: all L steps always spent), `cap` (rescaled only above L), or
    empty for the preset's choice: `cap` in `default`, `paper` in `paper`."""
    caching_agent: str = ""
    """`ddqn` (the paper's, Sec. 6.3), `factored` (per-model values + exact knapsack,
    ``agents.factored``), or empty for the preset's choice: `factored` in `best`."""
    credit: str = ""
    """What the caching learner is credited with for a frame: `explore`, the frame reward
    of the slots as the exploring allocator served them (Algorithm 1, line 38), or
    `greedy`, the eq. (32) reward of the same slots re-scored by the system model under the
    allocator acting greedily (exploration off); empty for the preset's: `greedy` in `best`."""
    counterfactuals: int = -1
    """With the greedy credit: random caches that fit, scored on each frame's slots beside
    the chosen one and stored as frames too (``CachingLearner``); -1 for the preset's: 8
    in `best`, else 0."""
    allocator: dict[str, Any] = field(default_factory=dict)
    """Overrides of D3PGConfig / ActorCriticConfig fields."""
    caching: dict[str, Any] = field(default_factory=dict)
    """Overrides of DDQNConfig or FactoredConfig fields (whichever agent caches)."""

    def to_json(self) -> dict[str, Any]:
        """The fields as ``train.json`` stores them."""
        return asdict(self)

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> TrainConfig:
        """A checked config from user options (flags, ``--set train.*``, ``allocator.*``,
        ``caching.*``); raises ValueError or TypeError naming the bad key."""
        config = cls(**values)
        config.validate()
        allocator_config(config)
        caching_config(config)
        return config

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """A stored ``train.json``."""
        return cls(**data)

    def validate(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent = {self.agent!r}: allowed {list(AGENTS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset = {self.preset!r}: allowed {list(PRESETS)}")
        if self.caching_agent and self.caching_agent not in CACHING_AGENTS:
            raise ValueError(
                f"caching_agent = {self.caching_agent!r}: allowed {list(CACHING_AGENTS)}"
            )
        if self.credit and self.credit not in CREDITS:
            raise ValueError(f"credit = {self.credit!r}: allowed {list(CREDITS)}")
        if not isinstance(self.counterfactuals, int) or self.counterfactuals < -1:
            raise ValueError(
                f"counterfactuals = {self.counterfactuals!r}: allowed integers >= 0 "
                "(-1: the preset's)"
            )
        if counterfactuals(self) and credit(self) != "greedy":
            raise ValueError("counterfactuals > 0 needs credit = 'greedy'")
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


def caching_agent(train: TrainConfig) -> str:
    """The caching agent in force: explicit, else the preset's."""
    return train.caching_agent or ("factored" if train.preset == "best" else "ddqn")


def credit(train: TrainConfig) -> str:
    """The caching learner's credit rule in force: explicit, else the preset's."""
    return train.credit or ("greedy" if train.preset == "best" else "explore")


def counterfactuals(train: TrainConfig) -> int:
    """Counterfactual caches per frame in force: explicit, else the preset's."""
    if train.counterfactuals >= 0:
        return train.counterfactuals
    return BEST_COUNTERFACTUALS if train.preset == "best" and credit(train) == "greedy" else 0


BEST_COUNTERFACTUALS = 8
"""Counterfactual caches per frame in the `best` preset."""


BEST_ALLOCATOR = {"action_map": "hard", "teacher": "optimal", "objective": "clone"}
"""What the `best` preset changes in the allocator (D3PG and DDPG alike)."""
BEST_D3PG = {"clip_x0": True}
"""What the `best` preset also changes in the D3PG actor: the predicted x^0 clipped (its
gradient leaking) in every reverse step. Unclipped, the reverse chain is a recurrence whose
gain can exceed 1: in 4 of 15 Fig. 7 runs (issue 12) its raw output grew to ~1e27 within a
few episodes and the actor never recovered; clipped, those runs converge."""


def allocator_config(train: TrainConfig) -> ActorCriticConfig:
    cls = D3PGConfig if train.agent == "t2drl" else ActorCriticConfig
    values = dict(train.allocator)
    if train.preset == "paper":
        values = {"actor_lr": 1e-6, "critic_lr": 1e-6, **values}
    elif train.preset == "best":
        values = {**BEST_ALLOCATOR, **(BEST_D3PG if cls is D3PGConfig else {}), **values}
    return _with_overrides(cls, values)


def caching_config(train: TrainConfig) -> DDQNConfig | FactoredConfig:
    values = dict(train.caching)
    if train.preset == "paper":
        values = {"lr": 1e-6, **values}
    cls = FactoredConfig if caching_agent(train) == "factored" else DDQNConfig
    return _with_overrides(cls, values)


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
        capacity = scenario.catalogue.cache_capacity_gb
        config = caching_config(train)
        self.caching: DDQN | FactoredCaching
        if isinstance(config, FactoredConfig):
            self.caching = FactoredCaching(sizes, capacity, config, cache_seed)
        else:
            self.caching = DDQN(m, config, cache_seed, (sizes, capacity))

    def acting_modules(self) -> dict[str, torch.nn.Module]:
        """The networks the pair acts with (exploration off), by tensor-name prefix: the
        actor and the caching agent's Q. An exported policy holds these only."""
        return {
            f"{self.allocator.name}.actor.": self.allocator.modules()["actor"],
            f"{self.caching.name}.q.": self.caching.modules()["q"],
        }

    def acting_state_dict(self) -> dict[str, torch.Tensor]:
        """The acting networks' tensors, named as in :meth:`tensors`."""
        return {
            f"{prefix}{key}": value.contiguous()
            for prefix, module in self.acting_modules().items()
            for key, value in module.state_dict().items()
        }

    def load_acting(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load only the acting networks from ``tensors`` (a full checkpoint's or an
        exported policy's), refused if any of them is missing, NaN or infinite: a run whose
        training state overflowed (e.g. Adam's moments) still acts if these are finite."""
        for prefix, module in self.acting_modules().items():
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"the checkpoint holds no {prefix.rstrip('.')} network")
            refuse_non_finite(state, f"the checkpoint's {prefix.rstrip('.')} network")
            module.load_state_dict(state)

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


def refuse_non_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensors that hold NaN or inf."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{where} holds non-finite values in {bad[:3]}")


SHIPPED_POLICIES_DIR = Path(__file__).resolve().parent / "pretrained"
"""The shipped policies: ``<SHIPPED_POLICIES_DIR>/<agent>``, exported runs of the default
scenario with the best preset."""


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

    def allocate_many(
        self, pairs: list[tuple[SlotState, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`allocate` for many (slot, cache) pairs in one forward pass of the actor."""
        raws = self.agent.greedy_actions(np.stack([self.codec.encode(s, c) for s, c in pairs]))
        return [
            amend_allocation(raw, served_at_edge(cache, slot.services), self.steps_amender)
            for raw, (slot, cache) in zip(raws, pairs, strict=True)
        ]


class LearnedCaching:
    """A caching policy from a trained caching agent, DDQN or factored (greedy)."""

    def __init__(self, agent: DDQN | FactoredCaching, name: str) -> None:
        self.agent, self.name = agent, name

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return self.agent.select(frame.gamma, explore=False)


class AllocationLearner(Hooks):
    """The allocator in training (Algorithm 1, lines 13-35): explores, stores, updates.

    A policy for the frame/slot driver and a hook on it. Each slot it observes s_t(k)
    (eq. (21)), stores the previous slot's transition now that s_t(k+1) is known, acts with
    exploration and amends (Sec. 6.2.2); after the slot is served it keeps
    (s, a, r) of eqs. (21)-(23) and updates once when the buffer is ready. The episode's
    last transition is stored as terminal. When the actor clones a teacher, the teacher's
    allocation for the same slot and cache is stored beside each transition.
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
        self.teacher = _teacher(agent.config, config, catalogue)
        self.losses: dict[str, list[float]] = {"critic_loss": [], "actor_loss": []}
        self._current: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pending: tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # the agent's own generators carry on across episodes

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = self.codec.encode(slot, cache)  # eq. (21), line 13
        served = served_at_edge(cache, slot.services)
        if self._pending is not None:  # s_t(k+1) of the previous slot is known now
            state, action, reward, mask, target = self._pending
            self.agent.store(state, action, reward, obs, False, mask, served, target)
        raw = self.agent.act(obs, explore=True)  # lines 15-26
        b, xi = amend_allocation(raw, served, self.steps_amender)
        target = np.concatenate(self.teacher.allocate(slot, cache)) if self.teacher else np.zeros(0)
        self._current = (obs, np.concatenate([b, xi]), served, target)  # a_t(k), eq. (22)
        return b, xi

    def on_slot(self, step: SlotStep) -> None:
        assert self._current is not None
        obs, action, served, target = self._current
        reward = float(step.outcome.reward)
        self._pending = (obs, action, reward, served, target)  # eq. (23), line 27
        if self.agent.ready():  # lines 30-35
            for key, value in self.agent.update().items():
                self.losses[key].append(value)

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        state, action, reward, mask, target = self._pending
        self.agent.store(state, action, reward, state, True, mask, mask, target)  # last slot
        self._pending = None


def _teacher(agent_config: ActorCriticConfig, config: ScenarioConfig, catalogue: ModelCatalogue):
    """The allocation policy the actor clones, or None."""
    if not agent_config.clones:
        return None
    from agents.optimal import OptimalAllocation  # the only teacher (ActorCriticConfig.teacher)

    return OptimalAllocation(config, catalogue)


class GreedyCredit:
    """The frame's credit for the caching learner under the allocator acting greedily.

    The frame's K slots are already drawn (the world does not depend on the decisions), so
    the cache can be credited with what it gives when the allocator does its best: each
    slot is re-scored by the system model (eqs. (2)-(10), (23)) under the allocator's
    deterministic allocation, and the K rewards make eq. (32), penalty Xi included. This
    departs from Algorithm 1, line 38, which credits the frame with the slots as served by
    the exploring allocator (``credit = "explore"``): under full-scale exploration noise the
    exploring rewards rank caches differently from the greedy ones (docs/agents.md).
    """

    def __init__(
        self, allocation: AllocationPolicy, config: ScenarioConfig, catalogue: ModelCatalogue
    ) -> None:
        self.allocation, self.catalogue = allocation, catalogue
        self.radio = RadioParams.from_config(config)
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.penalty = config.utility.frame_penalty

    def __call__(self, slots: list[SlotState], cache: np.ndarray) -> float:
        return float(self.score_caches(slots, [cache])[0])

    def score_caches(self, slots: list[SlotState], caches: list[np.ndarray]) -> np.ndarray:
        """The greedy credit of each cache on the same slots (one batch for the actor)."""
        pairs = [(slot, cache) for cache in caches for slot in slots]
        many = getattr(self.allocation, "allocate_many", None)
        allocations = many(pairs) if many else [self.allocation.allocate(*p) for p in pairs]
        rewards = np.array(
            [
                float(score_slot(self.radio, self.catalogue, slot, cache, b, xi).reward)
                for (slot, cache), (b, xi) in zip(pairs, allocations, strict=True)
            ]
        ).reshape(len(caches), len(slots))
        return np.array(
            [
                frame_reward(row, cache, self.catalogue.size_gb, self.capacity_gb, self.penalty)
                for row, cache in zip(rewards, caches, strict=True)
            ]
        )


class CachingLearner(Hooks):
    """The caching agent in training (Algorithm 1, lines 7 and 38-46): epsilon-greedy,
    stores, updates.

    A caching policy for the driver and a hook on it. At the start of frame t it stores
    frame t-1's transition (gamma(t) is its next state), updates when ready, then picks a
    cache with epsilon decayed over training (the DDQN's action amended by Sec. 6.3.2, the
    factored agent's knapsack). The frame reward is eq. (32) of the served slots (``credit
    = None``, the paper's), or what :class:`GreedyCredit` makes of the frame's slots. With
    ``counterfactuals`` = N > 0 (greedy credit only) the same slots are also scored under N
    random caches that fit, and every (cache, credit) pair is stored as a frame of the same
    state: the slots are already drawn, so the comparison between caches is free of the
    slots' noise. The episode's last frame is terminal.
    """

    def __init__(
        self,
        agent: DDQN | FactoredCaching,
        frames_per_episode: int,
        episodes: int,
        credit: GreedyCredit | None = None,
        counterfactuals: int = 0,
    ):
        if counterfactuals and credit is None:
            raise ValueError("counterfactual caches need the greedy credit (credit = 'greedy')")
        self.agent, self.credit, self.counterfactuals = agent, credit, counterfactuals
        self.name = agent.name
        self.frames_per_episode = frames_per_episode
        self.total_frames = episodes * frames_per_episode
        self.frames_done = 0
        self.losses: dict[str, list[float]] = {"q_loss": []}
        self._slots: list[SlotState] = []
        self._current: tuple[float, np.ndarray] | None = None
        self._pending: tuple[float, list[tuple[np.ndarray, float]]] | None = None

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def on_episode_start(self, episode: int) -> None:
        self.frames_done = episode * self.frames_per_episode

    def select_cache(self, frame: FrameState) -> np.ndarray:
        if self._pending is not None:
            self._store(frame.gamma, done=False)
        self.agent.set_progress(self.frames_done / self.total_frames)
        cache = self.agent.select(frame.gamma, explore=True)  # line 7, Sec. 6.3.2
        self._current = (frame.gamma, cache)
        self._slots = []
        self.frames_done += 1
        return cache

    def on_slot(self, step: SlotStep) -> None:
        if self.credit is not None:
            self._slots.append(step.slot)

    def on_frame_end(self, step: FrameStep) -> None:
        assert self._current is not None
        gamma, cache = self._current
        if self.credit is None:
            self._pending = (gamma, [(cache, step.reward)])  # eq. (32)
            return
        catalogue = self.credit.catalogue
        caches = [cache] + [
            random_fitting_cache(self.agent.rng, catalogue.size_gb, self.credit.capacity_gb, 0.5)
            for _ in range(self.counterfactuals)
        ]
        rewards = self.credit.score_caches(self._slots, caches)
        self._pending = (gamma, list(zip(caches, rewards.tolist(), strict=True)))

    def on_episode_end(self, episode: int) -> None:
        assert self._pending is not None
        self._store(self._pending[0], done=True)

    def _store(self, next_gamma: float, done: bool) -> None:
        assert self._pending is not None
        gamma, frames = self._pending
        for cache, reward in frames:
            self.agent.store(gamma, cache, reward, next_gamma, done)  # line 41
        self._pending = None
        if self.agent.ready():  # lines 42-46
            for _ in range(self.agent.config.updates_per_frame):
                self.losses["q_loss"].append(self.agent.update()["q_loss"])

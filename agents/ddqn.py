"""DDQN for the frame-level model caching (Sec. 6.3).

State s(t) = gamma(t) (eq. (30)); action a~(t) in {0, ..., 2^M - 1}, amended into the cache
vector by Sec. 6.3.2; reward r(t) of eq. (32) (with the capacity penalty Xi). Evaluation and
target Q-networks with 2 hidden layers of 128 (ReLU, Sec. 7.1); replay buffer F; loss (33)
with the double-Q target (33a); soft target update (35); epsilon-greedy exploration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.nets import EpsilonGreedy, mlp, seed_streams, soft_update
from agents.offpolicy import BootstrapConfig, replay_ready, sample_tensors
from agents.replay import ReplayBuffer
from testbed.core.system_model import amend_cache, cache_to_action, feasible_actions


@dataclass
class DDQNConfig(BootstrapConfig):
    """Hyperparameters of the caching agent (the discount rho of eq. (33a) and the rate kappa
    of eq. (35): `BootstrapConfig`)."""

    lr: float = 1e-3
    """Adam learning rate zeta (the paper's Sec. 7.1: 1e-6, preset `paper`)."""
    batch_size: int = 64
    """F, transitions per update."""
    buffer_size: int = 20_000
    """Capacity of the replay buffer F."""
    warmup: int = 64
    """Frames stored before the first update."""
    updates_per_frame: int = 4
    """Gradient steps on (33) after each frame."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layers of both Q-networks (Sec. 7.1: 2 x 128)."""
    epsilon_start: float = 1.0
    """Exploration rate at the first frame."""
    epsilon_end: float = 0.02
    """Exploration rate after the decay."""
    epsilon_decay_fraction: float = 0.6
    """Fraction of the training frames over which epsilon decays linearly."""
    reward_scale: float = 0.01
    """Frame rewards are multiplied by this before the Q-networks see them."""
    explore: str = "feasible"
    """What epsilon-greedy draws from: `feasible` (uniformly among the caches that satisfy
    (11d)) or `all` (any of the 2^M codes: 74% of them break (11d) on the default scenario
    and only earn the penalty Xi)."""

    def validate(self) -> None:
        if self.explore not in EXPLORE_MODES:
            raise ValueError(f"explore = {self.explore!r}: allowed {list(EXPLORE_MODES)}")


EXPLORE_MODES = ("feasible", "all")
MAX_MODELS = 16
"""The DDQN has one output per cache configuration (2^M): beyond this, use the factored agent."""


class DDQN(EpsilonGreedy):
    """Double deep Q-network over the 2^M cache configurations."""

    name = "ddqn"

    def __init__(
        self,
        num_models: int,
        config: DDQNConfig,
        seed: int | np.random.SeedSequence = 0,
        fits: tuple[np.ndarray, float] | None = None,
    ) -> None:
        """``fits``: the model sizes c_m and the capacity C; with ``explore = "feasible"``
        exploration draws among the caches that satisfy (11d) with them (None: every code)."""
        config.validate()
        if num_models > MAX_MODELS:
            raise ValueError(
                f"catalogue.num_models = {num_models}: the paper's DDQN has 2^M outputs and "
                f"allows M <= {MAX_MODELS}; use the factored caching agent (--caching factored)"
            )
        self.config = config
        self.num_models = num_models
        self.num_actions = 2**num_models
        self.explore_actions = (
            np.arange(self.num_actions)
            if fits is None or config.explore == "all"
            else feasible_actions(*fits)
        )
        if not len(self.explore_actions):
            raise ValueError("no cache configuration satisfies (11d)")
        torch_seed, self.rng = seed_streams(seed)
        with torch.random.fork_rng():
            torch.manual_seed(torch_seed)
            self.q = mlp(1, list(config.hidden), self.num_actions)
        self.target_q = mlp(1, list(config.hidden), self.num_actions)
        self.target_q.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr)
        self.buffer = ReplayBuffer(config.buffer_size, 1, 1, action_dtype=np.int64)
        self.epsilon = config.epsilon_start

    @torch.no_grad()
    def q_values(self, gamma: float) -> np.ndarray:
        return self.q(torch.tensor([[gamma]], dtype=torch.float32))[0].numpy()

    def act(self, gamma: float, explore: bool) -> int:
        """epsilon-greedy in training, greedy in evaluation."""
        if explore and self.rng.random() < self.epsilon:
            return int(self.explore_actions[self.rng.integers(len(self.explore_actions))])
        return int(np.argmax(self.q_values(gamma)))

    def select(self, gamma: float, explore: bool) -> np.ndarray:
        """The cache vector of :meth:`act`, amended by Sec. 6.3.2."""
        return amend_cache(self.act(gamma, explore), self.num_models)

    def store(
        self, gamma: float, cache: np.ndarray, reward: float, next_gamma: float, done: bool
    ) -> None:
        """Store a frame; ``cache`` is the (amended) cache vector, kept as its action code."""
        action = cache_to_action(cache)
        self.buffer.add([gamma], [action], reward * self.config.reward_scale, [next_gamma], done)

    def ready(self) -> bool:
        return replay_ready(self.buffer, self.config.warmup, self.config.batch_size)

    def update(self) -> dict[str, float]:
        """One step on loss (33) with the double-Q target (33a), then eq. (35)."""
        batch = sample_tensors(self.buffer, self.rng, self.config.batch_size)
        s, a, r = batch["states"], batch["actions"][:, 0], batch["rewards"]
        with torch.no_grad():
            best = self.q(batch["next_states"]).argmax(
                dim=1, keepdim=True
            )  # evaluation net selects
            bootstrap = (
                self.target_q(batch["next_states"]).gather(1, best).squeeze(1)
            )  # target evaluates
            target = r + self.config.discount * (1.0 - batch["dones"]) * bootstrap  # eq. (33a)
        q_taken = self.q(s).gather(1, a.unsqueeze(1)).squeeze(1)  # eq. (33b)
        loss = 0.5 * (target - q_taken).pow(2).mean()  # eq. (33)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()  # eq. (34)
        soft_update(self.target_q, self.q, self.config.target_rate)  # eq. (35)
        return {"q_loss": loss.item()}

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"q": self.q, "target_q": self.target_q}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q_optimizer": self.optimizer}

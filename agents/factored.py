"""A factored caching agent: one value per model, the cache by an exact knapsack.

The paper's DDQN (Sec. 6.3) scores each of the 2^M cache configurations with its own Q
output, so every configuration must be tried to be learned, and M = 50 is out of reach.
Here the value of a cache for the frame's state s(t) is additive over the models::

    Q(s, rho) = v_0(s) + sum_m rho_m w_m(s)

with ``[v_0, w_1..w_M] = f_theta(s)`` one MLP. Every frame's reward then teaches every
model's term at once. The expected frame utility of a cache is additive over its bits on
the default scenario (R^2 = 1.000 over all 280 caches that fit), because a user's utility
depends only on whether its own model is cached and on the allocation's share of the
steps, which the optimiser gives to few users.
The greedy cache maximises Q subject to (11d), a 0/1 knapsack with weights c_m and
values w_m, solved exactly by branch and bound (:func:`best_cache`), so only caches that
fit are ever chosen. Exploration draws random caches that fit.

The target is the frame reward itself (no bootstrap): the cache does not change the next
popularity state, an exogenous Markov chain (eq. (37)), so the best cache is myopic (the
DDQN's default discount is 0 for the same reason). The replay buffer is a ring of
``buffer_size`` frames, so rewards earned under an untrained allocator are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.nets import EpsilonGreedy, mlp, seed_streams
from agents.replay import ReplayBuffer

_FIT_TOL = 1e-9
"""The tolerance of (11d), as in :func:`testbed.core.system_model.cache_fits`."""


def best_cache(values: np.ndarray, size_gb: np.ndarray, capacity_gb: float) -> np.ndarray:
    """The cache maximising sum_m rho_m values_m subject to sum_m rho_m c_m <= C, exactly.

    Depth-first branch and bound over the models of positive value (the others never
    help), taken by value per GB, bounded by the fractional (LP) relaxation. Ties keep the
    first cache found (the one of the greedy order). Returns a bool vector of length M.
    """
    values = np.asarray(values, dtype=float)
    size_gb = np.asarray(size_gb, dtype=float)
    limit = capacity_gb + _FIT_TOL
    cache = np.zeros(len(values), dtype=bool)
    candidates = [m for m in range(len(values)) if values[m] > 0.0 and size_gb[m] <= limit]
    if not candidates:
        return cache
    zero_size = [m for m in candidates if size_gb[m] <= 0.0]
    cache[zero_size] = True
    items = sorted(
        (m for m in candidates if size_gb[m] > 0.0),
        key=lambda m: values[m] / size_gb[m],
        reverse=True,
    )
    v = [float(values[m]) for m in items]
    w = [float(size_gb[m]) for m in items]
    n = len(items)

    def bound(i: int, room: float) -> float:
        """Fractional knapsack of items i.. in ``room`` (an upper bound of the 0/1 one)."""
        total = 0.0
        for j in range(i, n):
            if w[j] <= room:
                room -= w[j]
                total += v[j]
            else:
                return total + v[j] * room / w[j]
        return total

    best_value, best_set = -1.0, []
    chosen: list[int] = []

    def search(i: int, room: float, value: float) -> None:
        nonlocal best_value, best_set
        if value > best_value:
            best_value, best_set = value, list(chosen)
        if i == n or value + bound(i, room) <= best_value:
            return
        if w[i] <= room:
            chosen.append(i)
            search(i + 1, room - w[i], value + v[i])
            chosen.pop()
        search(i + 1, room, value)

    search(0, limit, 0.0)
    cache[[items[i] for i in best_set]] = True
    return cache


def random_fitting_cache(
    rng: np.random.Generator, size_gb: np.ndarray, capacity_gb: float, keep: float
) -> np.ndarray:
    """A random cache that satisfies (11d): the models in random order, each taken with
    probability ``keep`` when it still fits. Every cache that fits can come out."""
    size_gb = np.asarray(size_gb, dtype=float)
    cache = np.zeros(len(size_gb), dtype=bool)
    room = capacity_gb + _FIT_TOL
    for m in rng.permutation(len(size_gb)):
        if size_gb[m] <= room and rng.random() < keep:
            cache[m] = True
            room -= size_gb[m]
    return cache


@dataclass
class FactoredConfig:
    """Hyperparameters of the factored caching agent."""

    lr: float = 1e-3
    """Adam learning rate."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layers of f_theta (ReLU)."""
    batch_size: int = 64
    """Frames per update."""
    buffer_size: int = 2_000
    """Frames the replay keeps (a ring: the oldest are forgotten); with 8 counterfactual
    caches per frame, the last 22 episodes of T = 10."""
    warmup: int = 64
    """Frames stored before the first update."""
    updates_per_frame: int = 4
    """Gradient steps after each frame."""
    epsilon_start: float = 1.0
    """Exploration rate at the first frame."""
    epsilon_end: float = 0.1
    """Exploration rate after the decay (the allocator learns on the caches chosen here, so
    it keeps seeing caches other than the greedy one)."""
    epsilon_decay_fraction: float = 0.5
    """Fraction of the training frames over which epsilon decays linearly."""
    explore_keep: float = 0.5
    """Probability that a model enters a random (exploring) cache when it fits."""
    reward_scale: float = 0.01
    """Frame rewards are multiplied by this before the network sees them."""

    def validate(self) -> None:
        if not 0.0 < self.explore_keep <= 1.0:
            raise ValueError(f"explore_keep = {self.explore_keep!r}: allowed (0, 1]")
        for key in ("batch_size", "buffer_size", "warmup", "updates_per_frame"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} = {value!r} is out of range: allowed integers >= 1")


class FactoredCaching(EpsilonGreedy):
    """Per-model values conditioned on s(t) = gamma(t); the cache by exact knapsack."""

    name = "factored"

    def __init__(
        self,
        size_gb: np.ndarray,
        capacity_gb: float,
        config: FactoredConfig,
        seed: int | np.random.SeedSequence = 0,
    ) -> None:
        config.validate()
        self.config = config
        self.size_gb = np.asarray(size_gb, dtype=float)
        self.capacity_gb = float(capacity_gb)
        self.num_models = len(self.size_gb)
        torch_seed, self.rng = seed_streams(seed)
        with torch.random.fork_rng():
            torch.manual_seed(torch_seed)
            self.q = mlp(1, list(config.hidden), self.num_models + 1)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr)
        self.buffer = ReplayBuffer(config.buffer_size, 1, self.num_models)
        self.epsilon = config.epsilon_start

    @torch.no_grad()
    def model_values(self, gamma: float) -> np.ndarray:
        """w_m(s) of every model (scaled reward units: higher is better)."""
        return self.q(torch.tensor([[gamma]], dtype=torch.float32))[0, 1:].double().numpy()

    def select(self, gamma: float, explore: bool) -> np.ndarray:
        """epsilon-greedy over caches that fit in training, the knapsack optimum otherwise."""
        if explore and self.rng.random() < self.epsilon:
            return random_fitting_cache(
                self.rng, self.size_gb, self.capacity_gb, self.config.explore_keep
            )
        return best_cache(self.model_values(gamma), self.size_gb, self.capacity_gb)

    def store(
        self, gamma: float, cache: np.ndarray, reward: float, next_gamma: float, done: bool
    ) -> None:
        self.buffer.add(
            [gamma],
            np.asarray(cache, dtype=np.float32),
            reward * self.config.reward_scale,
            [next_gamma],
            done,
        )

    def ready(self) -> bool:
        return len(self.buffer) >= max(self.config.warmup, self.config.batch_size)

    def update(self) -> dict[str, float]:
        """One step on 0.5 (r - Q(s, rho))^2 over a batch of stored frames."""
        batch = self.buffer.sample(self.rng, self.config.batch_size)
        s, caches = torch.as_tensor(batch["states"]), torch.as_tensor(batch["actions"])
        out = self.q(s)
        q_taken = out[:, 0] + (out[:, 1:] * caches).sum(dim=1)
        loss = 0.5 * (torch.as_tensor(batch["rewards"]) - q_taken).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"q_loss": loss.item()}

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"q": self.q}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q_optimizer": self.optimizer}

"""Small torch building blocks shared by the learning agents."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn


def mlp(in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Fully connected layers with ReLU between them (Sec. 7.1: ReLU on every hidden layer)."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


ACTION_MAPS = ("sigmoid", "tanh", "clip", "hard")
HARD_LEAK = 0.05
"""Slope of the gradient that the `hard` map passes back outside [-1, 1]."""


def map_action(x: torch.Tensor, name: str) -> torch.Tensor:
    """An actor's last layer x into a raw action in [0, 1].

    * ``sigmoid``: sigmoid(x), smooth, never exactly 0 or 1 (the DDPG actor's default);
    * ``tanh``: (tanh(x) + 1) / 2 = sigmoid(2x), the D3PG actor's default;
    * ``clip``: (clip(x, -1, 1) + 1) / 2, reaches 0 and 1 exactly, zero gradient beyond;
    * ``hard``: ``clip`` in value, but from the bounds outwards the gradient leaks with slope
      :data:`HARD_LEAK`, so an output pinned at 0 (no steps, no bandwidth) can still be
      pulled back by the loss: reaches 0 exactly and never stops learning.
    """
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return (torch.tanh(x) + 1.0) / 2.0
    if name not in ("clip", "hard"):
        raise ValueError(f"action_map = {name!r}: allowed {list(ACTION_MAPS)}")
    clipped = (x.clamp(-1.0, 1.0) + 1.0) / 2.0
    if name == "clip":
        return clipped
    return clipped + HARD_LEAK * _leak(x)


def leaky_clip(x: torch.Tensor) -> torch.Tensor:
    """``clip(x, -1, 1)`` in value; from the bounds outwards the gradient leaks with slope
    :data:`HARD_LEAK` instead of vanishing (as the `hard` action map's does)."""
    return x.clamp(-1.0, 1.0) + HARD_LEAK * _leak(x)


def _leak(x: torch.Tensor) -> torch.Tensor:
    """0 in value; gradient 1 where |x| >= 1 (from the bounds outwards), 0 inside."""
    outside = (x.abs() >= 1.0).to(x.dtype).detach()
    return outside * (x - x.detach())


def sinusoidal_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer denoising steps l, shape (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = steps.float().unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def seed_streams(seed: int | np.random.SeedSequence) -> tuple[int, np.random.Generator]:
    """An agent's two streams from its seed: the torch seed of its network initialisation
    and the numpy generator of its exploration and replay sampling."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    torch_seed, np_seed = seq.spawn(2)
    return int(torch_seed.generate_state(1)[0]), np.random.default_rng(np_seed)


class EpsilonGreedy:
    """The epsilon of an epsilon-greedy agent whose config has ``epsilon_start``,
    ``epsilon_end`` and ``epsilon_decay_fraction``."""

    config: Any
    epsilon: float

    def set_progress(self, fraction: float) -> None:
        """Linear from ``epsilon_start`` to ``epsilon_end`` over ``epsilon_decay_fraction``
        of training (``fraction`` of it done), then ``epsilon_end``."""
        c = self.config
        t = min(1.0, fraction / max(c.epsilon_decay_fraction, 1e-9))
        self.epsilon = c.epsilon_start + t * (c.epsilon_end - c.epsilon_start)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target <- rate * source + (1 - rate) * target (eqs. (28), (29), (35))."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), rate)

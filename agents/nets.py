"""Small torch building blocks shared by the learning agents."""

from __future__ import annotations

import math

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


def sinusoidal_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer denoising steps l, shape (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = steps.float().unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target <- rate * source + (1 - rate) * target (eqs. (28), (29), (35))."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), rate)

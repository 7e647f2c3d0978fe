"""What the off-policy agents share (DDPG, D3PG and the DDQN): the hyperparameters of their
bootstrapped target and the replay batches they learn from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.replay import ReplayBuffer


@dataclass
class BootstrapConfig:
    """The bootstrapped target of an off-policy agent: its discount and the soft update of
    its target networks."""

    discount: float = 0.0
    """omega of eq. (24b) (the allocators), rho of eq. (33a) (the DDQN). An action changes
    neither the next slot's state nor the next gamma(t) (the world is exogenous), so the best
    action is myopic for any discount; 0 removes bootstrap noise."""
    target_rate: float = 0.005
    """Rate of the soft target updates: epsilon of eqs. (28)-(29), kappa of eq. (35)."""


def replay_ready(buffer: ReplayBuffer, warmup: int, batch_size: int) -> bool:
    """Whether ``buffer`` holds enough transitions to learn from: ``warmup``, and a batch."""
    return len(buffer) >= max(warmup, batch_size)


def sample_tensors(
    buffer: ReplayBuffer, rng: np.random.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """A uniform batch of ``batch_size`` transitions of ``buffer``, every field a tensor."""
    return {k: torch.as_tensor(v) for k, v in buffer.sample(rng, batch_size).items()}

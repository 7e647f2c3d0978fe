"""D3PG: DDPG whose actor is the reverse process of a DDPM (Secs. 5 and 6.2).

The actor turns Gaussian noise x^L into the allocation x^0 = {b, xi} in L denoising steps
(Algorithm 1, lines 13-26). A noise-predicting MLP denoiser (3 hidden layers of 128,
Sec. 7.1) sees x^l, an embedding of l and the state s (eqs. (19)-(20)). Everything else
(critic, targets, replay buffer E, losses (24)-(29)) is :class:`agents.ddpg.DDPG`; the
actor is trained by the deterministic policy gradient back-propagated through the whole
reverse chain.

Choices the paper leaves open, as options (defaults in :class:`D3PGConfig`):

* the mean of eq. (19): printed as ``(1 - alpha_l) / sqrt(1 - alpha_l)``; we use DDPM's
  ``beta_l / sqrt(1 - alpha_bar_l)`` [32], of which (19) is a typo, through the
  equivalent form (18) with the predicted x^0;
* ``clip_x0``: clip the predicted x^0 to [-1, 1] inside every step (DDPM's "clip
  denoised"; with the ``hard`` action map the clip leaks its gradient beyond the bounds
  the same way). Off by default: a clipped output has zero gradient, and with the policy
  gradient alone (no behaviour-cloning term) the actor then sticks at the bounds. On in
  the `best` preset (its ``d3pg`` overrides, ``agents.t2drl.PRESETS``): unclipped, the
  reverse chain is a recurrence whose gain can exceed 1, and its raw output can diverge;
* ``action_map``, x^0 into [0, 1]: ``"tanh"`` (default), ``a = (tanh(x^0) + 1) / 2``,
  smooth everywhere but never exactly 0; ``"clip"``, ``a = (clip(x^0, -1, 1) + 1) / 2``;
  or ``"hard"``, the clip with a leaking gradient beyond the bounds
  (``agents.nets.map_action``);
* exploration: in training the reverse process is stochastic (x^L ~ N(0, I) and the
  noise of eq. (20)); in evaluation it is off: x^L = 0 and no noise, a deterministic
  policy. The target actor is evaluated the same deterministic way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.ddpg import DDPG, ActorCriticConfig
from agents.nets import leaky_clip, map_action, mlp, sinusoidal_embedding


def beta_schedule(steps: int, beta_min: float, beta_max: float) -> np.ndarray:
    """Sec. 5.2.1: beta_l = 1 - exp(-beta_min / L - (2l - 1) / (2 L^2) (beta_max - beta_min))."""
    ls = np.arange(1, steps + 1, dtype=np.float64)
    return 1.0 - np.exp(-beta_min / steps - (2 * ls - 1) / (2 * steps**2) * (beta_max - beta_min))


@dataclass
class D3PGConfig(ActorCriticConfig):
    denoising_steps: int = 5
    """L, reverse steps of the actor (Sec. 7.3.1 picks 5)."""
    beta_min: float = 0.1
    """beta^min of the schedule (the VP-SDE discretisation of Diffusion-QL)."""
    beta_max: float = 10.0
    """beta^max of the schedule."""
    step_embedding_dim: int = 16
    """Width of the sinusoidal embedding of l."""
    clip_x0: bool = False
    """Clip the predicted x^0 to [-1, 1] in every reverse step (leaking the gradient like
    the `hard` map when ``action_map`` is `hard`)."""
    action_map: str = "tanh"
    """How x^0 maps into [0, 1] (``agents.nets.map_action``): `tanh` ((tanh(x) + 1) / 2),
    `sigmoid`, `clip` ((clip(x) + 1) / 2) or `hard` (`clip` with a leaking gradient)."""
    action_noise_std: float = 0.0
    """Extra Gaussian action noise; 0 because the reverse process itself explores."""
    exploration_scale: float = 1.0
    """Std of x^L and multiplier of the noise of eq. (20) in training (1: the DDPM's own)."""


class DiffusionActor(nn.Module):
    """pi_theta: L reverse steps of eqs. (17)-(20) with a state-conditioned noise predictor."""

    def __init__(self, state_dim: int, action_dim: int, config: D3PGConfig) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.steps = config.denoising_steps
        self.clip_x0 = config.clip_x0
        self.action_map = config.action_map
        self.embedding_dim = config.step_embedding_dim
        self.exploration_scale = config.exploration_scale
        betas = beta_schedule(config.denoising_steps, config.beta_min, config.beta_max)
        alphas = 1.0 - betas
        alpha_bar = np.cumprod(alphas)  # eq. (16)
        alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
        buffers = {
            "betas": betas,
            "sqrt_recip_alpha_bar": np.sqrt(1.0 / alpha_bar),
            "sqrt_recip_alpha_bar_m1": np.sqrt(1.0 / alpha_bar - 1.0),
            # eq. (18): mu = c_x0 x^0 + c_xl x^l
            "coef_x0": betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar),
            "coef_xl": (1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar),
            # eq. (17): beta_bar_l = (1 - alpha_bar_{l-1}) / (1 - alpha_bar_l) beta_l
            "posterior_std": np.sqrt(betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)),
        }
        for name, values in buffers.items():
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))
        in_dim = action_dim + config.step_embedding_dim + state_dim
        self.denoiser = mlp(in_dim, list(config.actor_hidden), action_dim)

    def predict_noise(self, x: torch.Tensor, step: int, state: torch.Tensor) -> torch.Tensor:
        """epsilon_hat_theta(x^l, l, s)."""
        steps = torch.full((x.shape[0],), step, dtype=torch.long)
        emb = sinusoidal_embedding(steps, self.embedding_dim)
        return self.denoiser(torch.cat([x, emb, state], dim=-1))

    def reverse(
        self, state: torch.Tensor, explore: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x^0 in [-1, 1] from x^L (Algorithm 1, lines 13-26)."""
        batch = state.shape[0]
        if explore:
            x = self.exploration_scale * torch.randn(batch, self.action_dim, generator=generator)
        else:
            x = torch.zeros(batch, self.action_dim)
        for step in range(self.steps, 0, -1):
            i = step - 1
            eps = self.predict_noise(x, step, state)
            x0 = self.sqrt_recip_alpha_bar[i] * x - self.sqrt_recip_alpha_bar_m1[i] * eps
            if self.clip_x0:  # with the `hard` map the clip leaks its gradient the same way
                x0 = leaky_clip(x0) if self.action_map == "hard" else x0.clamp(-1.0, 1.0)
            mean = self.coef_x0[i] * x0 + self.coef_xl[i] * x  # eqs. (18)-(19)
            if explore and step > 1:
                noise = torch.randn(batch, self.action_dim, generator=generator)
                x = mean + self.exploration_scale * self.posterior_std[i] * noise  # eq. (20)
            else:
                x = mean
        return x

    def forward(
        self, state: torch.Tensor, explore: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Raw action in [0, 1]."""
        return map_action(self.reverse(state, explore, generator), self.action_map)


class D3PG(DDPG):
    """Diffusion-based DDPG (Sec. 6.2.3)."""

    name = "d3pg"
    config: D3PGConfig

    def _make_actor(self) -> nn.Module:
        return DiffusionActor(self.state_dim, self.action_dim, self.config)

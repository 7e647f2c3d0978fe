"""DDPG for the slot-level allocation (the paper's "DDPG-based T2DRL" baseline, Sec. 7.2).

The actor is an MLP with a sigmoid output in [0, 1]^(2U) (the raw (b~, xi~) of eq. (22),
amended by Sec. 6.2.2 outside the agent); the critic Q_phi(s, a) is an MLP with 2 hidden
layers of 256. The update is eqs. (24)-(29): critic loss (24) against the target networks,
deterministic policy gradient (26)-(27), soft target updates with rate epsilon.
:class:`agents.d3pg.D3PG` reuses all of it with a diffusion actor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.nets import ACTION_MAPS, map_action, mlp, soft_update
from agents.offpolicy import BootstrapConfig, replay_ready, sample_tensors
from agents.replay import ReplayBuffer


@dataclass
class ActorCriticConfig(BootstrapConfig):
    """Hyperparameters of DDPG / D3PG (the discount omega and the rate epsilon:
    `BootstrapConfig`). Defaults: see ``docs/agents.md`` for the reasons."""

    actor_lr: float = 3e-4
    """Adam learning rate sigma^a of the actor (the paper's Sec. 7.1: 1e-6, preset `paper`)."""
    critic_lr: float = 3e-4
    """Adam learning rate sigma^c of the critic (the paper's Sec. 7.1: 1e-6)."""
    batch_size: int = 128
    """E, transitions per update."""
    buffer_size: int = 100_000
    """Capacity of the replay buffer E."""
    warmup: int = 1_000
    """Transitions stored before the first update (actions meanwhile: the initial actor)."""
    actor_hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden layers of the actor (the diffusion denoiser in D3PG: 3 x 128, Sec. 7.1)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the critic (Sec. 7.1: 2 x 256)."""
    action_noise_std: float = 0.1
    """Gaussian exploration noise added to the action in training (DDPG); off in evaluation."""
    reward_scale: float = 0.01
    """Rewards are multiplied by this before the critic sees them (eq. (23) is ~ -50 per slot)."""
    action_map: str = "sigmoid"
    """The actor's last layer into [0, 1] (``agents.nets.map_action``): `sigmoid`, `tanh`,
    `clip` or `hard` (the last two reach 0 exactly: no steps, no bandwidth)."""
    objective: str = "pg"
    """How the actor learns: `pg`, the deterministic policy gradient of eqs. (26)-(27) (plus
    ``bc_weight`` times the behaviour-cloning term), or `clone`, the behaviour-cloning term
    alone (the critic is then not trained)."""
    bc_weight: float = 0.0
    """Weight of the behaviour-cloning term: the squared distance between the executed
    (amended) action and the teacher's, summed over the 2U shares. With a weight > 0 the
    policy-gradient term is divided by the batch's mean |Q| (as Diffusion-QL does), so the
    weight is the ratio of the two terms."""
    teacher: str = ""
    """Whose actions the behaviour-cloning term imitates: `optimal` (the exact per-slot
    optimiser, ``agents.optimal.OptimalAllocation``), or empty for none."""

    def validate(self) -> None:
        if self.action_map not in ACTION_MAPS:
            raise ValueError(f"action_map = {self.action_map!r}: allowed {list(ACTION_MAPS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective = {self.objective!r}: allowed {list(OBJECTIVES)}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher = {self.teacher!r}: allowed {list(TEACHERS)}")
        if not self.bc_weight >= 0.0:
            raise ValueError(f"bc_weight = {self.bc_weight!r}: allowed >= 0")
        if self.clones and not self.teacher:
            raise ValueError(
                "behaviour cloning (objective = 'clone' or bc_weight > 0) needs a teacher: "
                f"allowed {[t for t in TEACHERS if t]}"
            )

    @property
    def clones(self) -> bool:
        """Whether the actor imitates a teacher (its buffer then keeps the teacher's actions)."""
        return self.objective == "clone" or self.bc_weight > 0.0


OBJECTIVES = ("pg", "clone")
TEACHERS = ("", "optimal")


def _identity(mask: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    del mask
    return action


class MLPActor(nn.Module):
    def __init__(
        self, state_dim: int, action_dim: int, hidden: tuple[int, ...], action_map: str
    ) -> None:
        super().__init__()
        self.net = mlp(state_dim, list(hidden), action_dim)
        self.action_map = action_map

    def forward(
        self, state: torch.Tensor, explore: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Raw action in [0, 1]."""
        del explore, generator  # the MLP is deterministic; DDPG explores with action noise
        return map_action(self.net(state), self.action_map)


class Critic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(state_dim + action_dim, list(hidden), 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], dim=-1)).squeeze(-1)


def _cloning_loss(action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared distance between executed and teacher's actions, summed over the shares."""
    return (action - target).pow(2).sum(dim=1).mean()


class DDPG:
    """Actor-critic agent: ``act`` per slot, ``store`` the transition, ``update`` once per slot."""

    name = "ddpg"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        config: ActorCriticConfig,
        seed: int | np.random.SeedSequence = 0,
        mask_dim: int = 0,
    ) -> None:
        config.validate()
        self.config = config
        self.state_dim, self.action_dim = state_dim, action_dim
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        torch_seed, np_seed = seq.spawn(2)
        self.torch_generator = torch.Generator().manual_seed(int(torch_seed.generate_state(1)[0]))
        self.rng = np.random.default_rng(np_seed)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch_seed.generate_state(2)[1]))
            self.actor = self._make_actor()
            self.critic = Critic(state_dim, action_dim, config.critic_hidden)
        self.target_actor = self._make_actor()
        self.target_actor.load_state_dict(self.actor.state_dict())
        self.target_critic = Critic(state_dim, action_dim, config.critic_hidden)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.buffer = ReplayBuffer(
            config.buffer_size,
            state_dim,
            action_dim,
            mask_dim=mask_dim,
            target_dim=action_dim if config.clones else 0,
        )
        self.amend: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _identity
        """Maps (mask, raw action) to the executed action, differentiably; the critic and
        the buffer see executed actions (T2DRL sets the Sec. 6.2.2 amender here, the mask
        being rho_{phi_u} of the transition's slot, stored beside it)."""

    def _make_actor(self) -> nn.Module:
        c = self.config
        return MLPActor(self.state_dim, self.action_dim, c.actor_hidden, c.action_map)

    @torch.no_grad()
    def act(self, state: np.ndarray, explore: bool) -> np.ndarray:
        """Raw action in [0, 1]^action_dim; exploration only when ``explore``."""
        obs = torch.as_tensor(state, dtype=torch.float32).unsqueeze(0)
        action = self.actor(obs, explore=explore, generator=self.torch_generator)[0].numpy()
        if explore and self.config.action_noise_std > 0:
            noise = self.rng.normal(0.0, self.config.action_noise_std, action.shape)
            action = np.clip(action + noise, 0.0, 1.0)
        return action.astype(np.float32)

    @torch.no_grad()
    def greedy_actions(self, states: np.ndarray) -> np.ndarray:
        """Raw actions for a batch of states, exploration off (one forward pass)."""
        obs = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        return self.actor(obs, explore=False).numpy()

    def store(
        self,
        state,
        action,
        reward: float,
        next_state,
        done: bool,
        mask=0.0,
        next_mask=0.0,
        target=0.0,
    ) -> None:
        """Store a transition; ``action`` is the executed (amended) action, ``mask`` and
        ``next_mask`` what :attr:`amend` needs of s and s', ``target`` the teacher's
        (executed) action for s when the actor clones one."""
        self.buffer.add(
            state,
            action,
            reward * self.config.reward_scale,
            next_state,
            done,
            mask,
            next_mask,
            target,
        )

    def ready(self) -> bool:
        return replay_ready(self.buffer, self.config.warmup, self.config.batch_size)

    def update(self) -> dict[str, float]:
        """One critic step on (24) and one actor step on (26)-(27), then (28)-(29)."""
        batch = sample_tensors(self.buffer, self.rng, self.config.batch_size)
        s, a, r = batch["states"], batch["actions"], batch["rewards"]
        mask, next_mask = batch.get("masks"), batch.get("next_masks")
        if self.config.objective == "clone":
            return self._clone_step(s, mask, batch["targets"])
        with torch.no_grad():
            next_states = batch["next_states"]
            next_action = self.amend(next_mask, self.target_actor(next_states))
            bootstrap = self.target_critic(batch["next_states"], next_action)
            target = r + self.config.discount * (1.0 - batch["dones"]) * bootstrap  # eq. (24b)
        critic_loss = 0.5 * (target - self.critic(s, a)).pow(2).mean()  # eq. (24)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()  # eq. (25)
        self.critic.requires_grad_(False)  # the actor step needs dQ/da, not the critic's grads
        action = self.amend(mask, self.actor(s))
        q_value = self.critic(s, action)  # deterministic PG, eq. (26)
        actor_loss = -q_value.mean()  # gradient ascent on Q, eqs. (26)-(27)
        if self.config.bc_weight > 0.0:  # Diffusion-QL's form: normalised Q + cloning
            actor_loss = actor_loss / q_value.abs().mean().detach().clamp_min(1e-6)
            actor_loss = actor_loss + self.config.bc_weight * _cloning_loss(
                action, batch["targets"]
            )
        self._actor_step(actor_loss)
        self.critic.requires_grad_(True)
        soft_update(self.target_actor, self.actor, self.config.target_rate)  # eq. (28)
        soft_update(self.target_critic, self.critic, self.config.target_rate)  # eq. (29)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}

    def _clone_step(
        self, s: torch.Tensor, mask: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, float]:
        """One actor step on the behaviour-cloning term alone (``objective = "clone"``)."""
        loss = _cloning_loss(self.amend(mask, self.actor(s)), targets)
        self._actor_step(loss)
        soft_update(self.target_actor, self.actor, self.config.target_rate)
        return {"critic_loss": float("nan"), "actor_loss": loss.item()}

    def _actor_step(self, loss: torch.Tensor) -> None:
        """One Adam step of the actor on ``loss``."""
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "target_actor": self.target_actor,
            "target_critic": self.target_critic,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

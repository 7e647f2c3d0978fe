"""The allocation side of the `best` preset: action maps that reach 0, behaviour cloning of
the exact optimiser (pure and beside the policy gradient), and the shipped policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.d3pg import D3PG, D3PGConfig
from agents.ddpg import DDPG, ActorCriticConfig
from agents.nets import HARD_LEAK, leaky_clip, map_action
from agents.optimal import OptimalAllocation
from agents.t2drl import (
    AllocationLearner,
    T2DRLAgents,
    TorchAmender,
    TrainConfig,
)
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.records import FrameState, SlotStep
from testbed.core.system_model import RadioParams, popular_cache, score_slot, served_at_edge
from ue_emulator.world import sample_slots

SMALL = ScenarioConfig().replace(**{"network.num_users": 4})


def test_action_maps_hand_values_and_which_reach_zero():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], requires_grad=True)
    hard = map_action(x, "hard")
    assert hard.tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]  # exactly 0 and 1
    assert map_action(x, "clip").tolist() == hard.tolist()
    hard.sum().backward()
    # slope 1/2 inside (-1, 1); the leak from the bounds out (the clip alone gives 0 there)
    np.testing.assert_allclose(
        x.grad.numpy(), [HARD_LEAK, HARD_LEAK, 0.5, 0.5, HARD_LEAK, HARD_LEAK], rtol=1e-6
    )
    for smooth in ("tanh", "sigmoid"):
        values = map_action(x.detach(), smooth)
        assert (values > 0).all() and (values < 1).all()  # never exactly 0: steps leak
    np.testing.assert_allclose(
        map_action(x.detach(), "tanh"), map_action(2 * x.detach(), "sigmoid"), atol=1e-6
    )
    with pytest.raises(ValueError, match="action_map = 'relu'"):
        map_action(x, "relu")


def test_the_leaky_clip_clips_values_and_leaks_gradient():
    x = torch.tensor([-3.0, 0.5, 2.0], requires_grad=True)
    y = leaky_clip(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, 0.5, 1.0]
    assert x.grad.tolist() == pytest.approx([HARD_LEAK, 1.0, HARD_LEAK])


def test_the_clipped_reverse_chain_stays_bounded_where_the_unclipped_one_diverges():
    # a denoiser whose gain makes the recurrence x^{l-1} = f(x^l) explode
    def actor(clip: bool) -> torch.Tensor:
        config = D3PGConfig(action_map="hard", clip_x0=clip)
        agent = D3PG(6, 4, config, seed=0)
        with torch.no_grad():
            for p in agent.actor.parameters():
                p.mul_(40.0)
        return agent.actor.reverse(torch.ones(3, 6), explore=False)

    assert actor(False).abs().max() > 1e3
    assert actor(True).abs().max() <= 1.0 + 1e-6


def test_cloning_needs_a_teacher_and_options_are_checked():
    with pytest.raises(ValueError, match="needs a teacher"):
        ActorCriticConfig(objective="clone").validate()
    with pytest.raises(ValueError, match="needs a teacher"):
        ActorCriticConfig(bc_weight=0.5).validate()
    with pytest.raises(ValueError, match="objective = 'imitate'"):
        ActorCriticConfig(objective="imitate", teacher="optimal").validate()
    with pytest.raises(ValueError, match="bc_weight = -1"):
        ActorCriticConfig(bc_weight=-1, teacher="optimal").validate()
    with pytest.raises(ValueError, match="counterfactuals > 0 needs credit = 'greedy'"):
        TrainConfig(credit="explore", counterfactuals=4).validate()
    best = TrainConfig(preset="best").allocator_config()
    assert (best.objective, best.teacher, best.action_map) == ("clone", "optimal", "hard")
    assert best.clip_x0 is True  # the D3PG actor's x^0 clipped in every reverse step
    ddpg_best = TrainConfig(agent="ddpg-t2drl", preset="best").allocator_config()
    assert not hasattr(ddpg_best, "clip_x0")
    assert TrainConfig(preset="default").allocator_config().clip_x0 is False
    assert TrainConfig(preset="best").counterfactuals == 8
    assert TrainConfig(preset="best", credit="explore").counterfactuals == 0
    assert TrainConfig(preset="default").counterfactuals == 0
    assert TrainConfig(preset="default").allocator_config().objective == "pg"


def _filled(agent: DDPG, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    u = agent.action_dim // 2
    for _ in range(agent.config.batch_size):
        mask = (rng.random(u) < 0.5).astype(np.float32)
        target = np.concatenate([rng.dirichlet(np.ones(u)), rng.random(u) * mask / u])
        agent.store(
            rng.random(agent.state_dim),
            target,
            -40.0,
            rng.random(agent.state_dim),
            False,
            mask,
            mask,
            target,
        )


@pytest.mark.parametrize("cls", [DDPG, D3PG])
def test_clone_step_is_the_summed_squared_distance_to_the_teacher(cls):
    base = dict(objective="clone", teacher="optimal", action_map="hard", batch_size=8)
    config = D3PGConfig(**base) if cls is D3PG else ActorCriticConfig(**base)
    agent = cls(10, 8, config, seed=4, mask_dim=4)
    agent.amend = TorchAmender(4, "cap")
    _filled(agent)
    state = agent.rng.bit_generator.state
    batch = agent.buffer.sample(agent.rng, 8)
    agent.rng.bit_generator.state = state  # update() draws the same batch
    with torch.no_grad():
        executed = agent.amend(
            torch.as_tensor(batch["masks"]), agent.actor(torch.as_tensor(batch["states"]))
        )
        expected = ((executed - torch.as_tensor(batch["targets"])) ** 2).sum(1).mean().item()
    critic_before = [p.clone() for p in agent.critic.parameters()]
    losses = agent.update()
    assert losses["actor_loss"] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(losses["critic_loss"])  # pure cloning trains no critic
    after = list(agent.critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(critic_before, after, strict=True))


def test_bc_term_beside_the_policy_gradient_is_weighted_after_normalising_q():
    # critic_lr = 0: the critic's step changes nothing, so the actor's loss can be recomputed
    config = ActorCriticConfig(
        teacher="optimal", bc_weight=2.0, batch_size=8, action_map="hard", critic_lr=0.0
    )
    agent = DDPG(10, 8, config, seed=5, mask_dim=4)
    agent.amend = TorchAmender(4, "cap")
    _filled(agent, seed=1)
    state = agent.rng.bit_generator.state
    batch = {k: torch.as_tensor(v) for k, v in agent.buffer.sample(agent.rng, 8).items()}
    agent.rng.bit_generator.state = state
    with torch.no_grad():
        executed = agent.amend(batch["masks"], agent.actor(batch["states"]))
        q = agent.critic(batch["states"], executed)
        bc = ((executed - batch["targets"]) ** 2).sum(1).mean()
        expected = (-q.mean() / q.abs().mean() + 2.0 * bc).item()
    losses = agent.update()
    assert losses["actor_loss"] == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(losses["critic_loss"])


def test_an_actor_cloning_the_optimiser_gives_exactly_zero_steps_where_it_does():
    """xi = 0 is reachable: the `hard` map pins the steps of users the optimiser leaves at 0."""
    catalogue = build_catalogue(SMALL.catalogue)
    train = TrainConfig(
        agent="ddpg-t2drl",
        preset="best",
        allocator={"warmup": 32, "batch_size": 32, "actor_lr": 1e-3},
    )
    agents = T2DRLAgents(SMALL, train)
    learner = AllocationLearner(agents.allocator, SMALL, catalogue, "ddpg-t2drl", "cap")
    teacher = OptimalAllocation(SMALL, catalogue)
    slots = sample_slots(SMALL, 1, 64, np.random.SeedSequence(21))
    cache = popular_cache(SMALL, catalogue, 0.5)
    radio = RadioParams.from_config(SMALL)
    for _ in range(12):
        for slot in slots:
            b, xi = learner.allocate(slot, cache)
            outcome = score_slot(radio, catalogue, slot, cache, b, xi)
            learner.on_slot(SlotStep(0, slot, cache, b, xi, outcome, 0.0))
    zero_users, exact_zero = 0, 0
    for slot in slots:
        _, xi_opt = teacher.allocate(slot, cache)
        raw = agents.allocator.act(learner.codec.encode(slot, cache), explore=False)
        xi = raw[4:] * served_at_edge(cache, slot.services)
        for user in np.flatnonzero(served_at_edge(cache, slot.services) & (xi_opt == 0)):
            zero_users += 1
            exact_zero += xi[user] == 0.0
    assert zero_users > 20 and exact_zero / zero_users > 0.9


@pytest.mark.parametrize("agent", ["t2drl", "ddpg-t2drl"])
def test_shipped_policy_matches_the_optimiser_on_held_out_slots(agent):
    """The pretrained `best` policy (agents/pretrained) on slots no training drew: the cache
    equals the exact enumeration's in every popularity state, and the cloned allocation's
    utility is within 0.5% of the optimiser's on average (measured: 0.003-0.03%), its
    bandwidth shares within 0.05 of the KKT split."""
    from testbed.sim.policies import PRETRAINED_REF, make_policies

    config = ScenarioConfig()
    catalogue = build_catalogue(config.catalogue)
    radio = RadioParams.from_config(config)
    caching, allocation = make_policies(agent, config, catalogue, PRETRAINED_REF)
    best_caching, teacher = make_policies("optimal", config, catalogue)
    for index, gamma in enumerate(config.catalogue.popularity_states):
        frame = FrameState(0, index, gamma)
        cache = best_caching.select_cache(frame)
        assert caching.select_cache(frame).tolist() == cache.tolist()
        slots = sample_slots(config, index, 60, np.random.SeedSequence([2026, index]))
        learned, optimal = [], []
        for slot in slots:
            b, xi = allocation.allocate(slot, cache)
            b_opt, xi_opt = teacher.allocate(slot, cache)
            assert np.abs(b - b_opt).max() < 0.05
            learned.append(score_slot(radio, catalogue, slot, cache, b, xi).utility.sum())
            optimal.append(score_slot(radio, catalogue, slot, cache, b_opt, xi_opt).utility.sum())
        assert np.mean(learned) <= 1.005 * np.mean(optimal)

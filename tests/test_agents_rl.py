"""DDQN, D3PG, DDPG and the T2DRL loop of Algorithm 1."""

import numpy as np
import pandas as pd
import pytest
import torch

from agents.d3pg import D3PG, D3PGConfig, DiffusionActor, beta_schedule
from agents.ddpg import DDPG, ActorCriticConfig
from agents.ddqn import DDQN, DDQNConfig
from agents.schrs import StaticPopularCaching
from agents.t2drl import T2DRLAgents, TrainConfig
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.system_model import check_allocation, served_at_edge
from testbed.sim.policies import make_policies
from testbed.sim.runner import run
from testbed.training.trainer import resume, train
from ue_emulator.world import World

SMALL = ScenarioConfig().replace(
    **{"network.num_users": 4, "timing.num_frames": 2, "timing.slots_per_frame": 10}
)
FAST = {"warmup": 32, "batch_size": 32, "actor_lr": 1e-3, "critic_lr": 1e-3}


def test_beta_schedule_l5_hand_values():
    # beta_l = 1 - exp(-0.1/5 - (2l-1)/50 * 9.9): exponents 0.218, 0.614, 1.010, 1.406, 1.802
    expected = 1 - np.exp(-np.array([0.218, 0.614, 1.010, 1.406, 1.802]))
    np.testing.assert_allclose(beta_schedule(5, 0.1, 10.0), expected, rtol=1e-12)
    np.testing.assert_allclose(
        expected, [0.195875, 0.458818, 0.635781, 0.754878, 0.835031], atol=1e-6
    )


def test_posterior_coefficients_match_eqs_17_18():
    actor = DiffusionActor(6, 4, D3PGConfig())
    betas = beta_schedule(5, 0.1, 10.0)
    alpha_bar = np.cumprod(1 - betas)
    # l = 2 (index 1): beta_bar = (1 - abar_1) / (1 - abar_2) beta_2
    assert actor.posterior_std[1].item() ** 2 == pytest.approx(
        (1 - alpha_bar[0]) / (1 - alpha_bar[1]) * betas[1], rel=1e-5
    )
    assert actor.posterior_std[0].item() == 0.0  # no noise on the last step (l = 1)
    assert actor.coef_x0[1].item() == pytest.approx(
        np.sqrt(alpha_bar[0]) * betas[1] / (1 - alpha_bar[1]), rel=1e-5
    )


@pytest.mark.parametrize("cls", [D3PG, DDPG])
def test_actions_in_unit_box_and_deterministic_in_evaluation(cls):
    config = D3PGConfig() if cls is D3PG else ActorCriticConfig()
    agent = cls(26, 8, config, seed=3)
    state = np.random.default_rng(0).random(26).astype(np.float32)
    a = agent.act(state, explore=False)
    assert a.shape == (8,) and ((a >= 0) & (a <= 1)).all()
    np.testing.assert_array_equal(a, agent.act(state, explore=False))
    explored = [agent.act(state, explore=True) for _ in range(3)]
    assert not np.allclose(explored[0], explored[1])
    assert all(((e >= 0) & (e <= 1)).all() for e in explored)


def test_amended_learned_actions_satisfy_constraints():
    catalogue = build_catalogue(SMALL.catalogue)
    agents = T2DRLAgents(SMALL, TrainConfig())
    from agents.t2drl import LearnedAllocation

    policy = LearnedAllocation(agents.allocator, SMALL, catalogue, "t2drl")
    world = World(SMALL)
    world.reset(0)
    world.begin_frame()
    cache = np.zeros(10, bool)
    cache[[0, 2, 5]] = True
    for _ in range(5):
        slot = world.next_slot()
        b, xi = policy.allocate(slot, cache)
        check_allocation(b, xi, served_at_edge(cache, slot.services))  # (11b)-(11g)
        assert b.sum() == pytest.approx(1.0)


def test_critic_gradient_reaches_every_denoiser_layer():
    agent = D3PG(26, 8, D3PGConfig(), seed=0)
    state = torch.rand(16, 26)
    q = agent.critic(state, agent.actor(state, explore=True, generator=agent.torch_generator))
    (-q.mean()).backward()
    linear = [m for m in agent.actor.denoiser if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 4  # 3 hidden layers of 128 + output (Sec. 7.1)
    for layer in linear:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_ddqn_double_q_target():
    agent = DDQN(3, DDQNConfig(discount=0.5, batch_size=4, warmup=4), seed=0)
    for _ in range(4):
        agent.store(0.2, np.array([True, False, True]), -40.0, 0.5, False)  # action code 5
    with torch.no_grad():
        for p in agent.target_q.parameters():
            p.add_(0.1)
    with torch.no_grad():
        nxt = torch.tensor([[0.5]])
        best = int(agent.q(nxt).argmax())
        expected_target = -0.4 + 0.5 * agent.target_q(nxt)[0, best].item()  # eq. (33a)
        q_taken = agent.q(torch.tensor([[0.2]]))[0, 5].item()
    loss = agent.update()["q_loss"]
    assert loss == pytest.approx(0.5 * (expected_target - q_taken) ** 2, rel=1e-5)  # eq. (33)


def test_ddqn_epsilon_decay_and_greedy_evaluation():
    agent = DDQN(4, DDQNConfig(epsilon_decay_fraction=0.5), seed=1)
    agent.set_progress(0.25)
    assert agent.epsilon == pytest.approx(1.0 + 0.5 * (0.02 - 1.0))
    agent.set_progress(0.9)
    assert agent.epsilon == pytest.approx(0.02)
    greedy = int(np.argmax(agent.q_values(0.5)))
    assert all(agent.act(0.5, explore=False) == greedy for _ in range(5))


def _train(tmp_path, name, episodes=4, **kw):
    config = TrainConfig(
        agent=kw.pop("agent", "t2drl"),
        preset=kw.pop("preset", "best"),
        caching_agent=kw.pop("caching_agent", None),
        episodes=episodes,
        seed=2,
        allocator=FAST,
        caching={"warmup": 4, "batch_size": 4},
        checkpoint_every=1,
    )
    return train(config, SMALL, tmp_path / name, **kw)


@pytest.mark.parametrize("preset", ["best", "default"])
def test_seeded_training_reproduces_exactly(tmp_path, preset):
    _train(tmp_path, "a", preset=preset)
    _train(tmp_path, "b", preset=preset)
    a = pd.read_csv(tmp_path / "a" / "metrics.csv").drop(columns="wall_s")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(a, b)
    assert a["actor_loss"].notna().sum() >= 2 and a["q_loss"].notna().sum() >= 2  # updates
    # `best` clones the optimiser (no critic); `default` trains the critic of eq. (24)
    assert a["critic_loss"].notna().sum() == (0 if preset == "best" else len(a) - 1)

    from testbed.lab.experiments import plot_training_curves

    curves = plot_training_curves([tmp_path / "a", tmp_path / "b"], tmp_path / "c.png", window=2)
    np.testing.assert_allclose(curves["a"], curves["b"])
    expected = a["mean_slot_reward"].rolling(2, min_periods=1).mean()
    np.testing.assert_allclose(curves["a"], expected)


@pytest.mark.parametrize("preset", ["best", "default"])
def test_resume_continues_an_interrupted_run_exactly(tmp_path, preset):
    _train(tmp_path, "whole", preset=preset)

    def interrupt(row):
        if row["episode"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "cut", on_episode=interrupt, preset=preset)
    assert len(pd.read_csv(tmp_path / "cut" / "metrics.csv")) == 2
    resume(tmp_path / "cut", episodes=4)
    whole = pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(columns="wall_s")
    cut = pd.read_csv(tmp_path / "cut" / "metrics.csv").drop(columns="wall_s")
    pd.testing.assert_frame_equal(whole, cut)


@pytest.mark.parametrize(
    "preset, caching", [("best", "factored"), ("default", "ddqn"), ("best", "ddqn")]
)
def test_checkpoint_is_safetensors_only(tmp_path, preset, caching):
    # ("best", "ddqn"): the paper's DDQN with the greedy credit and counterfactual caches
    _train(tmp_path, "c", episodes=2, preset=preset, caching_agent=caching)
    assert pd.read_csv(tmp_path / "c" / "metrics.csv")["q_loss"].notna().any()
    files = {p.name for p in (tmp_path / "c" / "checkpoint").iterdir()}
    assert files == {
        "networks.safetensors",
        "replay_d3pg.safetensors",
        f"replay_{caching}.safetensors",
        "state.json",
        "manifest.json",
    }
    assert any((tmp_path / "c" / "tb").iterdir())  # TensorBoard events


def test_short_training_beats_the_untrained_policy(tmp_path):
    catalogue = build_catalogue(SMALL.catalogue)
    caching = StaticPopularCaching(SMALL, catalogue)
    eval_config = SMALL.replace(seed=1000)

    def evaluate(run_dir):
        _, allocation = make_policies("t2drl", SMALL, catalogue, run_dir)
        return run(eval_config, caching, allocation, 3, catalogue=catalogue)[0].mean_slot_reward

    _train(tmp_path, "untrained", episodes=1)  # 20 slots: ends before the first update
    _train(tmp_path, "trained", episodes=15)  # 300 slots, ~270 updates
    before, after = evaluate(tmp_path / "untrained"), evaluate(tmp_path / "trained")
    # measured: -66.9 -> -50.4 per slot (the exact optimiser's allocation: -50.6)
    assert after > before + 8.0, (before, after)


def test_quick_experiment_table3_end_to_end(tmp_path):
    from testbed.lab.experiments import run_experiment

    run_experiment("table3", tmp_path, quick=True, log=lambda message: None)
    summary = pd.read_csv(tmp_path / "table3_summary.csv")
    assert set(summary["policy"]) == {"t2drl", "ddpg-t2drl", "schrs", "optimal"}
    assert sorted(summary["users"].unique()) == [10, 12, 14, 16, 18]
    assert (summary["seeds"] == 3).all() and (summary["decision_ms_per_slot"] > 0).all()
    assert (tmp_path / "table3.png").stat().st_size > 0
    assert "| t2drl |" in (tmp_path / "table3.md").read_text()

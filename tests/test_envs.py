"""Both Gymnasium environments: check_env, seeds, amended actions, rewards."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import testbed.sim.envs  # noqa: F401  (registers the environments)
from testbed.core.config import ScenarioConfig
from testbed.core.system_model import amend_cache, cache_size_gb, cache_to_action


@pytest.mark.parametrize("env_id", ["testbed/ResourceAllocation-v0", "testbed/ModelCaching-v0"])
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)


def test_resource_allocation_spaces_and_reproducible_seed():
    env = gym.make("testbed/ResourceAllocation-v0").unwrapped
    assert env.observation_space.shape == (4 * 10 + 10,)  # eq. (21): 4U + M
    assert env.action_space.shape == (20,)
    rng = np.random.default_rng(0)
    actions = rng.random((15, 20)).astype(np.float32)

    def roll(seed):
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for a in actions:
            obs, reward, *_ = env.step(a)
            trace.extend([obs, np.array([reward])])
        return np.concatenate(trace)

    np.testing.assert_array_equal(roll(4), roll(4))
    assert not np.array_equal(roll(4), roll(5))


def test_resource_allocation_amends_and_truncates():
    config = ScenarioConfig().replace(**{"timing.num_frames": 2, "timing.slots_per_frame": 3})
    env = gym.make("testbed/ResourceAllocation-v0", config=config).unwrapped
    _, info = env.reset(seed=1)
    assert set(info["state"]) == {"channel_gain", "services", "cache", "input_bits", "output_bits"}
    served = info["state"]["cache"][info["state"]["services"]]
    steps = 0
    truncated = False
    while not truncated:
        _obs, reward, terminated, truncated, nxt = env.step(np.zeros(2 * config.network.num_users))
        steps += 1
        assert not terminated
        assert np.isclose(nxt["b"].sum(), 1.0)  # (11e), even split for an all-zero action
        assert nxt["xi"].sum() <= 1 + 1e-12 and (nxt["xi"][~served] == 0).all()  # (11f), (11g)
        assert reward < 0 and np.isfinite(reward)
        if not truncated:
            served = nxt["state"]["cache"][nxt["state"]["services"]]
    assert steps == 6


def test_model_caching_reward_is_eq32_with_capacity_penalty():
    env = gym.make("testbed/ModelCaching-v0").unwrapped
    obs, info = env.reset(seed=2)
    assert obs.shape == (1,) and np.isclose([0.2, 0.5, 0.7], obs[0]).sum() == 1  # eq. (30)
    full = 2**10 - 1  # every model: 10 models cannot fit in 20 GB
    _, reward, _, _, info = env.step(full)
    assert not info["cache_fits"]
    assert reward == pytest.approx(info["mean_slot_reward"] - 100.0)
    assert cache_size_gb(amend_cache(full, 10), env.catalogue.size_gb) > 20
    light = cache_to_action(np.array([False] * 9 + [True]))
    _, reward, _, _, info = env.step(light)
    assert info["cache_fits"] and reward == pytest.approx(info["mean_slot_reward"])


def test_model_caching_episode_has_t_frames():
    env = gym.make("testbed/ModelCaching-v0").unwrapped
    env.reset(seed=0)
    frames, truncated = 0, False
    while not truncated:
        *_, truncated, _ = env.step(0)
        frames += 1
    assert frames == 10


def test_cap_steps_amender_leaves_steps_unused():
    env = gym.make("testbed/ResourceAllocation-v0", steps_amender="cap").unwrapped
    _, info = env.reset(seed=3)
    served = info["state"]["cache"][info["state"]["services"]]
    action = np.full(20, 0.01, dtype=np.float32)
    _, _, _, _, nxt = env.step(action)
    np.testing.assert_allclose(nxt["xi"], np.where(served, 0.01, 0.0))  # sum < 1 kept as is
    with pytest.raises(ValueError, match="steps_amender"):
        gym.make("testbed/ResourceAllocation-v0", steps_amender="half")

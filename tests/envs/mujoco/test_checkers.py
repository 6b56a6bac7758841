"""Every MuJoCo task env passes the gymnasium and SB3 checkers, sums its terms, is seeded."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from tests.envs.mujoco.common import MUJOCO_IDS, SIZES

pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space.*infinity")


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_gymnasium_and_sb3_checkers(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env)
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_sizes_horizon_and_registry(env_id):
    env = gym.make(env_id)
    obs_dim, act_dim = SIZES[env_id]
    assert env.observation_space.shape == (obs_dim,)
    assert env.action_space.shape == (act_dim,)
    assert env.spec.max_episode_steps == envs.env_info(env_id).max_episode_steps
    dist = envs.get_task_distribution(env_id)
    assert type(dist) is type(env.unwrapped.distribution)
    assert dist.describe() == env.unwrapped.distribution.describe()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_reward_terms_sum_to_reward(env_id):
    env = gym.make(env_id)
    terms = env.unwrapped.engine.reward_terms
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(15):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert set(terms) <= set(info)
        np.testing.assert_allclose(sum(info[k] for k in terms), reward, rtol=0, atol=1e-12)
        assert "x_velocity" in info
        if terminated or truncated:
            env.reset()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout():
        env = gym.make(env_id)
        obs, info = env.reset(seed=7)
        env.action_space.seed(7)
        out = [obs]
        for _ in range(10):
            obs, reward, terminated, _, _ = env.step(env.action_space.sample())
            out.append(np.append(obs, [reward, terminated]))
        return info["task"], out

    task_a, traj_a = rollout()
    task_b, traj_b = rollout()
    assert task_a == task_b
    for a, b in zip(traj_a, traj_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_task_is_sampled_per_reset_unless_fixed():
    env = gym.make("metarl/HalfCheetahVel-v0")
    tasks = {env.reset(seed=s)[1]["task"] for s in range(3)}
    assert len(tasks) == 3
    fixed = env.unwrapped.sample_tasks(1)[0]
    env.reset(options={"task": fixed})
    assert all(env.reset()[1]["task"] == fixed for _ in range(3))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_sb3_ppo_trains_on_halfcheetah_vel():
    from stable_baselines3 import PPO

    env = gym.make("metarl/HalfCheetahVel-v0")
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.shape == action.shape


@pytest.mark.filterwarnings("ignore:.*(symmetric and normalized|normalized Box action space)")
def test_checkers_pass_with_scaled_actions():
    env = gym.make("metarl/AntDir-v0", action_scale=10.0)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env)

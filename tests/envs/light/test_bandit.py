"""Bernoulli bandits: exact rewards for p in {0, 1}, empirical means, distribution, bad input."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.light.bandit import BanditEngine, BanditTask, BanditTaskDistribution


def test_probabilities_zero_and_one_give_exact_rewards_and_every_pull_terminates():
    env = gym.make("metarl/Bandit-K5-v0")
    task = BanditTask(probs=(0.0, 1.0, 0.0, 1.0, 0.5))
    obs, _ = env.reset(seed=3, options={"task": task})
    assert obs.dtype == np.float32 and obs.tolist() == [0.0]
    for arm in [0, 1, 2, 3] * 5:
        obs, reward, terminated, truncated, info = env.step(arm)
        assert reward == float(arm % 2)
        assert info == {"reward_arm": reward, "expected_reward": float(arm % 2)}
        assert (terminated, truncated, obs.tolist()) == (True, False, [0.0])
        env.reset()


@pytest.mark.parametrize("num_arms", [5, 10, 50])
def test_registered_ids_set_the_number_of_arms(num_arms):
    env = gym.make(f"metarl/Bandit-K{num_arms}-v0")
    assert env.action_space == gym.spaces.Discrete(num_arms)
    assert env.spec.max_episode_steps is None
    _, info = env.reset(seed=0)
    assert len(info["task"].probs) == num_arms


def test_empirical_mean_reward_of_each_arm_matches_its_probability():
    probs = (0.05, 0.3, 0.5, 0.8, 0.97)
    n, pulls = 400, 10  # 4000 pulls of every arm
    engine = BanditEngine(n * 5, num_arms=5)
    engine.seed(list(range(n * 5)))
    engine.set_tasks([BanditTask(probs=probs)] * (n * 5))
    arms = np.repeat(np.arange(5), n)
    rewards = []
    for _ in range(pulls):
        engine.reset(np.arange(n * 5))
        out = engine.step(arms)
        assert out.terminated.all()
        np.testing.assert_array_equal(out.extras["expected_reward"], np.asarray(probs)[arms])
        rewards.append(out.reward)
    means = np.stack(rewards).reshape(pulls, 5, n).mean(axis=(0, 2))
    tolerance = 4 * np.sqrt(np.asarray(probs) * (1 - np.asarray(probs)) / (n * pulls))
    assert np.all(np.abs(means - probs) <= tolerance), (means, probs)
    assert set(np.unique(np.stack(rewards))) == {0.0, 1.0}


def test_reward_is_drawn_from_the_sub_envs_own_generator():
    engine = BanditEngine(2, num_arms=2)
    engine.seed([5, 6])
    engine.set_tasks([BanditTask(probs=(0.5, 0.5))] * 2)
    engine.reset(np.arange(2))
    rewards = np.stack([engine.step(np.array([0, 1])).reward for _ in range(50)])
    for i, seed in enumerate([5, 6]):
        rng = np.random.default_rng(seed)
        expected = [float(rng.random() < 0.5) for _ in range(50)]
        np.testing.assert_array_equal(rewards[:, i], expected)


def test_distribution_draws_probabilities_uniform_on_the_unit_interval():
    tasks = BanditTaskDistribution(num_arms=10).sample(1000, np.random.default_rng(0))
    probs = np.array([t.probs for t in tasks])
    assert probs.shape == (1000, 10)
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    assert probs.mean() == pytest.approx(0.5, abs=0.01)  # 4 sigma = 0.0037
    assert probs.var() == pytest.approx(1 / 12, abs=0.005)


def test_bad_tasks_arguments_and_actions_raise_clear_errors():
    distribution = BanditTaskDistribution(num_arms=3)
    with pytest.raises(ValueError, match=r"'probs' must have shape \(3,\), got shape \(2,\)"):
        distribution.validate(BanditTask(probs=(0.1, 0.2)))
    with pytest.raises(ValueError, match=r"'probs'.*outside the allowed range \[0.0, 1.0\]"):
        distribution.validate(BanditTask(probs=(0.1, 1.2, 0.3)))
    with pytest.raises(TypeError, match="expects a BanditTask"):
        distribution.validate({"probs": (0.1, 0.2, 0.3)})
    with pytest.raises(ValueError, match="num_arms must be >= 1, got 0"):
        BanditEngine(1, num_arms=0)
    with pytest.raises(TypeError, match="num_arms must be an int"):
        gym.make("metarl/Bandit-K5-v0", num_arms=2.0)
    engine = BanditEngine(2, num_arms=3)
    engine.reset(np.arange(2))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 3\), got values from 0 to 3"):
        engine.step(np.array([0, 3]))
    with pytest.raises(ValueError, match="actions must be integers, got dtype float64"):
        engine.step(np.array([0.0, 1.0]))

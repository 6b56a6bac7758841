"""Navigation2D: a hand-computed episode, box termination, the goal distribution, bad input."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.light.navigation import (
    Navigation2DEngine,
    Navigation2DTask,
    Navigation2DTaskDistribution,
)

# Goal (0.2, 0.05); actions are clipped to [-0.1, 0.1] and the reward is measured after the move.
#   t=1: a=(0.5, 0.05)  -> (0.1, 0.05)   s=(0.1, 0.05)   d=(-0.1, 0)     r=-0.1    not done
#   t=2: a=(0.1, -0.3)  -> (0.1, -0.1)   s=(0.2, -0.05)  d=(0, -0.1)     r=-0.1    not done
#   t=3: a=(0.008, 0.5) -> (0.008, 0.1)  s=(0.208, 0.05) d=(0.008, 0)    r=-0.008  done (box)
GOAL = (0.2, 0.05)
ACTIONS = [(0.5, 0.05), (0.1, -0.3), (0.008, 0.5)]
POSITIONS = [(0.1, 0.05), (0.2, -0.05), (0.208, 0.05)]
REWARDS = [-0.1, -0.1, -0.008]
TERMINATED = [False, False, True]


def test_hand_computed_three_step_episode_through_gym_make():
    env = gym.make("metarl/Navigation2D-v0")
    obs, info = env.reset(seed=0, options={"task": Navigation2DTask(goal=GOAL)})
    assert obs.dtype == np.float32 and obs.tolist() == [0.0, 0.0]
    assert info["task"] == Navigation2DTask(goal=GOAL)
    for action, position, reward, terminated in zip(
        ACTIONS, POSITIONS, REWARDS, TERMINATED, strict=True
    ):
        obs, r, term, trunc, info = env.step(np.array(action, dtype=np.float32))
        np.testing.assert_allclose(obs, position, atol=1e-7)
        assert r == pytest.approx(reward, abs=1e-7)
        assert info["reward_distance"] == r
        assert info["distance"] == pytest.approx(-reward, abs=1e-7)
        assert (term, trunc) == (terminated, False)


def test_engine_steps_a_batch_in_one_call_with_per_sub_env_goals():
    engine = Navigation2DEngine(3)
    engine.set_tasks([Navigation2DTask(goal=g) for g in [GOAL, (0.0, 0.0), (-0.5, 0.5)]])
    np.testing.assert_array_equal(engine.reset(np.arange(3)), np.zeros((3, 2), np.float32))
    out = engine.step(np.array([[0.5, 0.05], [0.0, 0.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(out.obs, [[0.1, 0.05], [0.0, 0.0], [-0.1, 0.1]], atol=1e-7)
    np.testing.assert_allclose(out.reward, [-0.1, 0.0, -np.hypot(0.4, 0.4)], atol=1e-12)
    assert out.terminated.tolist() == [False, True, False]
    assert out.obs.dtype == np.float32 and out.reward.dtype == np.float64


def test_termination_is_a_box_not_a_disc():
    engine = Navigation2DEngine(3, success_radius=0.01)
    goals = [(0.009, 0.009), (0.011, 0.0), (0.0, -0.0099)]
    engine.set_tasks([Navigation2DTask(goal=g) for g in goals])
    engine.reset(np.arange(3))
    out = engine.step(np.zeros((3, 2)))
    # (0.009, 0.009) is 0.0127 away, outside a disc of radius 0.01, but inside the box.
    assert out.extras["distance"][0] > 0.01
    assert out.terminated.tolist() == [True, False, True]


def test_position_persists_until_reset_and_reset_returns_to_the_origin():
    engine = Navigation2DEngine(2)
    engine.set_tasks([Navigation2DTask(goal=(0.5, 0.5))] * 2)
    engine.reset(np.arange(2))
    for _ in range(3):
        engine.step(np.full((2, 2), 0.1))
    np.testing.assert_allclose(engine.position, np.full((2, 2), 0.3))
    assert engine.reset(np.array([1])).tolist() == [[0.0, 0.0]]
    np.testing.assert_allclose(engine.position, [[0.3, 0.3], [0.0, 0.0]])


def test_max_action_sets_the_clip_and_the_action_space():
    env = gym.make("metarl/Navigation2D-v0", max_action=0.2)
    np.testing.assert_allclose(env.action_space.low, [-0.2, -0.2])
    np.testing.assert_allclose(env.action_space.high, [0.2, 0.2])
    env.reset(seed=0, options={"task": Navigation2DTask(goal=(0.0, 0.0))})
    obs, *_ = env.step(np.array([1.0, -0.15]))
    np.testing.assert_allclose(obs, [0.2, -0.15], atol=1e-7)


def test_goal_distribution_fills_the_square():
    goals = np.array(
        [t.goal for t in Navigation2DTaskDistribution().sample(4000, np.random.default_rng(0))]
    )
    assert goals.shape == (4000, 2)
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    np.testing.assert_allclose(goals.mean(axis=0), 0.0, atol=0.02)  # 4 sigma = 0.018
    np.testing.assert_allclose(goals.std(axis=0), 1 / np.sqrt(12), atol=0.01)
    custom = Navigation2DTaskDistribution(low=1.0, high=2.0).sample(100, np.random.default_rng(1))
    assert all(1.0 <= x <= 2.0 and 1.0 <= y <= 2.0 for x, y in (t.goal for t in custom))


def test_bad_tasks_and_arguments_raise_clear_errors():
    distribution = Navigation2DTaskDistribution()
    with pytest.raises(ValueError, match=r"'goal'.*outside the allowed range \[-0.5, 0.5\]"):
        distribution.validate(Navigation2DTask(goal=(0.6, 0.0)))
    with pytest.raises(ValueError, match=r"'goal' must have shape \(2,\), got shape \(3,\)"):
        distribution.validate(Navigation2DTask(goal=(0.1, 0.2, 0.3)))
    with pytest.raises(ValueError, match="'goal'"):
        distribution.validate(Navigation2DTask(goal=(float("nan"), 0.0)))
    with pytest.raises(TypeError, match="expects a Navigation2DTask"):
        distribution.validate((0.1, 0.2))
    env = gym.make("metarl/Navigation2D-v0")
    with pytest.raises(ValueError, match="'goal'"):
        env.reset(options={"task": Navigation2DTask(goal=(1.0, 1.0))})
    with pytest.raises(ValueError, match="low must be < high"):
        Navigation2DTaskDistribution(low=0.5, high=0.5)
    with pytest.raises(ValueError, match=r"max_action=0.0 is outside the allowed range \(0.0"):
        Navigation2DEngine(1, max_action=0.0)
    with pytest.raises(ValueError, match="success_radius=-1.0"):
        Navigation2DEngine(1, success_radius=-1.0)
    with pytest.raises(TypeError, match="high must be a number"):
        Navigation2DEngine(1, high="1")


def test_non_finite_actions_are_rejected():
    engine = Navigation2DEngine(2)
    engine.reset(np.arange(2))
    with pytest.raises(ValueError, match="NaN or inf"):
        engine.step(np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        engine.step(np.zeros(4))


def test_stable_baselines3_ppo_trains_a_few_steps():
    from stable_baselines3 import PPO

    env = gym.make("metarl/Navigation2D-v0")
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    action, _ = model.predict(np.zeros(2, dtype=np.float32), deterministic=True)
    assert env.action_space.contains(action)

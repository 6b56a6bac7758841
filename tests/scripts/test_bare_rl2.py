"""scripts/bare_rl2.py, the benchmark's plain RL² loop: its env is HalfCheetahVel, and it trains."""

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bare():
    spec = importlib.util.spec_from_file_location("bare_rl2", ROOT / "scripts" / "bare_rl2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plain_env_steps_as_gymnasium_halfcheetah_with_the_velocity_reward():
    """Same state, same action: gymnasium's HalfCheetah-v5 gives the same observation, and the
    reward is -|v_x - v*| - 0.05 Σa² with gymnasium's own x velocity."""
    bare = _bare()
    env = bare.BareEnv(3, seed=1)
    obs = env.reset()
    ref = gym.make("HalfCheetah-v5").unwrapped
    ref.reset(seed=0)
    actions = np.random.default_rng(2).uniform(-1, 1, (3, 6))
    for i in range(3):
        d = env.datas[i]
        ref.set_state(d.qpos.copy(), d.qvel.copy())
        np.testing.assert_allclose(obs[i], ref._get_obs(), rtol=0, atol=1e-6)
    want_obs, want_reward = [], []
    for i in range(3):
        d = env.datas[i]
        ref.set_state(d.qpos.copy(), d.qvel.copy())
        o, _, _, _, info = ref.step(actions[i])
        want_obs.append(o)
        want_reward.append(-abs(info["x_velocity"] - env.goals[i]) - 0.05 * (actions[i] ** 2).sum())
    got_obs, got_reward = env.step(actions)
    np.testing.assert_allclose(got_obs, np.stack(want_obs), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_reward, want_reward, rtol=1e-6, atol=1e-6)


def test_the_plain_rl2_loop_runs_iterations_of_the_env_rounds_size():
    bare = _bare()
    torch.manual_seed(0)
    run = bare.bare_rl2_round(
        4,
        2,
        10,
        1,
        hidden=8,
        gamma=0.97,
        lam=0.9,
        epochs=2,
        minibatches=2,
        bptt=5,
        clip=0.1,
        lr=1e-2,
    )
    steps, seconds = run()
    assert steps == 4 * 2 * 10 and seconds > 0
    env_steps, _ = bare.random_env_round(4, 2, 10, 1)()
    assert env_steps == steps

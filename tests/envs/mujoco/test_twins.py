"""Trusted twins: gymnasium v5 envs, and single engines vs one batched engine."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.mujoco import (
    AntDirEngine,
    AntGoalEngine,
    DirectionTask,
    GoalTask,
    GoalVelocityTask,
    HalfCheetahVelEngine,
)
from tests.envs.mujoco.common import HOPPER, WALKER, new_engine, started_engine

V5_TWINS = [
    # our id, v5 id, v5 kwargs matching our reward weights, our task (None: unit dynamics)
    (
        "metarl/HalfCheetahVel-v0",
        "HalfCheetah-v5",
        {"ctrl_cost_weight": 0.05},
        GoalVelocityTask(1.0),
    ),
    (
        "metarl/AntDir-v0",
        "Ant-v5",
        {"ctrl_cost_weight": 0.005, "healthy_reward": 0.05},
        DirectionTask(1.0),
    ),
    ("metarl/HopperRandParams-v0", "Hopper-v5", {}, None),
    ("metarl/Walker2DRandParams-v0", "Walker2d-v5", {}, None),
]


@pytest.mark.parametrize(("env_id", "v5_id", "v5_kwargs", "task"), V5_TWINS)
def test_observations_match_gymnasium_v5(env_id, v5_id, v5_kwargs, task):
    ours, ref = gym.make(env_id), gym.make(v5_id, **v5_kwargs)
    if task is None:
        task = ours.unwrapped.distribution.unit_task()
    obs, _ = ours.reset(seed=3, options={"task": task})
    ref_obs, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    rng = np.random.default_rng(0)
    for _ in range(25):
        action = rng.uniform(-1, 1, ours.action_space.shape).astype(np.float32)
        obs, _, terminated, _, info = ours.step(action)
        ref_obs, _, ref_terminated, _, ref_info = ref.step(action)
        np.testing.assert_array_equal(obs, ref_obs)
        assert terminated == ref_terminated
        assert info["x_velocity"] == ref_info["x_velocity"]
        np.testing.assert_allclose(info["reward_ctrl"], ref_info["reward_ctrl"], rtol=1e-6)
        if "reward_contact" in ref_info:
            np.testing.assert_allclose(
                info["reward_contact"], ref_info["reward_contact"], rtol=1e-12
            )
        if terminated:
            break


def test_ant_goal_observation_keeps_xy_like_v5_option():
    ours = gym.make("metarl/AntGoal-v0")
    ref = gym.make("Ant-v5", exclude_current_positions_from_observation=False)
    obs, _ = ours.reset(seed=4, options={"task": GoalTask((1.0, 1.0))})
    np.testing.assert_array_equal(obs, ref.reset(seed=4)[0])
    action = np.full(8, 0.3, dtype=np.float32)
    np.testing.assert_array_equal(ours.step(action)[0], ref.step(action)[0])


def test_half_cheetah_torso_com_option_gives_pytorch_maml_rl_layout():
    engine = started_engine(HalfCheetahVelEngine, [GoalVelocityTask(0.5)], include_torso_com=True)
    out = engine.step(np.full((1, 6), 0.2))
    data = engine.datas[0]
    expected = np.concatenate([data.qpos[1:], data.qvel, data.xpos[1]])
    assert engine.observation_space.shape == (20,)
    np.testing.assert_array_equal(out.obs[0], expected)


BATCH_CASES = [
    (HalfCheetahVelEngine, lambda rng, n: [GoalVelocityTask(x) for x in rng.uniform(0, 2, n)]),
    (AntDirEngine, lambda rng, n: [DirectionTask(float(d)) for d in rng.choice([-1.0, 1.0], n)]),
    (AntGoalEngine, lambda rng, n: [GoalTask(tuple(g)) for g in rng.uniform(-3, 3, (n, 2))]),
    (HOPPER, lambda rng, n: envs.get_task_distribution(HOPPER).sample(n, rng)),
    (WALKER, lambda rng, n: envs.get_task_distribution(WALKER).sample(n, rng)),
]


def run_split(engine_cls, tasks, actions, sizes):
    """Steps len(tasks) sub-envs split into engines of ``sizes``; resets terminated sub-envs."""
    engines, start = [], 0
    for size in sizes:
        engine = new_engine(engine_cls, size)
        engine.seed([100 + start + i for i in range(size)])
        engine.set_tasks(tasks[start : start + size])
        engines.append((start, engine))
        start += size
    record = [np.concatenate([e.reset(np.arange(e.num_envs)) for _, e in engines])]
    for step_actions in actions:
        outs = []
        for first, engine in engines:
            out = engine.step(step_actions[first : first + engine.num_envs])
            obs = out.obs.copy()
            done = np.flatnonzero(out.terminated)
            if done.size:
                obs[done] = engine.reset(done)
            outs.append(np.column_stack([obs, out.reward, out.terminated]))
        record.append(np.concatenate(outs))
    return record[0], np.stack(record[1:])


@pytest.mark.parametrize(("engine_cls", "make_tasks"), BATCH_CASES)
def test_batched_engine_equals_single_engines_and_any_split(engine_cls, make_tasks):
    rng = np.random.default_rng(0)
    n = 4
    tasks = make_tasks(rng, n)
    nu = new_engine(engine_cls, 1).model.nu
    actions = rng.uniform(-1, 1, (12, n, nu))
    batched = run_split(engine_cls, tasks, actions, [n])
    singles = run_split(engine_cls, tasks, actions, [1] * n)
    halves = run_split(engine_cls, tasks, actions, [1, 3])
    for other in (singles, halves):
        np.testing.assert_array_equal(batched[0], other[0])
        np.testing.assert_array_equal(batched[1], other[1])


def test_env_equals_engine_sub_env():
    """The gymnasium env is the engine with one sub-env: same seed and task, same numbers."""
    task = GoalVelocityTask(1.1)
    env = gym.make("metarl/HalfCheetahVel-v0")
    obs, _ = env.reset(seed=9, options={"task": task})
    engine = started_engine(HalfCheetahVelEngine, [task], seed=9)
    np.testing.assert_array_equal(obs, engine._observe(np.arange(1))[0])
    action = np.linspace(-1, 1, 6).astype(np.float32)
    obs, reward, *_ = env.step(action)
    out = engine.step(action[None])
    np.testing.assert_array_equal(obs, out.obs[0])
    assert reward == out.reward[0]

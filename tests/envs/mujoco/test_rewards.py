"""Known answers: each reward formula recomputed by hand from a real MuJoCo step."""

from __future__ import annotations

import copy

import mujoco
import numpy as np
import pytest

import envs
from envs.mujoco import (
    AntDir2DEngine,
    AntDirEngine,
    AntGoalEngine,
    AntVelEngine,
    Direction2DTask,
    DirectionTask,
    GoalTask,
    GoalVelocityTask,
    HalfCheetahDirEngine,
    HalfCheetahVelEngine,
)
from tests.envs.mujoco.common import HOPPER, WALKER, started_engine

ACTION_RNG_SEED = 5


def warm_engine(engine_cls, task, steps=8, **kwargs):
    """A 1-sub-env engine a few random steps into an episode, and the next action to take."""
    engine = started_engine(engine_cls, [task], seed=3, **kwargs)
    rng = np.random.default_rng(ACTION_RNG_SEED)
    for _ in range(steps):
        engine.step(rng.uniform(-1, 1, (1, engine.model.nu)))
    return engine, rng.uniform(-1, 1, engine.model.nu)


def hand_step(engine, action, model=None, post_constraint=False):
    """Copies sub-env 0's full MjData, steps the copy by hand; returns (before, after) copies."""
    model = engine.model if model is None else model
    before = copy.copy(engine.datas[0])  # an independent MjData (no mj_copyData in mujoco 3.3)
    after = copy.copy(before)
    after.ctrl[:] = action
    mujoco.mj_step(model, after, nstep=engine.frame_skip)
    if post_constraint:
        mujoco.mj_rnePostConstraint(model, after)
    return before, after


def assert_terms(out, expected):
    for name, value in expected.items():
        np.testing.assert_allclose(out.reward_terms[name][0], value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.reward[0], sum(expected.values()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("engine_cls", "task", "forward"),
    [
        (HalfCheetahVelEngine, GoalVelocityTask(1.3), lambda v: -abs(v - 1.3)),
        (HalfCheetahDirEngine, DirectionTask(-1.0), lambda v: -v),
    ],
)
def test_half_cheetah_reward_by_hand(engine_cls, task, forward):
    engine, action = warm_engine(engine_cls, task)
    before, after = hand_step(engine, action)
    out = engine.step(action[None])
    dt = 0.01 * 5
    v = (after.qpos[0] - before.qpos[0]) / dt
    assert_terms(out, {"reward_forward": forward(v), "reward_ctrl": -0.05 * np.sum(action**2)})
    np.testing.assert_array_equal(out.obs[0], np.concatenate([after.qpos[1:], after.qvel]))
    assert out.extras["x_velocity"][0] == pytest.approx(v, rel=1e-12)
    assert not out.terminated[0]


ANT_CASES = [
    # engine, task, kwargs, task term of (xy velocity, xy after), ctrl w, survive, forward key
    (AntVelEngine, GoalVelocityTask(0.7), {}, lambda v, p: -abs(v[0] - 0.7) + 1.0, 0.005, 0.05),
    (AntDirEngine, DirectionTask(-1.0), {}, lambda v, p: -v[0], 0.005, 0.05),
    (
        AntDir2DEngine,
        Direction2DTask((0.6, -0.8)),
        {},
        lambda v, p: 0.6 * v[0] - 0.8 * v[1],
        0.5,
        1.0,
    ),
    (
        AntGoalEngine,
        GoalTask((1.5, -2.0)),
        {},
        lambda v, p: -(abs(p[0] - 1.5) + abs(p[1] + 2.0)) + 4.0,
        0.005,
        0.05,
    ),
]


@pytest.mark.parametrize(
    ("engine_cls", "task", "kwargs", "forward", "w_ctrl", "survive"), ANT_CASES
)
def test_ant_reward_by_hand(engine_cls, task, kwargs, forward, w_ctrl, survive):
    engine, action = warm_engine(engine_cls, task, **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(100):  # advance to a step with floor contacts, so the contact term is exercised
        before, after = hand_step(engine, action, post_constraint=True)
        if np.any(after.cfrc_ext):
            break
        engine.step(action[None])
        action = rng.uniform(-1, 1, 8)
    out = engine.step(action[None])
    xy_before, xy_after = before.xpos[1, :2].copy(), after.xpos[1, :2].copy()
    v = (xy_after - xy_before) / (0.01 * 5)
    clipped = np.clip(after.cfrc_ext, -1.0, 1.0)
    contact = -5e-4 * np.sum(clipped**2)
    assert contact < 0
    key = engine.reward_terms[0]
    expected = {
        key: forward(v, xy_after),
        "reward_ctrl": -w_ctrl * np.sum(action**2),
        "reward_contact": contact,
        "reward_survive": survive,
    }
    assert_terms(out, expected)
    start = 0 if engine_cls is AntGoalEngine else 2
    obs = np.concatenate([after.qpos[start:], after.qvel, clipped[1:].ravel()])
    np.testing.assert_array_equal(out.obs[0], obs)
    np.testing.assert_allclose(out.extras["x_velocity"][0], v[0], rtol=1e-12)
    np.testing.assert_allclose(out.extras["y_velocity"][0], v[1], rtol=1e-12)


@pytest.mark.parametrize("env_id", [HOPPER, WALKER])
def test_rand_params_reward_by_hand_on_scaled_model(env_id):
    dist = envs.get_task_distribution(env_id)
    task = dist.sample(1, np.random.default_rng(11))[0]
    engine, action = warm_engine(env_id, task, steps=3)
    # Scale a fresh copy of the model by hand from the XML's own values.
    model = mujoco.MjModel.from_xml_path(str(engine.xml_path))
    for name in ("body_mass", "body_inertia", "dof_damping", "geom_friction"):
        getattr(model, name)[:] = getattr(model, name) * np.asarray(getattr(task, name))
        np.testing.assert_array_equal(getattr(engine.models[0], name), getattr(model, name))
    before, after = hand_step(engine, action, model=model)
    out = engine.step(action[None])
    v = (after.qpos[0] - before.qpos[0]) / (0.002 * 4)
    expected = {
        "reward_forward": v,
        "reward_ctrl": -1e-3 * np.sum(action**2),
        "reward_survive": 1.0,
    }
    assert_terms(out, expected)
    obs = np.concatenate([after.qpos[1:], np.clip(after.qvel, -10, 10)])
    np.testing.assert_array_equal(out.obs[0], obs)


def test_survive_only_when_healthy_follows_gymnasium_v5():
    engine = started_engine(AntDirEngine, [DirectionTask(1.0)] * 2, survive_only_when_healthy=True)
    qpos = engine.init_qpos.copy()
    qpos[2] = 1.3  # above the healthy range [0.2, 1.0]
    engine.set_state(1, qpos, np.zeros(engine.model.nv))
    out = engine.step(np.zeros((2, 8)))
    np.testing.assert_array_equal(out.reward_terms["reward_survive"], [0.05, 0.0])
    np.testing.assert_array_equal(out.terminated, [False, True])


def test_action_scale_maps_policy_actions_onto_controls():
    """pytorch-maml-rl's convention: with action_scale=10 the env sees clip(a, -10, 10) / 10."""
    task = GoalVelocityTask(1.0)
    plain = started_engine(HalfCheetahVelEngine, [task])
    scaled = started_engine(HalfCheetahVelEngine, [task], action_scale=10.0)
    assert scaled.action_space.low.min() == -10.0 and scaled.action_space.high.max() == 10.0
    policy_action = np.array([[5.0, -3.0, 20.0, 0.0, -10.0, 1.0]])
    out_scaled = scaled.step(policy_action)
    out_plain = plain.step(np.clip(policy_action, -10, 10) / 10)
    np.testing.assert_allclose(scaled.datas[0].ctrl, plain.datas[0].ctrl, rtol=0, atol=1e-15)
    # The linear map differs from a / 10 by rounding only.
    np.testing.assert_allclose(out_scaled.obs, out_plain.obs, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out_scaled.reward, out_plain.reward, rtol=1e-9)

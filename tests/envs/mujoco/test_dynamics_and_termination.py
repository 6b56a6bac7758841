"""RandParams change the model; termination rules; engine misuse errors."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.mujoco import (
    AntDirEngine,
    DirectionTask,
    GoalVelocityTask,
    HalfCheetahVelEngine,
)
from envs.mujoco.rand_params import RAND_PARAMS
from tests.envs.mujoco.common import HOPPER, WALKER, started_engine


def scaled_mass_task(dist, factor):
    unit = dist.unit_task().to_dict()
    unit["body_mass"] = [factor] * len(unit["body_mass"])
    return type(dist.unit_task()).from_dict(unit)


def test_rand_params_scale_the_model_and_restore_originals():
    dist = envs.get_task_distribution(HOPPER)
    task = dist.sample(1, np.random.default_rng(3))[0]
    engine = started_engine(HOPPER, [task, dist.unit_task()])
    original = engine.model  # the engine's pristine model is never modified
    for name in RAND_PARAMS:
        expected = getattr(original, name) * np.asarray(getattr(task, name))
        np.testing.assert_array_equal(getattr(engine.models[0], name), expected)
        np.testing.assert_array_equal(getattr(engine.models[1], name), getattr(original, name))
    # A new task multiplies the originals, not the previous task's values.
    engine.set_tasks([dist.unit_task()], indices=[0])
    engine.reset(np.array([0]))
    for name in RAND_PARAMS:
        np.testing.assert_array_equal(getattr(engine.models[0], name), getattr(original, name))


def test_mass_scale_changes_total_mass_and_dynamics():
    dist = envs.get_task_distribution(HOPPER)
    heavy = scaled_mass_task(dist, 3.0)
    engine = started_engine(HOPPER, [dist.unit_task(), heavy], seed=0)
    engine.seed([0, 0])
    engine.reset(np.arange(2))  # same seed: identical start states
    np.testing.assert_array_equal(engine.state["qpos"][0], engine.state["qpos"][1])
    assert engine.models[1].body_mass.sum() == pytest.approx(3 * engine.model.body_mass.sum())
    actions = np.full((2, 3), 0.8)
    for _ in range(5):
        out = engine.step(actions)
    assert np.abs(out.obs[0] - out.obs[1]).max() > 1e-3


def test_different_sampled_tasks_give_different_trajectories():
    dist = envs.get_task_distribution(WALKER)
    tasks = dist.sample(2, np.random.default_rng(0))
    engine = started_engine(WALKER, tasks)
    engine.seed([1, 1])
    engine.reset(np.arange(2))
    for _ in range(5):
        out = engine.step(np.full((2, 6), 0.5))
    assert np.abs(out.obs[0] - out.obs[1]).max() > 1e-3


def test_recompute_constants_option_updates_derived_model_fields():
    dist = envs.get_task_distribution(HOPPER)
    heavy = scaled_mass_task(dist, 2.0)
    engine = started_engine(HOPPER, [heavy], recompute_constants=True)
    np.testing.assert_allclose(
        engine.models[0].body_subtreemass[0], 2 * engine.model.body_subtreemass[0], rtol=1e-12
    )
    engine.step(np.zeros((1, 3)))


def test_ant_terminates_when_torso_leaves_healthy_range():
    engine = started_engine(AntDirEngine, [DirectionTask(1.0)] * 3)
    never = started_engine(AntDirEngine, [DirectionTask(1.0)], terminate_when_unhealthy=False)
    high = engine.init_qpos.copy()
    high[2] = 1.3  # torso above 1.0
    engine.set_state(1, high, np.zeros(14))
    never.set_state(0, high, np.zeros(14))
    out = engine.step(np.zeros((3, 8)))
    np.testing.assert_array_equal(out.terminated, [False, True, False])
    assert engine.state["qpos"][1, 2] > 1.0
    assert not never.step(np.zeros((1, 8))).terminated[0]


@pytest.mark.parametrize(
    ("index", "value", "terminated"),
    [(1, 0.6, True), (1, 1.25, False), (2, 0.21, True), (2, -0.21, True), (2, 0.15, False)],
)
def test_hopper_height_and_angle_termination(index, value, terminated):
    dist = envs.get_task_distribution(HOPPER)
    engine = started_engine(HOPPER, [dist.unit_task()])
    qpos = engine.init_qpos.copy()
    qpos[index] = value
    engine.set_state(0, qpos, np.zeros(6))
    out = engine.step(np.zeros((1, 3)))
    height, angle = engine.state["qpos"][0, 1:3]
    assert out.terminated[0] == terminated
    assert out.terminated[0] == (not (height > 0.7 and abs(angle) < 0.2))


def test_hopper_state_bound_terminates_and_observation_clips_velocities():
    dist = envs.get_task_distribution(HOPPER)
    tight = started_engine(HOPPER, [dist.unit_task()], healthy_state_range=(-2, 2))
    default = started_engine(HOPPER, [dist.unit_task()])
    qvel = np.zeros(6)
    qvel[0] = 30.0  # forward velocity: inside (-100, 100), outside (-2, 2)
    for engine in (tight, default):
        engine.set_state(0, engine.init_qpos, qvel)
    out_tight, out_default = tight.step(np.zeros((1, 3))), default.step(np.zeros((1, 3)))
    assert out_tight.terminated[0] and not out_default.terminated[0]
    assert default.state["qvel"][0, 0] > 10.0
    assert out_default.obs[0, 5] == 10.0  # qvel is clipped to +-10 in the observation


def test_walker_terminates_outside_height_and_angle_ranges():
    dist = envs.get_task_distribution(WALKER)
    engine = started_engine(WALKER, [dist.unit_task()] * 2)
    tilted = engine.init_qpos.copy()
    tilted[2] = 1.2
    engine.set_state(1, tilted, np.zeros(9))
    np.testing.assert_array_equal(engine.step(np.zeros((2, 6))).terminated, [False, True])


def test_engine_misuse_errors():
    engine = HalfCheetahVelEngine(2)
    with pytest.raises(RuntimeError, match="reset"):
        engine.step(np.zeros((2, 6)))
    engine.set_tasks([GoalVelocityTask(1.0)] * 2)
    engine.reset(np.arange(2))
    with pytest.raises(ValueError, match=r"shape \(2, 6\)"):
        engine.step(np.zeros((1, 6)))
    with pytest.raises(ValueError, match="indices"):
        engine.reset(np.array([2]))


def test_new_task_takes_effect_at_next_reset():
    engine = started_engine(HalfCheetahVelEngine, [GoalVelocityTask(0.0)])
    engine.set_tasks([GoalVelocityTask(2.0)])
    x_velocity = engine.step(np.zeros((1, 6))).extras["x_velocity"]
    out = engine.step(np.zeros((1, 6)))
    np.testing.assert_allclose(
        out.reward_terms["reward_forward"], -np.abs(out.extras["x_velocity"])
    )
    engine.reset(np.arange(1))
    out = engine.step(np.zeros((1, 6)))
    np.testing.assert_allclose(
        out.reward_terms["reward_forward"], -np.abs(out.extras["x_velocity"] - 2.0)
    )
    assert x_velocity.shape == (1,)

"""Task records and distributions: sampling laws, fixed splits, validation errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.mujoco import (
    AntDir2DEngine,
    AntGoalEngine,
    AntVelEngine,
    Direction2DDistribution,
    Direction2DTask,
    DirectionDistribution,
    DirectionTask,
    DynamicsTask,
    GoalDistribution,
    GoalTask,
    GoalVelocityDistribution,
    GoalVelocityTask,
    HalfCheetahVelEngine,
)
from tests.envs.mujoco.common import HOPPER


def test_goal_velocity_ranges_and_describe():
    rng = np.random.default_rng(0)
    cheetah = envs.get_task_distribution("metarl/HalfCheetahVel-v0")
    ant = envs.get_task_distribution("metarl/AntVel-v0")
    assert cheetah.describe() == {"goal_velocity": "U[0.0, 2.0]"}
    assert ant.describe() == {"goal_velocity": "U[0.0, 3.0]"}
    values = np.array([t.goal_velocity for t in cheetah.sample(500, rng)])
    assert values.min() >= 0.0 and values.max() <= 2.0 and values.max() > 1.9
    assert envs.get_task_distribution("metarl/HalfCheetahVel-v0", high=3.0).high == 3.0


def test_direction_distribution_has_both_directions_as_fixed_splits():
    dist = DirectionDistribution()
    both = [DirectionTask(-1.0), DirectionTask(1.0)]
    assert dist.split_tasks("train") == both
    assert dist.split_tasks("test") == both
    draws = [t.direction for t in dist.sample(400, np.random.default_rng(0))]
    assert set(draws) == {-1.0, 1.0}
    assert 0.4 < np.mean(np.asarray(draws) > 0) < 0.6


@pytest.mark.parametrize("sampling", ["normal", "angle"])
def test_direction_2d_draws_unit_vectors_with_uniform_angle(sampling):
    dist = Direction2DDistribution(direction_sampling=sampling)
    dirs = np.array([t.direction for t in dist.sample(2000, np.random.default_rng(1))])
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, rtol=1e-12)
    angles = np.arctan2(dirs[:, 1], dirs[:, 0])
    counts, _ = np.histogram(angles, bins=4, range=(-np.pi, np.pi))
    assert counts.min() > 420  # ~500 per quadrant


def test_goal_square_and_disc():
    rng = np.random.default_rng(2)
    square = np.array([t.goal for t in GoalDistribution().sample(1000, rng)])
    assert np.abs(square).max() <= 3.0 and np.abs(square).max() > 2.9
    disc = np.array([t.goal for t in GoalDistribution(goal_sampling="disc").sample(4000, rng)])
    radii = np.linalg.norm(disc, axis=1)
    assert radii.max() <= 3.0
    # Uniform over the area: P(r < 1.5) = 1/4.
    assert 0.22 < np.mean(radii < 1.5) < 0.28
    assert GoalDistribution(goal_sampling="disc").describe() == {
        "goal": "uniform on the disc of radius 3.0"
    }


def test_fixed_train_test_sets_like_pearl():
    dist = GoalVelocityDistribution(high=3.0, num_train_tasks=100, num_test_tasks=30)
    train, test = dist.split_tasks("train"), dist.split_tasks("test")
    assert len(train) == 100 and len(test) == 30 and not set(train) & set(test)
    assert set(dist.sample(10, np.random.default_rng(0), split="test")) <= set(test)
    # The registry passes the split arguments through, and the env validates against them.
    registered = envs.get_task_distribution("metarl/HopperRandParams-v0", num_train_tasks=40)
    assert len(registered.split_tasks("train")) == 40
    env = gym.make("metarl/AntGoal-v0", goal_sampling="disc", num_test_tasks=30)
    assert len(env.unwrapped.distribution.split_tasks("test")) == 30


@pytest.mark.parametrize(
    ("distribution", "task", "error", "match"),
    [
        (
            GoalVelocityDistribution(),
            GoalVelocityTask(5.0),
            ValueError,
            r"goal_velocity.*\[0.0, 2.0\]",
        ),
        (GoalVelocityDistribution(), DirectionTask(1.0), TypeError, "GoalVelocityTask"),
        (DirectionDistribution(), DirectionTask(0.5), ValueError, "direction"),
        (Direction2DDistribution(), Direction2DTask((1.0, 1.0)), ValueError, "direction.*unit"),
        (
            Direction2DDistribution(),
            Direction2DTask((1.0, 0.0, 0.0)),
            ValueError,
            "direction.*shape",
        ),
        (GoalDistribution(), GoalTask((3.5, 0.0)), ValueError, r"goal.*\[-3.0, 3.0\]"),
        (GoalDistribution(goal_sampling="disc"), GoalTask((2.5, 2.5)), ValueError, "goal.*disc"),
    ],
)
def test_bad_tasks_raise_naming_the_parameter(distribution, task, error, match):
    with pytest.raises(error, match=match):
        distribution.validate(task)


def test_env_rejects_out_of_range_task():
    env = gym.make("metarl/HalfCheetahVel-v0")
    with pytest.raises(ValueError, match="goal_velocity"):
        env.reset(options={"task": GoalVelocityTask(5.0)})
    engine = AntGoalEngine(2)
    with pytest.raises(ValueError, match="goal"):
        engine.set_tasks([GoalTask((0.0, 0.0)), GoalTask((0.0, 9.0))])


def test_dynamics_task_with_wrong_shape_raises_naming_the_parameter():
    dist = envs.get_task_distribution(HOPPER)
    good = dist.unit_task()
    bad = DynamicsTask(
        body_mass=(1.0, 1.0),
        body_inertia=good.body_inertia,
        dof_damping=good.dof_damping,
        geom_friction=good.geom_friction,
    )
    with pytest.raises(ValueError, match=r"body_mass.*shape \(5,\)"):
        dist.validate(bad)
    too_big = DynamicsTask(**{**good.to_dict(), "dof_damping": (1.0, 1.0, 1.0, 3.0, 1.0, 1.0)})
    with pytest.raises(ValueError, match=r"dof_damping.*range \[0.455"):
        dist.validate(too_big)


def test_tasks_round_trip_through_dicts():
    rng = np.random.default_rng(0)
    for dist in (
        HalfCheetahVelEngine.make_distribution(),
        AntDir2DEngine.make_distribution(),
        AntGoalEngine.make_distribution(),
        envs.get_task_distribution(HOPPER),
    ):
        task = dist.sample(1, rng)[0]
        assert type(task).from_dict(task.to_dict()) == task
        hash(task)


def test_unknown_constructor_argument_is_rejected_with_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown argument.*'hihg'.*high"):
        AntVelEngine(1, hihg=2.0)
    with pytest.raises(ValueError, match="frame_skip"):
        HalfCheetahVelEngine(1, frame_skip=0)
    with pytest.raises(ValueError, match="goal_sampling"):
        AntGoalEngine(1, goal_sampling="circle")

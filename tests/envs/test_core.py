"""Tasks, task distributions, the single task env and the registry."""

import dataclasses

import numpy as np
import pytest

import envs
from envs.core import check_range, check_vector
from tests.helpers.counting_env import CounterDistribution, CounterEnv, CounterTask


@dataclasses.dataclass(frozen=True)
class _VectorTask(envs.Task):
    goal: tuple[float, float]


def test_task_is_frozen_hashable_and_round_trips_through_a_dict():
    task = _VectorTask(np.array([0.5, -1.0]))
    assert task.goal == (0.5, -1.0) and isinstance(task.goal, tuple)
    assert hash(task) == hash(_VectorTask((0.5, -1.0)))
    assert task.to_dict() == {"goal": [0.5, -1.0]}
    assert _VectorTask.from_dict(task.to_dict()) == task
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.goal = (0.0, 0.0)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gaol'\]"):
        _VectorTask.from_dict({"gaol": [0, 0]})
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['goal'\]"):
        _VectorTask.from_dict({})


def test_range_checks_name_the_parameter_value_and_range():
    assert check_range("goal_velocity", 1, 0.0, 2.0) == 1.0
    with pytest.raises(
        ValueError, match=r"'goal_velocity'=2.5 is outside the allowed range \[0.0, 2.0\]"
    ):
        check_range("goal_velocity", 2.5, 0.0, 2.0)
    with pytest.raises(ValueError, match="must be a number"):
        check_range("goal_velocity", "fast", 0.0, 2.0)
    with pytest.raises(ValueError, match=r"'goal_velocity'=nan"):
        check_range("goal_velocity", float("nan"), 0.0, 2.0)
    with pytest.raises(ValueError, match=r"'goal' must have shape \(2,\), got shape \(3,\)"):
        check_vector("goal", (1, 2, 3), (2,))
    with pytest.raises(ValueError, match=r"'goal'=.*outside the allowed range \[-0.5, 0.5\]"):
        check_vector("goal", (0.1, 0.9), (2,), -0.5, 0.5)


def test_distribution_sampling_is_seeded_and_splits_are_fixed():
    dist = CounterDistribution(num_train_tasks=5, num_test_tasks=3, split_seed=4)
    a = dist.sample(4, np.random.default_rng(0))
    assert a == dist.sample(4, np.random.default_rng(0))
    assert a != dist.sample(4, np.random.default_rng(1))
    train, test = dist.split_tasks("train"), dist.split_tasks("test")
    assert len(train) == 5 and len(test) == 3 and not set(train) & set(test)
    assert train == CounterDistribution(
        num_train_tasks=5, num_test_tasks=3, split_seed=4
    ).split_tasks("train")
    assert set(dist.sample(20, np.random.default_rng(0), split="test")) <= set(test)
    with pytest.raises(ValueError, match="no fixed 'train' task set"):
        CounterDistribution().split_tasks("train")
    with pytest.raises(ValueError, match="split must be"):
        dist.split_tasks("validation")
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        dist.sample(2, 0)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        dist.sample(-1, np.random.default_rng(0))


def test_task_env_keeps_a_set_task_and_samples_one_otherwise():
    env = CounterEnv(start_noise=0.0)
    obs, info = env.reset(seed=0)
    first = info["task"]
    _, info = env.reset()
    assert info["task"] != first  # no task set: every episode samples its own
    obs, info = env.reset(options={"task": CounterTask(0.25)})
    assert obs[1] == 0.25 and env.task == CounterTask(0.25)
    _, info = env.reset()
    assert info["task"] == CounterTask(0.25)
    obs, reward, term, trunc, info = env.step(np.array([0.5], dtype=np.float32))
    assert reward == pytest.approx(0.75) and not term and not trunc
    assert info["reward_half_a"] + info["reward_half_b"] == pytest.approx(reward)
    with pytest.raises(ValueError, match="'drift'=3.0 is outside"):
        env.set_task(CounterTask(3.0))
    with pytest.raises(TypeError, match="expects a CounterTask"):
        env.reset(options={"task": _VectorTask((0.0, 0.0))})
    env.set_task(None)
    _, info = env.reset()
    assert info["task"] != CounterTask(0.25)


def test_registry_lists_every_env_and_rejects_unknown_ids():
    ids = envs.task_env_ids()
    for name in [
        "HalfCheetahVel",
        "HalfCheetahDir",
        "AntDir",
        "AntDir2D",
        "AntVel",
        "AntGoal",
        "HopperRandParams",
        "Walker2DRandParams",
        "Navigation2D",
        "TabularMDP",
    ]:
        assert f"metarl/{name}-v0" in ids
    assert {"metarl/Bandit-K5-v0", "metarl/Bandit-K10-v0", "metarl/Bandit-K50-v0"} <= set(ids)
    with pytest.raises(ValueError, match="unknown task env id 'metarl/Nope-v0'"):
        envs.get_task_distribution("metarl/Nope-v0")


def test_constructor_checks_name_the_argument_value_and_range():
    from envs.checks import check_interval, check_low_high, check_number, check_positive_int

    assert check_number("weight", 2, 0.0) == 2.0
    with pytest.raises(ValueError, match=r"scale=0.0 is outside the allowed range \(0.0, inf\]"):
        check_number("scale", 0.0, 0.0, open_low=True)
    with pytest.raises(TypeError, match="weight must be a number, got bool: True"):
        check_number("weight", True)
    with pytest.raises(ValueError, match=r"num_arms must be >= 1, got 0"):
        check_positive_int("num_arms", 0)
    with pytest.raises(TypeError, match="num_arms must be an int, got float: 2.0"):
        check_positive_int("num_arms", 2.0)
    assert check_interval("healthy_z_range", (0.7, float("inf"))) == (0.7, float("inf"))
    with pytest.raises(ValueError, match=r"healthy_z_range=\(2, 1\) must satisfy low <= high"):
        check_interval("healthy_z_range", (2, 1))
    assert check_low_high(1, 1) == (1.0, 1.0)
    with pytest.raises(ValueError, match="low must be < high, got low=1.0, high=1.0"):
        check_low_high(1, 1, strict=True)
    with pytest.raises(ValueError, match=r"high=inf is outside the allowed range"):
        check_low_high(0.0, float("inf"))


@pytest.mark.parametrize("env_id", envs.task_env_ids())
def test_each_distribution_declares_exactly_its_constructor_options(env_id):
    # The registry and the engines pick a distribution's arguments out of an env's kwargs by
    # these names, so they must be the constructor's keyword arguments.
    import inspect

    cls = envs.get_engine_class(env_id).distribution_cls
    split = {"num_train_tasks", "num_test_tasks", "split_seed"}
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    assert set(cls.options) == params - split
    assert set(cls.option_names()) == params | split


def test_one_env_class_per_engine_with_the_engine_metadata_and_the_ids_defaults():
    import pickle

    import gymnasium as gym

    hopper, walker = "metarl/HopperRandParams-v0", "metarl/Walker2DRandParams-v0"
    assert envs.get_env_class(hopper) is envs.get_env_class(walker)  # one RandParamsEngine
    assert envs.get_env_class(hopper).metadata["render_fps"] == 125
    assert envs.get_env_class("metarl/Bandit-K5-v0").metadata["render_modes"] == ["rgb_array"]
    env = gym.make(walker)
    assert env.unwrapped.engine.xml_path.name == "walker2d_v5.xml"
    assert env.observation_space.shape == (17,)
    assert envs.make_engine(hopper, 2, healthy_angle_range=(-1, 1)).healthy_angle_range == (-1, 1)
    env = gym.make("metarl/Navigation2D-v0", max_action=0.2)
    env.reset(seed=0)
    again = pickle.loads(pickle.dumps(env.unwrapped))
    assert type(again) is type(env.unwrapped) and again.action_space == env.action_space


def test_light_engine_examples_run():
    import doctest

    import envs.light.bandit
    import envs.light.navigation
    import envs.light.tabular_mdp

    for module in (envs.light.bandit, envs.light.navigation, envs.light.tabular_mdp):
        assert doctest.testmod(module).failed == 0

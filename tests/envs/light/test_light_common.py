"""Every light env: checkers, reward terms, batched = single = sliced, seeding, tasks."""

import dataclasses
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from tests.envs.light.cases import CASE_IDS, CASES, run_engine, run_single_envs, run_sliced

# Warnings the checkers are known to give, and why they are accepted:
# - Navigation2D positions are unbounded (as in MAML and pytorch-maml-rl), so the Box is infinite;
# - its actions are velocities in [-0.1, 0.1], not the [-1, 1] SB3 recommends (faithful scale);
# - the bandit's observation is the constant 0, so its Box has low == high (pytorch-maml-rl).
KNOWN_WARNINGS = {
    "metarl/Navigation2D-v0": [
        r"observation space (minimum|maximum) value is -?infinity",
        r"symmetric and normalized Box action space",
    ],
    "metarl/Bandit": [r"maximum and minimum values are equal"],
}


def _assert_only_known_warnings(env_id, caught):
    patterns = [p for prefix, ps in KNOWN_WARNINGS.items() if env_id.startswith(prefix) for p in ps]
    for warning in caught:
        message = str(warning.message)
        assert any(re.search(p, message) for p in patterns), f"unexpected warning: {message}"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gymnasium_env_checker_passes(case):
    env = gym.make(case.env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    _assert_only_known_warnings(case.env_id, caught)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_stable_baselines3_env_checker_passes(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(case.env_id))
    _assert_only_known_warnings(case.env_id, caught)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reward_terms_sum_to_reward_in_engine_and_env(case):
    engine = case.engine(8)
    tasks = engine.distribution.sample(8, np.random.default_rng(0))
    actions = case.sample_actions(np.random.default_rng(1), 20, 8)
    out = run_engine(engine, range(8), tasks, actions)
    total = sum(out[name] for name in engine.reward_terms)
    np.testing.assert_allclose(total, out["reward"], rtol=0, atol=1e-12)
    for key in engine.extra_keys:
        assert out[key].shape[:2] == (20, 8)

    env = gym.make(case.env_id)
    env.reset(seed=0)
    _, reward, *_, info = env.step(env.action_space.sample())
    assert set(info) == set(engine.reward_terms) | set(engine.extra_keys)
    assert sum(info[name] for name in engine.reward_terms) == pytest.approx(reward, abs=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_engine_equals_single_envs(case):
    n, steps = 5, 25
    tasks = case.engine(1).distribution.sample(n, np.random.default_rng(2))
    seeds = [11 * i + 3 for i in range(n)]
    actions = case.sample_actions(np.random.default_rng(3), steps, n)
    batched = run_engine(case.engine(n), seeds, tasks, actions)
    single = run_single_envs(case, seeds, tasks, actions)
    assert batched.keys() == single.keys()
    for key, value in batched.items():
        np.testing.assert_array_equal(single[key], value, err_msg=key, strict=True)


@pytest.mark.parametrize("sizes", [(1, 5), (3, 3), (2, 1, 2, 1)])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_result_does_not_depend_on_how_sub_envs_are_sliced(case, sizes):
    n, steps = 6, 30
    tasks = case.engine(1).distribution.sample(n, np.random.default_rng(4))
    seeds = list(range(100, 100 + n))
    actions = case.sample_actions(np.random.default_rng(5), steps, n)
    whole = run_engine(case.engine(n), seeds, tasks, actions)
    sliced = run_sliced(case, sizes, seeds, tasks, actions)
    for key, value in whole.items():
        np.testing.assert_array_equal(sliced[key], value, err_msg=key)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_same_seed_same_numbers_and_new_seed_new_numbers(case):
    tasks = case.engine(1).distribution.sample(4, np.random.default_rng(6))
    actions = case.sample_actions(np.random.default_rng(7), 15, 4)
    first = run_engine(case.engine(4), [1, 2, 3, 4], tasks, actions)
    again = run_engine(case.engine(4), [1, 2, 3, 4], tasks, actions)
    other = run_engine(case.engine(4), [5, 6, 7, 8], tasks, actions)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    if not case.env_id.startswith("metarl/Navigation2D"):  # navigation is deterministic
        assert not np.array_equal(first["reward"], other["reward"])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reset_samples_a_task_from_each_sub_envs_own_generator(case):
    engine = case.engine(3)
    engine.seed([10, 11, 12])
    engine.reset(np.arange(3))
    expected = [engine.distribution.sample(1, np.random.default_rng(s))[0] for s in (10, 11, 12)]
    assert engine.tasks == expected
    # A later set_tasks wins; resetting again keeps the new task.
    engine.set_tasks([expected[2]], indices=[0])
    engine.reset(np.array([0]))
    assert engine.tasks[0] == expected[2]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_tasks_round_trip_through_dicts_and_describe_names_every_field(case):
    distribution = case.engine(1).distribution
    for task in distribution.sample(3, np.random.default_rng(8)):
        again = type(task).from_dict(task.to_dict())
        assert again == task and hash(again) == hash(task)
        distribution.validate(again)
    fields = {f.name for f in dataclasses.fields(distribution.task_type)}
    assert set(distribution.describe()) == fields


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_engine_rejects_bad_calls(case):
    engine = case.engine(2)
    actions = case.sample_actions(np.random.default_rng(0), 1, 2)[0]
    with pytest.raises(RuntimeError, match=r"reset sub-environment\(s\) \[0, 1\]"):
        engine.step(actions)
    engine.reset(np.array([0]))
    with pytest.raises(RuntimeError, match=r"\[1\]"):
        engine.step(actions)
    engine.reset(np.arange(2))
    with pytest.raises(ValueError, match="actions must have shape"):
        engine.step(actions[:1])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\)"):
        engine.reset(np.array([2]))
    with pytest.raises(ValueError, match="indices must be a 1-D integer array"):
        engine.reset(np.array([0.0]))
    with pytest.raises(TypeError, match="expects a"):
        engine.set_tasks([object(), object()])
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        case.engine(0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_returns_fresh_arrays_the_caller_may_keep(case):
    engine = case.engine(3)
    engine.reset(np.arange(3))
    actions = case.sample_actions(np.random.default_rng(0), 2, 3)
    first = engine.step(actions[0])
    kept = {k: v.copy() for k, v in first._asdict().items() if isinstance(v, np.ndarray)}
    engine.step(actions[1])
    for key, value in kept.items():
        np.testing.assert_array_equal(getattr(first, key), value)
    assert first.reward is not first.reward_terms[engine.reward_terms[0]]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_empty_index_lists_are_no_ops(case):
    engine = case.engine(2)
    engine.set_tasks([], indices=[])
    obs = engine.reset(np.zeros(0, dtype=np.int64))
    assert obs.shape == (0, *engine.observation_space.shape)
    assert engine.tasks == [None, None]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_registry_builds_the_distribution_with_the_registered_kwargs(case):
    distribution = envs.get_task_distribution(case.env_id)
    assert isinstance(distribution, case.engine_cls.distribution_cls)
    task = distribution.sample(1, np.random.default_rng(0))[0]
    case.engine(1).distribution.validate(task)

"""Tabular MDPs: a hand-computed state sequence, reward and transition statistics, bad input."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 - registers the ids
from envs.light.tabular_mdp import (
    TabularMDPEngine,
    TabularMDPTask,
    TabularMDPTaskDistribution,
    _cumulative,
)

# 3 states, 2 actions, deterministic transitions: action 0 stays, action 1 moves to (s + 1) % 3.
MEANS = ((0.0, 1.0), (2.0, 3.0), (4.0, 5.0))
STAY_OR_NEXT = tuple(
    (tuple(float(j == s) for j in range(3)), tuple(float(j == (s + 1) % 3) for j in range(3)))
    for s in range(3)
)
DETERMINISTIC = TabularMDPTask(reward_means=MEANS, transitions=STAY_OR_NEXT)


def test_deterministic_table_follows_the_hand_computed_states_and_expected_rewards():
    env = gym.make("metarl/TabularMDP-v0", num_states=3, num_actions=2)
    obs, _ = env.reset(seed=0, options={"task": DETERMINISTIC})
    assert obs.dtype == np.float32 and obs.tolist() == [1.0, 0.0, 0.0]
    # s=0 -a1-> 1 -a0-> 1 -a1-> 2 -a1-> 0 -a0-> 0; expected rewards mean[s][a].
    actions = [1, 0, 1, 1, 0]
    states = [1, 1, 2, 0, 0]
    expected = [1.0, 2.0, 3.0, 5.0, 0.0]
    for t, (action, state, mean) in enumerate(zip(actions, states, expected, strict=True)):
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.tolist() == [float(j == state) for j in range(3)]
        assert info["expected_reward"] == mean and info["reward_mdp"] == reward
        assert not terminated and not truncated, t


def test_registered_horizon_truncates_after_ten_steps():
    env = gym.make("metarl/TabularMDP-v0")
    env.reset(seed=0)
    for _ in range(9):
        assert env.step(0)[3] is False
    _, _, terminated, truncated, _ = env.step(0)
    assert (terminated, truncated) == (False, True)


def test_rewards_are_mean_plus_unit_gaussian_noise():
    n, steps = 500, 8  # 4000 draws of reward for each of two (state, action) pairs
    engine = TabularMDPEngine(n, num_states=3, num_actions=2)
    engine.seed(list(range(n)))
    engine.set_tasks([DETERMINISTIC] * n)
    engine.reset(np.arange(n))
    noise = {0: [], 1: []}
    actions = np.arange(n) % 2  # even sub-envs stay in state 0 (mean 0), odd ones cycle
    for _ in range(steps):
        states = engine.state
        out = engine.step(actions)
        means = np.asarray(MEANS)[states, actions]
        np.testing.assert_array_equal(out.extras["expected_reward"], means)
        for a in (0, 1):
            noise[a].append((out.reward - means)[actions == a])
    for draws in noise.values():
        z = np.concatenate(draws)
        assert z.mean() == pytest.approx(0.0, abs=4 / np.sqrt(len(z)))
        assert z.std() == pytest.approx(1.0, abs=0.05)


def test_next_states_follow_the_transition_probabilities():
    row = (0.5, 0.0, 0.2, 0.3)
    task = TabularMDPTask(reward_means=((0.0,),) * 4, transitions=((row,),) * 4)
    n = 4000
    engine = TabularMDPEngine(n, num_states=4, num_actions=1)
    engine.seed(list(range(n)))
    engine.set_tasks([task] * n)
    engine.reset(np.arange(n))
    engine.step(np.zeros(n, dtype=np.int64))
    counts = np.bincount(engine.state, minlength=4) / n
    assert counts[1] == 0.0  # probability 0 is never drawn
    tolerance = 4 * np.sqrt(np.asarray(row) * (1 - np.asarray(row)) / n)
    assert np.all(np.abs(counts - row) <= tolerance), counts


def test_cumulative_rows_end_at_one_and_never_reach_states_of_probability_zero():
    # The first three entries sum to slightly less than 1 in floating point.
    rows = np.array([[0.1, 0.2, 0.7 - 1e-9, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    cdf = _cumulative(rows)
    np.testing.assert_array_equal(cdf[:, 2:], 1.0)
    u = np.nextafter(1.0, 0.0)  # the largest uniform draw
    assert np.count_nonzero(cdf <= u, axis=1).tolist() == [2, 2]
    assert np.count_nonzero(cdf <= 0.0, axis=1).tolist() == [0, 2]


def test_distribution_statistics():
    distribution = TabularMDPTaskDistribution()
    tasks = distribution.sample(200, np.random.default_rng(0))
    table = np.array([t.transitions for t in tasks])
    means = np.array([t.reward_means for t in tasks])
    assert table.shape == (200, 10, 5, 10) and means.shape == (200, 10, 5)
    assert table.min() >= 0.0
    np.testing.assert_allclose(table.sum(axis=-1), 1.0, atol=1e-12)
    # Flat Dirichlet(1) over 10 states: each entry has mean 1/10 and variance 9/1100.
    assert table.mean() == pytest.approx(0.1, abs=1e-12)
    assert table.var() == pytest.approx(9 / 1100, rel=0.05)
    assert means.mean() == pytest.approx(1.0, abs=0.03)  # 4 sigma = 0.028
    assert means.std() == pytest.approx(1.0, abs=0.03)
    for task in tasks[:3]:
        distribution.validate(task)


def test_bad_tasks_and_arguments_raise_clear_errors():
    distribution = TabularMDPTaskDistribution(num_states=3, num_actions=2)
    with pytest.raises(ValueError, match=r"'reward_means' must have shape \(3, 2\)"):
        distribution.validate(TabularMDPTask(reward_means=MEANS[:2], transitions=STAY_OR_NEXT))
    with pytest.raises(ValueError, match=r"'transitions' must have shape \(3, 2, 3\)"):
        distribution.validate(TabularMDPTask(reward_means=MEANS, transitions=STAY_OR_NEXT[:2]))
    with pytest.raises(ValueError, match=r"(?s)'reward_means'.*must be finite"):
        bad = ((float("inf"), 0.0),) + MEANS[1:]
        distribution.validate(TabularMDPTask(reward_means=bad, transitions=STAY_OR_NEXT))
    not_summing = ((((0.5, 0.4, 0.0),) + STAY_OR_NEXT[0][1:]),) + STAY_OR_NEXT[1:]
    with pytest.raises(ValueError, match=r"row \[0\]\[0\] sums to 0.9.*must sum to 1"):
        distribution.validate(TabularMDPTask(reward_means=MEANS, transitions=not_summing))
    negative = ((((1.5, -0.5, 0.0),) + STAY_OR_NEXT[0][1:]),) + STAY_OR_NEXT[1:]
    with pytest.raises(ValueError, match=r"(?s)'transitions'.*outside the allowed range \[0.0, 1"):
        distribution.validate(TabularMDPTask(reward_means=MEANS, transitions=negative))
    with pytest.raises(TypeError, match="expects a TabularMDPTask"):
        distribution.validate(MEANS)
    with pytest.raises(ValueError, match="num_states must be >= 1"):
        TabularMDPEngine(1, num_states=0)
    with pytest.raises(TypeError, match="num_actions must be an int"):
        TabularMDPEngine(1, num_actions=True)

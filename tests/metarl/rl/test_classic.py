"""Classic RL² baselines: hand-computed indices and values, exact twins, behaviour, bad input."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from envs.light.bandit import BanditEngine, BanditTask, BanditTaskDistribution
from envs.light.navigation import Navigation2DTaskDistribution
from envs.light.tabular_mdp import TabularMDPTask, TabularMDPTaskDistribution
from metarl.rl import classic
from metarl.rl.classic_bandit import (
    BAYES_OPTIMAL_MAX_PULLS,
    bandit_baselines,
    bayes_optimal_table,
    gittins_indices,
    gittins_table,
    greedy_value,
    simulate_bandit,
    ucb1_indices,
)
from metarl.rl.classic_mdp import (
    FiniteHorizonValues,
    mdp_baselines,
    optimistic_expectation,
    value_iteration_finite_horizon,
)

BANDIT_KEYS = {"random", "ucb1", "thompson", "gittins", "greedy", "epsilon_greedy"}
BANDIT_KEYS_SHORT = BANDIT_KEYS | {"bayes_optimal"}  # trials of <= BAYES_OPTIMAL_MAX_PULLS
MDP_KEYS = {"random", "psrl", "greedy", "ucrl2"}


def _bandits(num_tasks, num_arms, seed=0):
    return BanditTaskDistribution(num_arms=num_arms).sample(num_tasks, np.random.default_rng(seed))


def _mdps(num_tasks, seed=0):
    return TabularMDPTaskDistribution().sample(num_tasks, np.random.default_rng(seed))


# ----------------------------------------------------------------------------------------------
# UCB1
# ----------------------------------------------------------------------------------------------


def test_ucb1_indices_by_hand():
    # t = 6: 0.5 + sqrt(2 ln 6 / 2) = 0.5 + 1.338566; 0.25 + sqrt(2 ln 6 / 4) = 0.25 + 0.946509
    out = ucb1_indices(np.array([[0.5, 0.25, 0.9]]), np.array([[2, 4, 0]]), t=6)
    assert_allclose(out[0, :2], [1.838566, 1.196509], atol=1e-6)
    assert out[0, 2] == np.inf  # an unpulled arm goes first (Auer et al. 2002)
    scaled = ucb1_indices(np.array([0.5]), np.array([2]), t=6, c=0.2)
    assert_allclose(scaled, [0.5 + 0.2 * math.sqrt(math.log(6.0))])
    assert_allclose(ucb1_indices(np.array([0.3]), np.array([5]), t=1), [0.3])  # ln 1 = 0


def test_ucb1_indices_reject_bad_input():
    with pytest.raises(ValueError, match="counts"):
        ucb1_indices(np.zeros(2), np.zeros(3), t=2)
    with pytest.raises(ValueError, match="t >= 1"):
        ucb1_indices(np.zeros(2), np.ones(2), t=0)


# ----------------------------------------------------------------------------------------------
# Gittins
# ----------------------------------------------------------------------------------------------


def _exact_fhgi(successes, pulls, remaining):
    """Bisection on the calibration of one arm: the slow, exact twin of ``gittins_table``."""
    alpha, beta = successes + 1, pulls - successes + 1

    def continue_excess(lam):
        excess = np.zeros(remaining + 1)
        for depth in range(remaining - 1, -1, -1):
            wins = np.arange(depth + 1)
            p = (alpha + wins) / (alpha + beta + depth)
            c = p * (1 + excess[1 : depth + 2]) + (1 - p) * excess[: depth + 1] - lam
            excess = np.maximum(c, 0.0)
        return c[0]

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if continue_excess(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def test_gittins_beta11_by_hand():
    # r = 2: play now (1/2), then with one pull left retire at lam or take the posterior mean:
    # 1/2 + 1/2 max(lam, 2/3) + 1/2 max(lam, 1/3) = 2 lam  =>  lam = 5/9 (in [1/3, 2/3]).
    # r = 3, guess lam in (1/2, 2/3): after a failure, Beta(1, 2) retires (worth 2 lam); after a
    # success, Beta(2, 1) plays on: 2/3 (1 + 3/4) + 1/3 lam. Indifference:
    # 1/2 (1 + 7/6 + lam / 3) + 1/2 (2 lam) = 3 lam  =>  13/12 = (11/6) lam  =>  lam = 13/22.
    table = gittins_table(4)
    beta11 = [gittins_indices(np.array(0), np.array(0), r, table) for r in (2, 3)]
    assert_allclose(beta11, [5 / 9, 13 / 22], atol=1e-6)


def test_gittins_last_pull_is_the_posterior_mean():
    table = gittins_table(6)
    pulls = np.array([0, 1, 1, 3, 5, 5])
    wins = np.array([0, 0, 1, 2, 0, 5])
    out = gittins_indices(wins, pulls, 1, table)
    assert_allclose(out, (wins + 1) / (pulls + 2), atol=1e-6)


def test_gittins_table_matches_exact_calibration():
    horizon = 8
    table = gittins_table(horizon)
    for remaining in range(1, horizon + 1):
        for pulls in range(horizon - remaining + 1):
            for wins in range(pulls + 1):
                got = gittins_indices(np.array(wins), np.array(pulls), remaining, table)
                assert got == pytest.approx(_exact_fhgi(wins, pulls, remaining), abs=5e-4)


def test_gittins_index_properties():
    table = gittins_table(30)
    prior = [float(gittins_indices(np.array(0), np.array(0), r, table)) for r in range(1, 31)]
    assert prior[0] == pytest.approx(0.5, abs=1e-6)
    assert all(v > 0.5 for v in prior[1:])  # exploring an unknown arm is worth something
    assert np.all(np.diff(prior) > 0)  # ... more so with more pulls left
    # One more success (alpha + 1, beta fixed) raises the index.
    wins = np.arange(0, 10)
    by_alpha = gittins_indices(wins, wins + 3, 10, table)
    assert np.all(np.diff(by_alpha) > 0)


def test_gittins_rejects_bad_input():
    table = gittins_table(5)
    with pytest.raises(ValueError, match="table covers"):
        gittins_indices(np.array([0]), np.array([5]), 1, table)
    with pytest.raises(ValueError, match="successes"):
        gittins_indices(np.array([2]), np.array([1]), 1, table)
    with pytest.raises(ValueError, match="remaining"):
        gittins_indices(np.array([0]), np.array([0]), 0, table)
    with pytest.raises(ValueError, match="horizon"):
        gittins_table(0)


# ----------------------------------------------------------------------------------------------
# Bandit baselines
# ----------------------------------------------------------------------------------------------


def test_bandit_baselines_shapes_and_determinism():
    tasks = _bandits(7, 3)
    out = bandit_baselines(tasks, 12, np.random.default_rng(1))
    again = bandit_baselines(tasks, 12, np.random.default_rng(1))
    assert set(out) == BANDIT_KEYS_SHORT
    assert set(bandit_baselines(tasks, 13, np.random.default_rng(1))) == BANDIT_KEYS
    for name, rewards in out.items():
        assert rewards.shape == (7, 12)
        assert set(np.unique(rewards)) <= {0.0, 1.0}
        np.testing.assert_array_equal(rewards, again[name])


def test_bandit_trial_steps_the_engine_on_the_one_generator():
    # Every sub-env of the BanditEngine draws u from the trial's generator, in task order.
    tasks = _bandits(4, 3)
    engine = BanditEngine(4, num_arms=3)
    engine.set_tasks(tasks)
    arm_2 = lambda s, m, t, rng: np.full(len(s), 2)  # noqa: E731
    out = simulate_bandit(engine, 5, arm_2, np.random.default_rng(3))
    twin, p = np.random.default_rng(3), np.array([task.probs[2] for task in tasks])
    np.testing.assert_array_equal(out, np.stack([twin.random(4) < p for _ in range(5)], axis=1))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 3\)"):  # the engine's check
        simulate_bandit(engine, 1, lambda s, m, t, rng: np.full(len(s), 3), twin)


def test_bandit_rewards_follow_the_engine_on_certain_arms():
    # p = 0 never pays and p = 1 always pays (u < p, u in [0, 1)). Greedy and Gittins lose at
    # most the first pull: a failure on arm 0 sends them to arm 1 for good.
    tasks = [BanditTask(probs=(0.0, 1.0))] * 20
    out = bandit_baselines(tasks, 15, np.random.default_rng(2))
    for name in ("greedy", "gittins"):
        totals = out[name].sum(axis=1)
        assert totals.min() >= 14, name
        assert np.all(out[name][:, 1:] == 1.0), name


def test_bandit_baselines_beat_random_on_easy_bandits():
    probs = (0.1, 0.2, 0.9, 0.3, 0.15)
    tasks = [BanditTask(probs=probs)] * 200
    out = bandit_baselines(tasks, 100, np.random.default_rng(3))
    totals = {name: rewards.sum(axis=1).mean() for name, rewards in out.items()}
    assert totals["random"] == pytest.approx(33.0, abs=2.0)  # 100 * mean(probs)
    for name in ("ucb1", "gittins", "thompson", "greedy", "epsilon_greedy"):
        assert totals[name] > totals["random"] + 30.0, (name, totals)


def _brute_force_value(num_arms, num_pulls, rule):
    """Expected trial reward, recursing over every arm's (s, f) as a list (no symmetry folding).

    ``rule(arms, scores)`` picks the arms to average over from each arm's reward-to-go score
    (``max`` for the Bayes-optimal policy) or ``None`` for greedy (highest posterior mean).
    """

    def value(arms, left):
        if left == 0:
            return 0.0
        scores = []
        for i, (s, f) in enumerate(arms):
            p = (s + 1) / (s + f + 2)
            win = [*arms[:i], (s + 1, f), *arms[i + 1 :]]
            lose = [*arms[:i], (s, f + 1), *arms[i + 1 :]]
            scores.append((p, p * (1 + value(win, left - 1)) + (1 - p) * value(lose, left - 1)))
        key = 1 if rule == "optimal" else 0
        top = max(sc[key] for sc in scores)
        chosen = [sc[1] for sc in scores if sc[key] == top]
        return sum(chosen) / len(chosen)

    return value([(0, 0)] * num_arms, num_pulls)


def test_bayes_optimal_values_by_hand_and_by_brute_force():
    # One arm: the posterior mean is a martingale, every pull earns 1/2 in expectation.
    assert bayes_optimal_table(1, 7).value == pytest.approx(3.5, abs=1e-12)
    # Two arms, two pulls: 1/2 first; after a success stay (2/3), after a failure switch (1/2).
    assert bayes_optimal_table(2, 2).value == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)
    for k, n in ((2, 6), (3, 5), (4, 4)):
        exact = bayes_optimal_table(k, n).value
        assert exact == pytest.approx(_brute_force_value(k, n, "optimal"), abs=1e-12)
        greedy = _brute_force_value(k, n, "greedy")
        assert greedy_value(k, n) == pytest.approx(greedy, abs=1e-12)
        assert exact >= greedy - 1e-12
    # With more arms than pulls, extra arms change nothing; on 5 arms x 10 pulls greedy (the
    # highest posterior mean, ties averaged) leaves 0.034 on the table.
    assert bayes_optimal_table(50, 10).value == pytest.approx(bayes_optimal_table(10, 10).value)
    assert bayes_optimal_table(5, 10).value == pytest.approx(6.659988, abs=1e-6)
    assert _brute_force_value(3, 6, "optimal") > _brute_force_value(3, 6, "greedy") + 1e-3


def test_bayes_optimal_baseline_earns_its_exact_value_on_sampled_bandits():
    tasks = BanditTaskDistribution(num_arms=5).sample(20000, np.random.default_rng(4))
    out = bandit_baselines(tasks, 10, np.random.default_rng(5))
    totals = out["bayes_optimal"].sum(axis=1)
    sem = totals.std() / np.sqrt(len(totals))
    assert abs(totals.mean() - bayes_optimal_table(5, 10).value) < 3 * sem, (totals.mean(), sem)
    assert totals.mean() > out["random"].sum(axis=1).mean() + 1.5
    with pytest.raises(ValueError, match="at most 12 pulls"):
        bayes_optimal_table(5, BAYES_OPTIMAL_MAX_PULLS + 1)
    with pytest.raises(ValueError, match="num_arms"):
        bayes_optimal_table(0, 5)


def test_bandit_baselines_reject_bad_input():
    rng = np.random.default_rng(0)
    tasks = _bandits(2, 3)
    with pytest.raises(ValueError, match="num_pulls"):
        bandit_baselines(tasks, 0, rng)
    with pytest.raises(TypeError, match="num_pulls"):
        bandit_baselines(tasks, 2.5, rng)
    with pytest.raises(ValueError, match="empty"):
        bandit_baselines([], 5, rng)
    with pytest.raises(ValueError, match="BanditTask"):
        bandit_baselines(_mdps(1), 5, rng)
    with pytest.raises(ValueError, match="shapes"):
        bandit_baselines([*tasks, *_bandits(1, 4)], 5, rng)
    with pytest.raises(ValueError, match="epsilon"):
        bandit_baselines(tasks, 5, rng, epsilon=1.5)


# ----------------------------------------------------------------------------------------------
# Tabular MDPs
# ----------------------------------------------------------------------------------------------

# Two states, two actions. s0: a0 pays 0 and moves to s1 w.p. 1/2; a1 pays 1 and stays.
# s1: a0 pays 2 and stays; a1 pays 0 and moves to s0.
TWO_STATE_REWARDS = np.array([[0.0, 1.0], [2.0, 0.0]])
TWO_STATE_TRANSITIONS = np.array([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])


def test_value_iteration_two_states_by_hand():
    # h=2: q = R                                    -> v2 = [1, 2]
    # h=1: s0: a0 = 0 + (1 + 2)/2 = 1.5, a1 = 1 + 1 = 2; s1: a0 = 2 + 2 = 4, a1 = 0 + 1 = 1
    # h=0: s0: a0 = 0 + (2 + 4)/2 = 3,   a1 = 1 + 2 = 3; s1: a0 = 2 + 4 = 6, a1 = 0 + 2 = 2
    out = value_iteration_finite_horizon(TWO_STATE_REWARDS, TWO_STATE_TRANSITIONS, 3)
    assert isinstance(out, FiniteHorizonValues)
    assert_allclose(out.q[2], [[0.0, 1.0], [2.0, 0.0]])
    assert_allclose(out.q[1], [[1.5, 2.0], [4.0, 1.0]])
    assert_allclose(out.q[0], [[3.0, 3.0], [6.0, 2.0]])
    assert_allclose(out.v, [[3.0, 6.0], [2.0, 4.0], [1.0, 2.0], [0.0, 0.0]])


def test_value_iteration_batched_equals_loop():
    rng = np.random.default_rng(4)
    rewards = rng.normal(size=(3, 4, 2))
    transitions = rng.dirichlet(np.ones(4), size=(3, 4, 2))
    batched = value_iteration_finite_horizon(rewards, transitions, 5)
    for i in range(3):
        single = value_iteration_finite_horizon(rewards[i], transitions[i], 5)
        assert_allclose(batched.q[i], single.q)
        assert_allclose(batched.v[i], single.v)


def test_value_iteration_rejects_bad_input():
    with pytest.raises(ValueError, match="horizon"):
        value_iteration_finite_horizon(TWO_STATE_REWARDS, TWO_STATE_TRANSITIONS, 0)
    with pytest.raises(ValueError, match="do not match"):
        value_iteration_finite_horizon(TWO_STATE_REWARDS, TWO_STATE_TRANSITIONS[..., :1], 2)


def test_optimistic_expectation_by_hand():
    # v = [0, 1, 2], p = [0.5, 0.3, 0.2]: radius 0.4 moves 0.2 from s0 to s2 -> 0.3 + 0.8 = 1.1;
    # radius 1.2 moves 0.6: all 0.5 of s0, then 0.1 of s1 -> 0.2 * 1 + 0.8 * 2 = 1.8.
    estimate = np.array([0.5, 0.3, 0.2]).reshape(1, 1, 1, 3)
    values = np.array([[0.0, 1.0, 2.0]])
    got = [
        optimistic_expectation(estimate, np.full((1, 1, 1), r), values).item()
        for r in (0.0, 0.4, 1.2, 5.0)
    ]
    assert_allclose(got, [0.7, 1.1, 1.8, 2.0])


def test_optimistic_expectation_bounds():
    rng = np.random.default_rng(5)
    estimate = rng.dirichlet(np.ones(6), size=(4, 6, 3))
    values = rng.normal(size=(4, 6))
    radius = rng.uniform(0.0, 1.0, size=(4, 6, 3))
    plain = np.einsum("nsat,nt->nsa", estimate, values)
    got = optimistic_expectation(estimate, radius, values)
    assert np.all(got >= plain - 1e-12)
    assert np.all(got <= values.max(axis=1)[:, None, None] + 1e-12)
    # No move can gain more than (radius / 2) * (max v - min v).
    spread = (values.max(axis=1) - values.min(axis=1))[:, None, None]
    assert np.all(got - plain <= radius / 2 * spread + 1e-12)


def test_mdp_baselines_shapes_and_determinism():
    tasks = _mdps(5)
    out = mdp_baselines(tasks, 3, 4, np.random.default_rng(6))
    again = mdp_baselines(tasks, 3, 4, np.random.default_rng(6))
    assert set(out) == MDP_KEYS
    for name, returns in out.items():
        assert returns.shape == (5, 3)
        np.testing.assert_array_equal(returns, again[name])


def test_mdp_single_action_return_is_the_sum_of_means():
    # One state, one action: every method earns 10 * mean plus N(0, 1) noise per step.
    tasks = [TabularMDPTask(reward_means=((2.0,),), transitions=(((1.0,),),))] * 400
    out = mdp_baselines(tasks, 2, 10, np.random.default_rng(7))
    for returns in out.values():
        assert returns.mean() == pytest.approx(20.0, abs=0.4)  # std of the mean: sqrt(10/800)
        assert returns.std() == pytest.approx(math.sqrt(10.0), rel=0.15)


def test_psrl_and_greedy_beat_random_on_mdps():
    out = mdp_baselines(_mdps(150, seed=8), 10, 10, np.random.default_rng(9))
    totals = {name: returns.sum(axis=1).mean() for name, returns in out.items()}
    assert totals["random"] == pytest.approx(100.0, abs=10.0)  # mean reward 1 per step
    for name in ("psrl", "greedy", "ucrl2"):
        assert totals[name] > totals["random"] + 20.0, (name, totals)


def test_mdp_baselines_reject_bad_input():
    rng = np.random.default_rng(0)
    tasks = _mdps(2)
    with pytest.raises(ValueError, match="horizon"):
        mdp_baselines(tasks, 2, 0, rng)
    with pytest.raises(ValueError, match="num_episodes"):
        mdp_baselines(tasks, 0, 10, rng)
    with pytest.raises(ValueError, match="empty"):
        mdp_baselines([], 2, 10, rng)
    with pytest.raises(ValueError, match="TabularMDPTask"):
        mdp_baselines(_bandits(2, 3), 2, 10, rng)
    small = TabularMDPTask(reward_means=((1.0,),), transitions=(((1.0,),),))
    with pytest.raises(ValueError, match="shapes"):
        mdp_baselines([*tasks, small], 2, 10, rng)


# ----------------------------------------------------------------------------------------------
# the registry the trial evaluation looks baselines up in
# ----------------------------------------------------------------------------------------------


def test_classic_baselines_are_found_by_task_type_and_equal_the_family_functions():
    bandits, mdps = _bandits(3, 4, seed=5), _mdps(2, seed=6)
    got = classic.classic_baselines(bandits, 7, 1, seed=11)
    want = bandit_baselines(bandits, 7, np.random.default_rng(11))
    assert set(got) == BANDIT_KEYS_SHORT
    for name in BANDIT_KEYS_SHORT:
        assert got[name].dtype == np.float64
        np.testing.assert_array_equal(got[name], want[name])
    got = classic.classic_baselines(mdps, 3, 5, seed=12)
    want = mdp_baselines(mdps, 3, 5, np.random.default_rng(12))
    assert set(got) == MDP_KEYS
    for name in MDP_KEYS:
        np.testing.assert_array_equal(got[name], want[name])


def test_a_task_family_without_classic_baselines_gets_none():
    tasks = Navigation2DTaskDistribution().sample(2, np.random.default_rng(0))
    assert classic.baselines_for(type(tasks[0])) is None
    assert classic.classic_baselines(tasks, 3, 5, seed=0) == {}
    assert classic.classic_baselines([], 3, 5, seed=0) == {}


def test_a_subclass_finds_its_base_class_baselines_and_a_second_registration_is_refused():
    class MyBandit(BanditTask):
        pass

    assert classic.baselines_for(MyBandit) is classic.baselines_for(BanditTask) is not None
    with pytest.raises(ValueError, match="BanditTask already has classic baselines"):
        classic.register(BanditTask)(lambda tasks, episodes, horizon, rng: {})

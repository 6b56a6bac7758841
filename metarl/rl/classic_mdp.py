"""Classic tabular-MDP baselines of RL² (Duan et al. 2016, §3.2, Table 2).

Numpy only, vectorised over tasks: a trial on ``N`` MDPs is one Python loop over steps of the
real batched engine (:class:`envs.light.tabular_mdp.TabularMDPEngine`), one sub-environment per
task. Each baseline runs on its own child generator, which draws the policy's randomness and,
shared by every sub-environment, the rewards and transitions (``mean[s, a] + z``,
``z ~ N(0, 1)``, then ``u ~ U[0, 1)`` picks the next state; every episode starts in state 0).
Priors are the task distribution: ``N(1, 1)`` per mean reward, ``Dirichlet(1)`` per transition
row. ``UCRL2_SCALE`` is tuned (a small grid on tasks drawn with other seeds than any check).
Registered for :class:`~envs.light.tabular_mdp.TabularMDPTask` with
:func:`metarl.rl.classic.register`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

import numpy as np
from numpy.random import Generator

from envs.checks import check_positive_int
from envs.core import Task
from envs.light.tabular_mdp import TabularMDPEngine, TabularMDPTask
from metarl.rl import classic

__all__ = [
    "UCRL2_SCALE",
    "FiniteHorizonValues",
    "mdp_baselines",
    "optimistic_expectation",
    "value_iteration_finite_horizon",
]

_REWARD_PRIOR_MEAN = 1.0  # of the N(1, 1) prior on each mean reward (RL² §3.2)

UCRL2_SCALE = 0.1
"""Factor on UCRL2's confidence radii (RL² tunes one). On 500 MDPs, n = 10 / 25 / 50 episodes
scored 147 / 435 / 947 at 0.03, 146 / 424 / 919 at 0.1, 128 / 377 / 847 at 0.3 (small radii tend
to ``greedy``). 0.1 keeps the bonus at work and is within 1% of the paper's UCRL2 column."""


class FiniteHorizonValues(NamedTuple):
    """Optimal finite-horizon values from :func:`value_iteration_finite_horizon`.

    Attributes:
        q: ``[..., H, S, A]``; return of ``a`` in ``s`` at step ``h``, then optimal to step ``H``.
        v: ``[..., H + 1, S]``; ``v[..., h] = max_a q[..., h]`` and ``v[..., H] = 0``.
    """

    q: np.ndarray
    v: np.ndarray


def value_iteration_finite_horizon(
    reward_means: np.ndarray,
    transitions: np.ndarray,
    horizon: int,
    next_value: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FiniteHorizonValues:
    """Undiscounted backward induction ``q_h = R + P v_{h+1}``, ``v_h = max_a q_h``, ``v_H = 0``.

    Args:
        reward_means: ``[..., S, A]`` mean rewards.
        transitions: ``[..., S, A, S]`` next-state probabilities.
        horizon: number of steps ``H``.
        next_value: ``v_{h+1} [..., S] -> [..., S, A]``, replacing ``P v_{h+1}`` (UCRL2 passes
            :func:`optimistic_expectation`); by default the expectation under ``transitions``.

    Returns:
        :class:`FiniteHorizonValues` with ``q`` ``[..., H, S, A]`` and ``v`` ``[..., H + 1, S]``.

    Raises:
        ValueError: if the shapes do not match or ``horizon < 1``.
    """
    reward_means, transitions = np.asarray(reward_means), np.asarray(transitions)
    horizon = check_positive_int("horizon", horizon)
    if reward_means.ndim < 2 or transitions.shape != reward_means.shape + reward_means.shape[-2:-1]:
        raise ValueError(
            f"reward_means [..., S, A] {reward_means.shape} and transitions [..., S, A, S] "
            f"{transitions.shape} do not match"
        )
    if next_value is None:
        next_value = functools.partial(np.einsum, "...sat,...t->...sa", transitions)

    batch, (num_states, num_actions) = reward_means.shape[:-2], reward_means.shape[-2:]
    q = np.empty((*batch, horizon, num_states, num_actions))
    v = np.zeros((*batch, horizon + 1, num_states))
    for h in range(horizon - 1, -1, -1):
        q[..., h, :, :] = reward_means + next_value(v[..., h + 1, :])
        v[..., h, :] = q[..., h, :, :].max(axis=-1)
    return FiniteHorizonValues(q=q, v=v)


def optimistic_expectation(
    estimate: np.ndarray, radius: np.ndarray, v_tp1: np.ndarray
) -> np.ndarray:
    """``max p . v`` over ``{p in simplex : |p - estimate|_1 <= radius}`` (UCRL2, Fig. 2).

    Jaksch et al. (2010): the maximising ``p`` moves up to ``radius / 2`` mass onto the best next
    state, taking it from the worst states first.

    Args:
        estimate: ``[N, S, A, S]`` estimated rows (each sums to 1).
        radius: ``[N, S, A]`` L1 radii (>= 0).
        v_tp1: ``[N, S]`` next-state values.

    Returns:
        ``[N, S, A]`` optimistic expected next-state values.

    Raises:
        ValueError: if the shapes do not match.
    """
    expected = (estimate.shape[:3], (estimate.shape[0], estimate.shape[-1]))
    if estimate.ndim != 4 or (radius.shape, v_tp1.shape) != expected:
        raise ValueError(
            f"expected estimate [N, S, A, S], radius [N, S, A], v_tp1 [N, S]; got "
            f"{estimate.shape}, {radius.shape}, {v_tp1.shape}"
        )
    rank = np.argsort(np.argsort(-v_tp1, axis=-1), axis=-1)  # 0 = best next state
    below = (rank[:, :, None] > rank[:, None, :]).astype(estimate.dtype)  # [i, j]: i worse than j
    rows = estimate.reshape(len(estimate), -1, estimate.shape[-1])
    # State j gives up mass only once all the mass of states worse than j is taken.
    worse = (rows @ below).reshape(estimate.shape)
    is_best = (rank == 0)[:, None, None, :]
    p_best = (estimate * is_best).sum(axis=-1)
    excess = np.minimum(1.0, p_best + radius / 2.0) - p_best
    taken = np.clip(excess[..., None] - worse, 0.0, estimate) * ~is_best
    moved = (estimate - taken).reshape(rows.shape) @ v_tp1[:, :, None]
    return moved.reshape(radius.shape) + excess * v_tp1.max(axis=-1)[:, None, None]


class _MDPStats(NamedTuple):
    counts: np.ndarray  # [N, S, A, S] observed transitions
    reward_sums: np.ndarray  # [N, S, A] summed rewards
    visits: np.ndarray  # [N, S, A]


MDPPlanner = Callable[[_MDPStats, int, Generator], np.ndarray]


def _posterior(stats: _MDPStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and variance of each mean reward, and Dirichlet parameters of each row.

    Prior ``N(1, 1)`` with known noise variance 1 (conjugate: precision ``1 + n``), and a flat
    ``Dirichlet(1)`` on each transition row; both are the task distribution of RL² §3.2.
    """
    precision = 1.0 + stats.visits
    mean = (_REWARD_PRIOR_MEAN + stats.reward_sums) / precision
    return mean, 1.0 / precision, 1.0 + stats.counts


def _plan_psrl(stats: _MDPStats, horizon: int, rng: Generator) -> np.ndarray:
    """PSRL (Osband et al. 2013): act optimally in one MDP drawn from the posterior."""
    mean, var, alpha = _posterior(stats)
    rewards = mean + np.sqrt(var) * rng.standard_normal(mean.shape)
    gammas = rng.standard_gamma(alpha)
    transitions = gammas / gammas.sum(axis=-1, keepdims=True)
    return value_iteration_finite_horizon(rewards, transitions, horizon).q


def _plan_greedy(stats: _MDPStats, horizon: int, rng: Generator) -> np.ndarray:
    """Certainty equivalence: act optimally in the posterior-mean MDP."""
    mean, _, alpha = _posterior(stats)
    return value_iteration_finite_horizon(mean, alpha / alpha.sum(-1, keepdims=True), horizon).q


def _plan_ucrl2(
    stats: _MDPStats, horizon: int, rng: Generator, scale: float, delta: float = 0.05
) -> np.ndarray:
    """UCRL2 (Jaksch et al. 2010, Fig. 1) for episodes: extended value iteration each episode.

    Radii: ``sqrt(7 log(2 S A t / delta) / (2 n))`` on rewards, doubled for unit-variance Gaussian
    rather than [0, 1] rewards, and ``sqrt(14 S log(2 A t / delta) / n)`` on transition rows, both
    times ``scale``, with ``n = max(1, visits)`` and ``t = max(1, steps)``. Centres are empirical,
    or the prior mean (reward 1, uniform row) for pairs never visited.
    """
    num_states, num_actions = stats.visits.shape[-2:]
    visited = stats.visits > 0
    n = np.maximum(stats.visits, 1.0)
    t = max(stats.visits[0].sum(), 1.0)  # steps so far in the trial
    bonus = 2.0 * np.sqrt(7.0 * np.log(2 * num_states * num_actions * t / delta) / (2 * n))
    rewards = np.where(visited, stats.reward_sums / n, _REWARD_PRIOR_MEAN) + scale * bonus
    estimate = np.where(visited[..., None], stats.counts / n[..., None], 1.0 / num_states)
    radius = scale * np.sqrt(14.0 * num_states * np.log(2 * num_actions * t / delta) / n)
    next_value = functools.partial(optimistic_expectation, estimate, radius)
    return value_iteration_finite_horizon(rewards, estimate, horizon, next_value).q


def _run_mdp_trial(
    engine: TabularMDPEngine,
    num_episodes: int,
    horizon: int,
    plan: MDPPlanner | None,
    rng: Generator,
) -> np.ndarray:
    """``[N, num_episodes]`` returns of ``plan`` (``q`` per episode, or None: random actions).

    Steps ``engine``, a :class:`~envs.light.tabular_mdp.TabularMDPEngine` with one sub-environment
    per task.
    """
    rows = classic.share_generator(engine, rng)
    num_tasks, num_states, num_actions = engine.num_envs, engine.num_states, engine.num_actions
    zeros = np.zeros((num_tasks, num_states, num_actions))
    stats = _MDPStats(np.zeros((*zeros.shape, num_states)), zeros.copy(), zeros.copy())
    returns = np.zeros((num_tasks, num_episodes))
    for episode in range(num_episodes):
        q = None if plan is None else plan(stats, horizon, rng)
        engine.reset(rows)  # state 0
        state = engine.state
        for h in range(horizon):
            if q is None:
                action = rng.integers(num_actions, size=num_tasks)
            else:
                action = np.argmax(q[rows, h, state], axis=-1)
            reward = engine.step(action).reward
            next_state = engine.state
            stats.counts[rows, state, action, next_state] += 1.0
            stats.reward_sums[rows, state, action] += reward
            stats.visits[rows, state, action] += 1.0
            returns[:, episode] += reward
            state = next_state
    return returns


def mdp_baselines(
    tasks: Sequence[TabularMDPTask],
    num_episodes: int,
    horizon: int,
    rng: Generator,
    *,
    ucrl2_scale: float = UCRL2_SCALE,
) -> dict[str, np.ndarray]:
    """Episode returns of the RL² tabular-MDP baselines (Duan et al. 2016, Table 2).

    A trial is ``num_episodes`` episodes of ``horizon`` steps from state 0 on one task, learning
    carried across them; plans (:func:`value_iteration_finite_horizon`) are made per episode.

    ``random``: uniform actions. ``psrl`` (Osband et al. 2013): act optimally in an MDP drawn from
    the posterior (mean rewards: conjugate to the ``N(1, 1)`` prior, noise variance 1; rows:
    ``Dirichlet(1 + counts)``). ``greedy``: act optimally in the posterior-mean MDP. ``ucrl2``
    (Jaksch et al. 2010): extended value iteration, radii times ``ucrl2_scale``.

    Args:
        tasks: ``N`` MDPs with the same numbers of states and actions.
        num_episodes: episodes per trial ``n``.
        horizon: steps per episode ``T`` (RL²: 10).
        rng: source of all randomness (each baseline runs on a child generator drawn from it).
        ucrl2_scale: factor on UCRL2's confidence radii.

    Returns:
        ``{name: [N, num_episodes] undiscounted episode returns}``; Table 2: ``.sum(1).mean()``.

    Raises:
        TypeError: if ``num_episodes`` or ``horizon`` is not an int.
        ValueError: on an empty task list, a task that is not a :class:`TabularMDPTask`, tasks of
            different sizes, ``num_episodes < 1`` or ``horizon < 1``.
    """
    num_states, num_actions = classic.check_tasks(tasks, TabularMDPTask, "reward_means").shape[1:]
    num_episodes = check_positive_int("num_episodes", num_episodes)
    horizon = check_positive_int("horizon", horizon)
    planners: dict[str, MDPPlanner | None] = {
        "random": None,
        "psrl": _plan_psrl,
        "greedy": _plan_greedy,
        "ucrl2": functools.partial(_plan_ucrl2, scale=ucrl2_scale),
    }
    engine = TabularMDPEngine(len(tasks), num_states=num_states, num_actions=num_actions)
    classic.set_engine_tasks(engine, tasks)  # checks the transitions too
    rngs = classic.child_generators(rng, list(planners))
    return {
        name: _run_mdp_trial(engine, num_episodes, horizon, plan, rngs[name])
        for name, plan in planners.items()
    }


@classic.register(TabularMDPTask)
def _trial_baselines(tasks: Sequence[Task], n: int, horizon: int, rng: Generator) -> classic.Curves:
    """:func:`mdp_baselines` for the trial evaluation; it checks the task types."""
    return mdp_baselines(cast(Sequence[TabularMDPTask], tasks), n, horizon, rng)

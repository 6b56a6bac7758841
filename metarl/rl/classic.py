"""Classic bandit and tabular-MDP baselines of RL² (Duan et al. 2016, §3.1-3.2, Tables 1-2).

Numpy only, vectorised over tasks: a trial on ``N`` tasks is one Python loop over pulls (or
steps) of the real batched engines of :mod:`envs.light` (``BanditEngine``, ``TabularMDPEngine``),
one sub-environment per task. Each baseline runs on its own child generator, which draws the
policy's randomness and, shared by every sub-environment of the engine, the rewards and
transitions (bandit ``float(u < p_arm)``, ``u ~ U[0, 1)``; MDP ``mean[s, a] + z``,
``z ~ N(0, 1)``, then ``u ~ U[0, 1)`` picks the next state; every episode starts in state 0).
Priors are the task distributions: ``Beta(1, 1)`` per arm, ``N(1, 1)`` per mean reward,
``Dirichlet(1)`` per transition row. As in the RL² appendix, UCB1, greedy and epsilon-greedy
start every arm at one success and one failure, and ``UCB1_C``, ``EPSILON`` and ``UCRL2_SCALE``
are tuned (small grids on tasks drawn with other seeds than any check).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
from numpy.random import Generator

from envs.checks import check_positive_int
from envs.core import BatchedTaskEngine, Task
from envs.light.bandit import BanditEngine, BanditTask
from envs.light.tabular_mdp import TabularMDPEngine, TabularMDPTask

__all__ = [
    "EPSILON",
    "UCB1_C",
    "UCRL2_SCALE",
    "BanditPolicy",
    "FiniteHorizonValues",
    "GittinsTable",
    "bandit_baselines",
    "gittins_indices",
    "gittins_table",
    "mdp_baselines",
    "optimistic_expectation",
    "simulate_bandit",
    "ucb1_indices",
    "value_iteration_finite_horizon",
]

UCB1_C = 0.2
"""UCB1 bonus scale (Auer et al. 2002 use 1; RL² tunes it). Of {0.05, 0.1, 0.2, 0.3, 0.5, 1}, 0.2
scored best on all nine (n, k) of Table 1 (1000 bandits each); c = 1 scores far lower."""

EPSILON = 0.02
"""Epsilon-greedy exploration probability (tuned): of {0, 0.01, 0.02, 0.05, 0.1}, 0.02 and 0.05
are within 1% of each other and ahead of the rest on the same grid."""

_Engine = TypeVar("_Engine", bound=BatchedTaskEngine)
_IntOrArray = TypeVar("_IntOrArray", int, np.ndarray)

_REWARD_PRIOR_MEAN = 1.0  # of the N(1, 1) prior on each mean reward (RL² §3.2)

UCRL2_SCALE = 0.1
"""Factor on UCRL2's confidence radii (RL² tunes one). On 500 MDPs, n = 10 / 25 / 50 episodes
scored 147 / 435 / 947 at 0.03, 146 / 424 / 919 at 0.1, 128 / 377 / 847 at 0.3 (small radii tend
to ``greedy``). 0.1 keeps the bonus at work and is within 1% of the paper's UCRL2 column."""

BanditPolicy = Callable[[np.ndarray, np.ndarray, int, Generator], np.ndarray]
"""``(successes [N, k], pulls [N, k], t, rng) -> arms [N]``: one decision of a bandit policy."""


def _check_tasks(tasks: Sequence[object], task_type: type, field: str) -> np.ndarray:
    if len(tasks) == 0:
        raise ValueError(f"tasks is empty; expected at least one {task_type.__name__}")
    for i, task in enumerate(tasks):
        if not isinstance(task, task_type):
            raise ValueError(f"tasks[{i}] is a {type(task).__name__}, not a {task_type.__name__}")
    shapes = {np.shape(getattr(task, field)) for task in tasks}
    if len(shapes) != 1:
        raise ValueError(f"tasks have different {field} shapes {sorted(shapes)}; expected one")
    return np.asarray([getattr(task, field) for task in tasks], dtype=np.float64)


def _child_generators(rng: Generator, names: Sequence[str]) -> dict[str, Generator]:
    seeds = rng.integers(0, 2**62, size=len(names))
    return {name: np.random.default_rng(int(seed)) for name, seed in zip(names, seeds, strict=True)}


def _engine(engine: _Engine, tasks: Sequence[Task]) -> _Engine:
    engine.set_tasks(list(tasks))  # validated once, shared by every baseline's trial
    return engine


def _share_generator(engine: BatchedTaskEngine, rng: Generator) -> np.ndarray:
    """Makes every sub-env draw from ``rng``, in order (one seed); returns all their indices."""
    engine.rngs = [rng] * engine.num_envs
    return np.arange(engine.num_envs)


def _argmax_random_ties(scores: np.ndarray, rng: Generator) -> np.ndarray:
    """Row-wise argmax of ``[N, k]`` scores, ties broken uniformly at random."""
    best = scores.max(axis=-1, keepdims=True)
    return np.argmax(np.where(scores >= best, rng.random(scores.shape), -1.0), axis=-1)


def ucb1_indices(means: np.ndarray, counts: np.ndarray, t: float, c: float = 1.0) -> np.ndarray:
    """UCB1 indices ``mean_a + c sqrt(2 ln t / n_a)`` (Auer et al. 2002, Fig. 1).

    ``n_a = 0`` gives ``+inf``: plain UCB1 (``means = s / n``, ``c = 1``) pulls each arm once first.
    RL² passes pseudo-counts (one success, one failure): ``(s + 1) / (n + 2)``, ``n + 2``.

    Args:
        means: ``[..., k]`` estimated arm means.
        counts: ``[..., k]`` number of observations behind each mean.
        t: the total number of observations so far (``>= 1``).
        c: scale of the exploration bonus.

    Returns:
        ``[..., k]`` float64 indices.

    Raises:
        ValueError: if the shapes differ, a count is negative or ``t < 1``.
    """
    means, counts = np.asarray(means, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if means.shape != counts.shape:
        raise ValueError(f"means {means.shape} and counts {counts.shape} must have one shape")
    if (counts < 0).any() or t < 1:
        raise ValueError(f"counts must be >= 0 and t >= 1, got min count {counts.min()}, t={t}")
    with np.errstate(divide="ignore"):
        bonus = np.sqrt(2.0 * np.log(t) / counts)
    return np.where(counts > 0, means + c * bonus, np.inf)


@dataclasses.dataclass(frozen=True)
class GittinsTable:
    """Finite-horizon Gittins indices of a Bernoulli arm with a ``Beta(1, 1)`` prior.

    The index of an arm with ``s`` successes in ``m`` pulls when ``r`` pulls of the trial are left
    is ``values[offsets[r] + m (m + 1) / 2 + s]``, defined for ``r >= 1`` and ``m + r <= horizon``.

    Attributes:
        horizon: the largest ``m + r`` covered (the trial length ``n``).
        values: flat read-only float32 indices.
        offsets: ``[horizon + 1]`` start of the layer of each ``r`` (entry 0 unused).
    """

    horizon: int
    values: np.ndarray
    offsets: np.ndarray


def gittins_table(horizon: int, num_grid: int = 64) -> GittinsTable:
    """Finite-horizon Gittins indices (FHGI) for every state a trial of ``horizon`` pulls meets.

    Calibration (Gittins et al. 2011; the FHGI of Kaufmann 2018, "On Bayesian index policies for
    sequential resource allocation"): the index of a ``Beta(s + 1, m - s + 1)`` arm with ``r``
    pulls left is the ``lam`` at which a known arm paying ``lam`` for all ``r`` pulls is as good as
    playing the unknown arm with the option to retire to the known one at any later pull. With
    ``p = (s + 1) / (m + 2)``, the excess over retiring is ``E(m, s, r) = max(0, c(m, s, r))``,
    ``c = p (1 + E(m+1, s+1, r-1)) + (1 - p) E(m+1, s, r-1) - lam``, ``E(., ., 0) = 0``, and the
    index is the root of ``c``, convex, piecewise linear and decreasing in ``lam``. One backward
    pass over ``r`` gives ``c`` and ``dc/dlam`` (minus the expected plays) on ``num_grid`` values of
    ``lam`` for all cells at once; the index is the larger of the tangent roots at the two grid
    points around it (both lower bounds; exact unless ``c`` has kinks on both sides). Against
    bisection the error is below about 1e-3 with 64 points. Cost ``num_grid * horizon**3 / 6``
    float32 updates, cached per ``(horizon, num_grid)``: 0.1 s for 100 pulls, 10-20 s for 500.

    Args:
        horizon: the trial length ``n`` (pulls).
        num_grid: number of ``lam`` grid points in ``[0, 1]``.

    Returns:
        A cached :class:`GittinsTable` with read-only arrays.

    Raises:
        TypeError: if ``horizon`` or ``num_grid`` is not an int.
        ValueError: if ``horizon < 1`` or ``num_grid < 2``.
    """
    horizon = check_positive_int("horizon", horizon)
    if check_positive_int("num_grid", num_grid) < 2:
        raise ValueError(f"num_grid must be >= 2, got {num_grid}")
    return _gittins_table(horizon, int(num_grid))


def _triangle(m: _IntOrArray) -> _IntOrArray:
    return m * (m + 1) // 2  # cells (m', s) with m' < m: the flat offset of row m


@functools.lru_cache(maxsize=4)
def _gittins_table(horizon: int, num_grid: int) -> GittinsTable:
    pulls = np.repeat(np.arange(horizon + 1), np.arange(1, horizon + 2))
    cell = np.arange(len(pulls))
    successes = cell - _triangle(pulls)
    mean = ((successes + 1) / (pulls + 2)).astype(np.float32)[:, None]
    to_success, to_failure = cell + pulls + 2, cell + pulls + 1
    lam = np.linspace(0.0, 1.0, num_grid, dtype=np.float32)
    excess = np.zeros((len(cell), num_grid), np.float32)  # E_lam at r - 1 = 0 ...
    slope = np.zeros_like(excess)  # ... and its derivative in lam
    sizes = [0] + [_triangle(horizon - r + 1) for r in range(1, horizon + 1)]
    offsets = (np.cumsum(sizes) - sizes).astype(np.int64)  # exclusive sums: layer starts
    values = np.empty(int(np.sum(sizes)), dtype=np.float32)  # 84 MB at horizon 500
    for r in range(1, horizon + 1):
        size = sizes[r]
        p, up, down = mean[:size], to_success[:size], to_failure[:size]
        c = p * (1.0 + excess[up]) + (1.0 - p) * excess[down] - lam
        dc = p * slope[up] + (1.0 - p) * slope[down] - 1.0
        hi = np.count_nonzero(c > 0.0, axis=1)  # c(lam[hi - 1]) > 0 >= c(lam[hi])
        rows = np.arange(size)
        left = lam[hi - 1] - c[rows, hi - 1] / dc[rows, hi - 1]
        right = lam[hi] - c[rows, hi] / dc[rows, hi]
        values[offsets[r] : offsets[r] + size] = np.maximum(left, right)
        play = c > 0.0
        excess[:size], slope[:size] = c * play, dc * play
    values.flags.writeable = False
    offsets.flags.writeable = False
    return GittinsTable(horizon=horizon, values=values, offsets=offsets)


def gittins_indices(
    successes: np.ndarray, pulls: np.ndarray, remaining: int, table: GittinsTable
) -> np.ndarray:
    """Finite-horizon Gittins indices of ``Beta(1 + s, 1 + m - s)`` arms with ``r`` pulls left.

    Args:
        successes: ``[...]`` int successes ``s`` of each arm.
        pulls: ``[...]`` int pulls ``m`` of each arm (same shape).
        remaining: pulls left in the trial, including the one being chosen (``r >= 1``).
        table: a table from :func:`gittins_table` with ``horizon >= max(m) + r``.

    Returns:
        ``[...]`` float64 indices.

    Raises:
        ValueError: if shapes differ, ``0 <= s <= m`` fails, ``remaining < 1`` or table too small.
    """
    successes, pulls = np.asarray(successes, dtype=np.int64), np.asarray(pulls, dtype=np.int64)
    if successes.shape != pulls.shape:
        raise ValueError(f"successes {successes.shape} and pulls {pulls.shape} must match")
    if (successes < 0).any() or (successes > pulls).any():
        raise ValueError("successes must satisfy 0 <= successes <= pulls")
    remaining = check_positive_int("remaining", remaining)
    needed = int(pulls.max(initial=0)) + remaining
    if needed > table.horizon:
        raise ValueError(f"table covers pulls + remaining <= {table.horizon}, need {needed}")
    flat = table.offsets[remaining] + _triangle(pulls) + successes
    return table.values[flat].astype(np.float64)


def _posterior_means(successes: np.ndarray, pulls: np.ndarray) -> np.ndarray:
    return (successes + 1.0) / (pulls + 2.0)  # Beta(1, 1) prior


def _random_arm(successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator) -> np.ndarray:
    num_tasks: int = successes.shape[0]  # an Any size would pick numpy's scalar overload
    return rng.integers(successes.shape[1], size=num_tasks)


def _greedy_arm(successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator) -> np.ndarray:
    return _argmax_random_ties(_posterior_means(successes, pulls), rng)


def _epsilon_greedy_arm(
    successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator, epsilon: float
) -> np.ndarray:
    explore = rng.random(successes.shape[0]) < epsilon
    random_arm = _random_arm(successes, pulls, t, rng)
    return np.where(explore, random_arm, _greedy_arm(successes, pulls, t, rng))


def _thompson_arm(successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator) -> np.ndarray:
    return np.argmax(rng.beta(1.0 + successes, 1.0 + pulls - successes), axis=1)


def _ucb1_arm(
    successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator, c: float
) -> np.ndarray:
    counts = pulls + 2.0  # RL²: statistics start at one success and one failure
    indices = ucb1_indices(_posterior_means(successes, pulls), counts, counts[0].sum(), c)
    return _argmax_random_ties(indices, rng)


def _gittins_arm(
    successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator, num_pulls: int
) -> np.ndarray:
    indices = gittins_indices(successes, pulls, num_pulls - t, gittins_table(num_pulls))
    return _argmax_random_ties(indices, rng)


def simulate_bandit(
    engine: BanditEngine, num_pulls: int, policy: BanditPolicy, rng: Generator
) -> np.ndarray:
    """Runs one trial of ``num_pulls`` pulls on each of ``N`` Bernoulli bandits at once.

    Args:
        engine: a :class:`~envs.light.bandit.BanditEngine` with one sub-environment per bandit,
            their tasks set; each pull is a one-step episode of it.
        num_pulls: pulls per trial ``n``.
        policy: ``(successes [N, k], pulls [N, k], t, rng) -> arms [N]``, called before pull ``t``.
        rng: draws the policy's randomness and the engine's rewards.

    Returns:
        ``[N, num_pulls]`` float64 rewards in {0, 1}.
    """
    everyone = _share_generator(engine, rng)
    num_tasks, num_arms = engine.num_envs, engine.num_arms
    successes = np.zeros((num_tasks, num_arms), dtype=np.int64)
    pulls = np.zeros_like(successes)
    rewards = np.empty((num_tasks, num_pulls))
    for t in range(num_pulls):
        arm = policy(successes, pulls, t, rng)
        engine.reset(everyone)
        reward = engine.step(arm).reward
        successes[everyone, arm] += reward.astype(np.int64)
        pulls[everyone, arm] += 1
        rewards[:, t] = reward
    return rewards


def bandit_baselines(
    tasks: Sequence[BanditTask],
    num_pulls: int,
    rng: Generator,
    *,
    ucb1_c: float = UCB1_C,
    epsilon: float = EPSILON,
) -> dict[str, np.ndarray]:
    """Rewards of the RL² bandit baselines (Duan et al. 2016, Table 1) on each task.

    ``random``: a uniform arm. ``ucb1``: the highest :func:`ucb1_indices` (Auer et al. 2002)
    from RL²'s start of one success and one failure per arm (``mean = (s + 1) / (m + 2)``,
    ``n_a = m + 2``, ``t = sum_a n_a``). ``thompson``: Thompson sampling, ``Beta(1, 1)`` priors.
    ``gittins``: the highest finite-horizon Gittins index (:func:`gittins_table`) for the pulls
    left. ``greedy``: the highest posterior mean ``(s + 1) / (m + 2)``. ``epsilon_greedy``: a
    uniform arm with probability ``epsilon``, else greedy. Ties are broken uniformly at random.

    Args:
        tasks: ``N`` bandits with the same number of arms ``k``.
        num_pulls: pulls per trial ``n``.
        rng: source of all randomness (each baseline runs on a child generator drawn from it).
        ucb1_c: UCB1 bonus scale.
        epsilon: epsilon-greedy exploration probability.

    Returns:
        ``{name: [N, num_pulls] float64 rewards}``; Table 1: ``.sum(1).mean()``.

    Raises:
        TypeError: if ``num_pulls`` is not an int.
        ValueError: on an empty task list, a task that is not a :class:`BanditTask`, tasks with
            different ``k``, ``num_pulls < 1`` or ``epsilon`` outside ``[0, 1]``.
    """
    num_pulls = check_positive_int("num_pulls", num_pulls)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    policies: dict[str, BanditPolicy] = {
        "random": _random_arm,
        "ucb1": functools.partial(_ucb1_arm, c=ucb1_c),
        "thompson": _thompson_arm,
        "gittins": functools.partial(_gittins_arm, num_pulls=num_pulls),
        "greedy": _greedy_arm,
        "epsilon_greedy": functools.partial(_epsilon_greedy_arm, epsilon=epsilon),
    }
    num_arms = _check_tasks(tasks, BanditTask, "probs").shape[1]
    engine = _engine(BanditEngine(len(tasks), num_arms=num_arms), tasks)
    rngs = _child_generators(rng, list(policies))
    return {
        name: simulate_bandit(engine, num_pulls, policy, rngs[name])
        for name, policy in policies.items()
    }


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
    rows = _share_generator(engine, rng)
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
    num_states, num_actions = _check_tasks(tasks, TabularMDPTask, "reward_means").shape[1:]
    num_episodes = check_positive_int("num_episodes", num_episodes)
    horizon = check_positive_int("horizon", horizon)
    planners: dict[str, MDPPlanner | None] = {
        "random": None,
        "psrl": _plan_psrl,
        "greedy": _plan_greedy,
        "ucrl2": functools.partial(_plan_ucrl2, scale=ucrl2_scale),
    }
    engine = TabularMDPEngine(len(tasks), num_states=num_states, num_actions=num_actions)
    _engine(engine, tasks)  # checks the transitions too
    rngs = _child_generators(rng, list(planners))
    return {
        name: _run_mdp_trial(engine, num_episodes, horizon, plan, rngs[name])
        for name, plan in planners.items()
    }

"""Classic bandit baselines of RL² (Duan et al. 2016, §3.1, Table 1).

Numpy only, vectorised over tasks: a trial on ``N`` bandits is one Python loop over pulls of the
real batched engine (:class:`envs.light.bandit.BanditEngine`), one sub-environment per task.
Each baseline runs on its own child generator, which draws the policy's randomness and, shared
by every sub-environment, the rewards (``float(u < p_arm)``, ``u ~ U[0, 1)``). The prior is the
task distribution's ``Beta(1, 1)`` per arm. As in the RL² appendix, UCB1, greedy and
epsilon-greedy start every arm at one success and one failure, and ``UCB1_C`` and ``EPSILON``
are tuned (small grids on tasks drawn with other seeds than any check). Registered for
:class:`~envs.light.bandit.BanditTask` with :func:`metarl.rl.classic.register`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import numpy as np
from numpy.random import Generator

from envs.checks import check_positive_int
from envs.core import Task
from envs.light.bandit import BanditEngine, BanditTask
from metarl.rl.classic import (
    Curves,
    check_tasks,
    child_generators,
    register,
    set_engine_tasks,
    share_generator,
)

__all__ = [
    "BAYES_OPTIMAL_MAX_PULLS",
    "EPSILON",
    "UCB1_C",
    "BanditPolicy",
    "BayesOptimalTable",
    "GittinsTable",
    "bandit_baselines",
    "bayes_optimal_table",
    "gittins_indices",
    "gittins_table",
    "greedy_value",
    "simulate_bandit",
    "ucb1_indices",
]

UCB1_C = 0.2
"""UCB1 bonus scale (Auer et al. 2002 use 1; RL² tunes it). Of {0.05, 0.1, 0.2, 0.3, 0.5, 1}, 0.2
scored best on all nine (n, k) of Table 1 (1000 bandits each); c = 1 scores far lower."""

EPSILON = 0.02
"""Epsilon-greedy exploration probability (tuned): of {0, 0.01, 0.02, 0.05, 0.1}, 0.02 and 0.05
are within 1% of each other and ahead of the rest on the same grid."""

BanditPolicy = Callable[[np.ndarray, np.ndarray, int, Generator], np.ndarray]
"""``(successes [N, k], pulls [N, k], t, rng) -> arms [N]``: one decision of a bandit policy."""


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


_IntOrArray = TypeVar("_IntOrArray", int, np.ndarray)


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


BAYES_OPTIMAL_MAX_PULLS = 12
"""The exact Bayes-optimal baseline runs for trials of at most this many pulls: its state space
(every multiset of per-arm posterior counts) has ~4,400 states at n = 10 and ~1.3 million at
n = 20, where the dynamic programme takes tens of seconds."""


def _check_short_trial(num_arms: int, num_pulls: int) -> tuple[int, int]:
    """Checks the sizes the exact dynamic programmes accept; returns them."""
    num_arms = check_positive_int("num_arms", num_arms)
    num_pulls = check_positive_int("num_pulls", num_pulls)
    if num_pulls > BAYES_OPTIMAL_MAX_PULLS:
        raise ValueError(
            f"the exact Bayes-optimal bandit policy is solved for at most "
            f"{BAYES_OPTIMAL_MAX_PULLS} pulls (its state space grows combinatorially), got "
            f"{num_pulls}"
        )
    return num_arms, num_pulls


@dataclasses.dataclass(frozen=True)
class BayesOptimalTable:
    """The Bayes-optimal policy for ``k`` Bernoulli arms, ``Beta(1, 1)`` priors, ``n`` pulls.

    Found by dynamic programming over the posterior counts. A state is the sorted tuple of
    every arm's code ``s * (n + 1) + f`` (``s`` successes, ``f`` failures; an arm not pulled yet
    is 0); arms with the same counts are interchangeable, so the policy picks a code (a class of
    arms), then one arm of that class.

    Attributes:
        value: The expected total reward of the whole trial under the optimal policy (exact).
        best: ``{state: codes}``: the codes whose expected reward-to-go is optimal (ties kept).
    """

    num_arms: int
    num_pulls: int
    value: float
    best: dict[tuple[int, ...], tuple[int, ...]]


@functools.lru_cache(maxsize=8)
def bayes_optimal_table(num_arms: int, num_pulls: int) -> BayesOptimalTable:
    """Solves the finite-horizon Bayes-optimal bandit (Bellman 1956; Gittins et al. 2011, §1.3).

    ``V(state) = max_c p_c (1 + V(state with c -> (s+1, f))) + (1 - p_c) V(state with
    c -> (s, f+1))`` with ``p_c = (s + 1) / (s + f + 2)``; ``V = 0`` once ``n`` pulls are spent.

    Raises:
        ValueError: if ``num_arms < 1`` or ``num_pulls`` is outside ``[1,
            BAYES_OPTIMAL_MAX_PULLS]``.
    """
    num_arms, num_pulls = _check_short_trial(num_arms, num_pulls)
    base = num_pulls + 1
    values: dict[tuple[int, ...], float] = {}
    best: dict[tuple[int, ...], tuple[int, ...]] = {}

    def solve(state: tuple[int, ...]) -> float:
        if state in values:
            return values[state]
        left = num_pulls - sum(code // base + code % base for code in state)
        if left == 0:
            values[state] = 0.0
            return 0.0
        scores = {}
        for code in set(state):
            s, f = divmod(code, base)
            p = (s + 1) / (s + f + 2)
            rest = list(state)
            rest.remove(code)
            win = solve(tuple(sorted([*rest, code + base])))
            lose = solve(tuple(sorted([*rest, code + 1])))
            scores[code] = p * (1.0 + win) + (1.0 - p) * lose
        top = max(scores.values())
        best[state] = tuple(sorted(c for c, v in scores.items() if v >= top - 1e-12))
        values[state] = top
        return top

    value = solve((0,) * num_arms)
    return BayesOptimalTable(num_arms, num_pulls, value, best)


@functools.lru_cache(maxsize=8)
def greedy_value(num_arms: int, num_pulls: int) -> float:
    """The exact expected trial reward of the greedy baseline, ties uniformly at random.

    Greedy pulls the highest posterior mean; the recursion is :func:`bayes_optimal_table`'s.

    Raises:
        ValueError: as :func:`bayes_optimal_table`.
    """
    num_arms, num_pulls = _check_short_trial(num_arms, num_pulls)
    base = num_pulls + 1

    @functools.cache
    def value(state: tuple[int, ...], left: int) -> float:
        if left == 0:
            return 0.0
        means = [(c // base + 1) / (c // base + c % base + 2) for c in state]
        top = max(means)
        tied = [i for i, m in enumerate(means) if m == top]
        total = 0.0
        for i in tied:
            code, rest = state[i], [*state[:i], *state[i + 1 :]]
            p = means[i]
            win = value(tuple(sorted([*rest, code + base])), left - 1)
            total += p * (1.0 + win) + (1.0 - p) * value(tuple(sorted([*rest, code + 1])), left - 1)
        return total / len(tied)

    return value((0,) * num_arms, num_pulls)


def _bayes_optimal_arm(
    successes: np.ndarray, pulls: np.ndarray, t: int, rng: Generator, num_pulls: int
) -> np.ndarray:
    table = bayes_optimal_table(successes.shape[1], num_pulls)
    codes = successes * (num_pulls + 1) + (pulls - successes)
    states, inverse = np.unique(np.sort(codes, axis=1), axis=0, return_inverse=True)
    options = [table.best[tuple(row.tolist())] for row in states]
    width = max(len(o) for o in options)
    choices = np.array([[*o, *(o[:1] * (width - len(o)))] for o in options])
    counts = np.array([len(o) for o in options])
    inverse = inverse.reshape(-1)
    pick = rng.integers(0, counts[inverse])  # a uniform optimal class of arms per task
    chosen = choices[inverse, pick]
    return _argmax_random_ties((codes == chosen[:, None]).astype(np.float64), rng)


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
    everyone = share_generator(engine, rng)
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
    uniform arm with probability ``epsilon``, else greedy. ``bayes_optimal`` (trials of at most
    :data:`BAYES_OPTIMAL_MAX_PULLS` pulls): the exact finite-horizon Bayes-optimal policy
    (:func:`bayes_optimal_table`), the best any agent can do in expectation on this task
    distribution. Ties are broken uniformly at random.

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
    if num_pulls <= BAYES_OPTIMAL_MAX_PULLS:  # appended: the others' generators stay the same
        policies["bayes_optimal"] = functools.partial(_bayes_optimal_arm, num_pulls=num_pulls)
    num_arms = check_tasks(tasks, BanditTask, "probs").shape[1]
    engine = set_engine_tasks(BanditEngine(len(tasks), num_arms=num_arms), tasks)
    rngs = child_generators(rng, list(policies))
    return {
        name: simulate_bandit(engine, num_pulls, policy, rngs[name])
        for name, policy in policies.items()
    }


@register(BanditTask)
def _trial_baselines(tasks: Sequence[Task], pulls: int, _: int, rng: Generator) -> Curves:
    """:func:`bandit_baselines` for the trial evaluation (one pull an episode); checks the types."""
    return bandit_baselines(cast(Sequence[BanditTask], tasks), pulls, rng)

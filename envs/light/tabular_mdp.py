"""Random tabular MDPs (RL² §3.2), natively batched.

A task is a table of mean rewards ``[S][A] ~ N(1, 1)`` and a transition table
``[S][A][S] ~ Dirichlet(1)`` (flat). Every episode starts in state 0; the observed reward is
``N(mean[s, a], 1)``; episodes never terminate and the horizon (10) comes from registration
(RL² §3.2; pytorch-maml-rl ``maml_rl/envs/mdp.py``). Observations are one-hot
states, as in pytorch-maml-rl.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import numpy as np
from gymnasium import spaces

from envs.checks import check_positive_int, check_vector
from envs.core import BatchedTaskEngine, EngineStep, Task, TaskDistribution
from envs.light._common import (
    LIGHT_RENDER_METADATA,
    SubEnvStatus,
    as_discrete_actions,
    bar_image,
    check_discrete_batch,
    check_rgb_mode,
    draw_standard_normal,
    draw_uniform,
)

__all__ = [
    "TRANSITION_TOLERANCE",
    "TabularMDPEngine",
    "TabularMDPTask",
    "TabularMDPTaskDistribution",
]

TRANSITION_TOLERANCE = 1e-6
"""How far a row of transition probabilities may sum from 1 (JSON/YAML round trips stay inside)."""


@dataclasses.dataclass(frozen=True)
class TabularMDPTask(Task):
    """A tabular MDP.

    Attributes:
        reward_means: ``[S][A]`` mean reward of taking action ``a`` in state ``s``.
        transitions: ``[S][A][S]``; ``transitions[s][a][s']`` is the probability of moving to
            ``s'``; each row ``transitions[s][a]`` sums to 1.
    """

    family: ClassVar[str] = "tabular_mdp"
    reward_means: tuple[tuple[float, ...], ...]
    transitions: tuple[tuple[tuple[float, ...], ...], ...]


class TabularMDPTaskDistribution(TaskDistribution):
    """Mean rewards ``~ N(1, 1)`` and transition rows ``~ Dirichlet(1, ..., 1)`` (RL² §3.2).

    Args:
        num_states: ``|S|`` (RL²: 10).
        num_actions: ``|A|`` (RL²: 5).
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (RL² draws fresh MDPs).

    Raises:
        TypeError: if ``num_states`` or ``num_actions`` is not an int.
        ValueError: if either is < 1.
    """

    task_type: ClassVar[type[Task]] = TabularMDPTask
    options = ("num_states", "num_actions")

    def __init__(self, num_states: int = 10, num_actions: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_states = check_positive_int("num_states", num_states)
        self.num_actions = check_positive_int("num_actions", num_actions)

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        shape = (n, self.num_states, self.num_actions)
        # Same order of draws as pytorch-maml-rl's sample_tasks: transitions, then means.
        transitions = rng.dirichlet(np.ones(self.num_states), size=shape)
        reward_means = rng.normal(1.0, 1.0, size=shape)
        return [
            TabularMDPTask(reward_means=means, transitions=table)
            for means, table in zip(reward_means, transitions, strict=True)
        ]

    def validate(self, task: Task) -> None:
        """Checks the shapes, that probabilities are in ``[0, 1]`` and each row sums to 1.

        Raises:
            TypeError: if ``task`` is not a :class:`TabularMDPTask`.
            ValueError: naming ``reward_means`` or ``transitions`` on a wrong shape, a non-finite
                entry, a probability outside ``[0, 1]`` or a row whose sum is not 1.
        """
        self._check_type(task)
        mdp = cast(TabularMDPTask, task)
        s, a = self.num_states, self.num_actions
        check_vector("reward_means", mdp.reward_means, (s, a))
        table = check_vector("transitions", mdp.transitions, (s, a, s), 0.0, 1.0)
        sums = table.sum(axis=-1)
        bad = np.argwhere(np.abs(sums - 1.0) > TRANSITION_TOLERANCE)
        if len(bad):
            state, action = (int(v) for v in bad[0])
            raise ValueError(
                f"task parameter 'transitions': row [{state}][{action}] sums to "
                f"{float(sums[state, action])!r}; every row must sum to 1 (tolerance "
                f"{TRANSITION_TOLERANCE})"
            )

    def describe(self) -> dict[str, str]:
        """Returns the range of each task parameter."""
        s, a = self.num_states, self.num_actions
        return {
            "reward_means": f"[{s}][{a}] mean rewards, each ~ N(1, 1)",
            "transitions": f"[{s}][{a}][{s}] next-state probabilities, each row ~ Dirichlet(1)",
        }


def _cumulative(table: np.ndarray) -> np.ndarray:
    """Cumulative next-state probabilities that a uniform ``u`` in ``[0, 1)`` can search.

    Rows are renormalised, and every entry from the last state of positive probability on is set
    to exactly 1, so rounding in the sum can never select a state of probability 0.

    Args:
        table: ``[..., S]`` rows of next-state probabilities (each summing to 1 within tolerance).

    Returns:
        ``[..., S]`` non-decreasing float64 rows ending in 1.
    """
    cdf = np.cumsum(table / table.sum(axis=-1, keepdims=True), axis=-1)
    num_states = table.shape[-1]
    last_positive = num_states - 1 - np.argmax(table[..., ::-1] > 0, axis=-1)
    cdf[np.arange(num_states) >= last_positive[..., None]] = 1.0
    return cdf


class TabularMDPEngine(BatchedTaskEngine):
    """Steps ``num_envs`` tabular MDPs at once.

    * observation: one-hot state, ``[num_states]`` float32; every episode starts in state 0;
    * action: an int in ``[0, num_actions)``;
    * reward: ``reward_mdp = mean[s, a] + z``, ``z ~ N(0, 1)`` from the sub-environment's own
      generator (drawn first, as in pytorch-maml-rl);
    * transition: ``s' ~ transitions[s, a]``: one ``u ~ U[0, 1)`` per sub-environment, then
      ``s' = #{j : cdf[s, a, j] <= u}`` for the whole batch at once;
    * termination: never (the horizon comes from registration).

    Args:
        num_envs: number of sub-environments.
        num_states: ``|S|``.
        num_actions: ``|A|``.

    Example (the gymnasium env ``metarl/TabularMDP-v0`` over one sub-environment):
        >>> import envs  # registers the ids
        >>> import gymnasium as gym
        >>> env = gym.make("metarl/TabularMDP-v0", num_states=2, num_actions=1)
        >>> task = TabularMDPTask(reward_means=((0.0,), (1.0,)), transitions=(((0.0, 1.0),),) * 2)
        >>> obs, info = env.reset(seed=0, options={"task": task})
        >>> obs, reward, terminated, truncated, info = env.step(0)
        >>> obs.tolist(), info["expected_reward"], terminated
        ([0.0, 1.0], 0.0, False)
    """

    metadata: ClassVar[dict[str, Any]] = LIGHT_RENDER_METADATA
    distribution_cls: ClassVar[type[TaskDistribution]] = TabularMDPTaskDistribution
    reward_terms: tuple[str, ...] = ("reward_mdp",)
    extra_keys: tuple[str, ...] = ("expected_reward",)

    def __init__(self, num_envs: int, *, num_states: int = 10, num_actions: int = 5) -> None:
        super().__init__(
            num_envs, TabularMDPTaskDistribution(num_states=num_states, num_actions=num_actions)
        )
        self.num_states = int(num_states)
        self.num_actions = int(num_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_states,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_actions)
        self._status = SubEnvStatus(num_envs)
        self._rows = np.arange(num_envs)
        self._state = np.zeros(num_envs, dtype=np.int64)
        self._means = np.zeros((num_envs, self.num_states, self.num_actions))
        # Cumulative transition probabilities, last entry exactly 1 so that u < 1 always lands.
        self._cdf = np.ones((num_envs, self.num_states, self.num_actions, self.num_states))

    @property
    def state(self) -> np.ndarray:
        """Current states, ``[num_envs]`` int64 (a copy)."""
        return self._state.copy()

    def _apply_tasks(self, indices: np.ndarray) -> None:
        if not len(indices):
            return
        tasks = self._status.loaded_tasks(self, indices)
        self._means[indices] = [task.reward_means for task in tasks]
        table = np.asarray([task.transitions for task in tasks], dtype=np.float64)
        self._cdf[indices] = _cumulative(table)

    def check_actions(self, actions: Any) -> np.ndarray:
        """Checks a batch ``[n]`` of actions (any ``n``): integers in ``[0, num_actions)``."""
        return check_discrete_batch(actions, self.num_actions)

    def render(self, index: int, render_mode: str) -> np.ndarray:
        """A ``[64, 12 * num_states, 3]`` uint8 picture: one bar per state, the current one blue."""
        check_rgb_mode(self, render_mode)
        return bar_image(np.ones(self.num_states), highlight=int(self._state[index]))

    def _one_hot(self, states: np.ndarray) -> np.ndarray:
        obs = np.zeros((len(states), self.num_states), dtype=np.float32)
        obs[np.arange(len(states)), states] = 1.0
        return obs

    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Puts the listed sub-environments in state 0 (sampling a task where none is set).

        Args:
            indices: ``[m]`` int array of sub-environment indices.

        Returns:
            ``[m, num_states]`` float32 one-hot observations of state 0.
        """
        idx = self._status.begin_reset(self, indices)
        self._state[idx] = 0
        return self._one_hot(self._state[idx])

    def step(self, actions: np.ndarray) -> EngineStep:
        """Takes one action in every sub-environment.

        Args:
            actions: ``[num_envs]`` int actions.

        Returns:
            An :class:`~envs.core.EngineStep` with ``obs`` ``[num_envs, num_states]`` float32
            one-hot, ``reward`` and ``reward_terms["reward_mdp"]`` ``[num_envs]`` float64,
            ``terminated`` all false, and ``extras["expected_reward"]`` (``mean[s, a]``).

        Raises:
            ValueError: if ``actions`` has the wrong shape, dtype or an action out of range.
            RuntimeError: if some sub-environment was never reset.
        """
        self._status.check_ready()
        acts = as_discrete_actions(actions, self.num_envs, self.num_actions)
        expected = self._means[self._rows, self._state, acts]
        reward_mdp = expected + draw_standard_normal(self.rngs)
        cdf = self._cdf[self._rows, self._state, acts]
        uniform = draw_uniform(self.rngs)
        self._state = np.count_nonzero(cdf <= uniform[:, None], axis=1)
        return EngineStep(
            obs=self._one_hot(self._state),
            reward=reward_mdp.copy(),
            terminated=np.zeros(self.num_envs, dtype=bool),
            reward_terms={"reward_mdp": reward_mdp},
            extras={"expected_reward": expected},
        )

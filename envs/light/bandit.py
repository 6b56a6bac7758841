"""Bernoulli multi-armed bandits (RL² §3.1), natively batched.

A task is a vector of ``k`` arm probabilities ``p_i ~ U[0, 1]``; pulling arm ``a`` pays 1 with
probability ``p_a`` and 0 otherwise. Each pull is a one-step episode (it always terminates), and
a *trial* of ``n`` pulls is ``n`` consecutive episodes on one task (RL² §3.1; pytorch-maml-rl
``maml_rl/envs/bandit.py``). The observation carries no information: a constant
zero, as in pytorch-maml-rl; a recurrent policy learns from the previous action and reward.
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
    draw_uniform,
)

__all__ = ["BanditEngine", "BanditTask", "BanditTaskDistribution"]


@dataclasses.dataclass(frozen=True)
class BanditTask(Task):
    """A Bernoulli bandit.

    Attributes:
        probs: ``k`` arm probabilities, each in ``[0, 1]``.
    """

    family: ClassVar[str] = "bandit"
    probs: tuple[float, ...]


class BanditTaskDistribution(TaskDistribution):
    """``k`` independent arm probabilities, each uniform on ``[0, 1]`` (RL² §3.1).

    Args:
        num_arms: the number of arms ``k`` (RL² uses 5, 10 and 50).
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (RL² draws fresh bandits).

    Raises:
        TypeError: if ``num_arms`` is not an int.
        ValueError: if ``num_arms`` < 1.
    """

    task_type: ClassVar[type[Task]] = BanditTask
    options = ("num_arms",)

    def __init__(self, num_arms: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_arms = check_positive_int("num_arms", num_arms)

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        probs = rng.random((n, self.num_arms))
        return [BanditTask(probs=tuple(row.tolist())) for row in probs]

    def validate(self, task: Task) -> None:
        """Checks that ``task`` is a :class:`BanditTask` with ``k`` probabilities in ``[0, 1]``.

        Raises:
            TypeError: if ``task`` is not a :class:`BanditTask`.
            ValueError: if ``probs`` does not have length ``num_arms`` or leaves ``[0, 1]``.
        """
        self._check_type(task)
        check_vector("probs", cast(BanditTask, task).probs, (self.num_arms,), 0.0, 1.0)

    def describe(self) -> dict[str, str]:
        """Returns the range of each task parameter."""
        return {"probs": f"{self.num_arms} Bernoulli arm probabilities, each uniform on [0, 1]"}


class BanditEngine(BatchedTaskEngine):
    """Steps ``num_envs`` Bernoulli bandits at once.

    * observation: ``[1]`` float32 zeros (the same before and after every pull);
    * action: the arm, an int in ``[0, num_arms)``;
    * reward: ``reward_arm ~ Bernoulli(p_a)``, drawn as ``u < p_a`` with ``u ~ U[0, 1)`` from the
      sub-environment's own generator (so ``p = 0`` always pays 0 and ``p = 1`` always pays 1);
    * termination: always (each pull is a one-step episode).

    Args:
        num_envs: number of sub-environments.
        num_arms: the number of arms ``k``.

    Example (the gymnasium env ``metarl/Bandit-K5-v0`` over one sub-environment):
        >>> import envs  # registers the ids
        >>> import gymnasium as gym
        >>> env = gym.make("metarl/Bandit-K5-v0")
        >>> task = BanditTask(probs=(0.0, 1.0, 0.5, 0.5, 0.5))
        >>> obs, info = env.reset(seed=0, options={"task": task})
        >>> obs, reward, terminated, truncated, info = env.step(1)
        >>> reward, terminated, info["expected_reward"]
        (1.0, True, 1.0)
    """

    metadata: ClassVar[dict[str, Any]] = LIGHT_RENDER_METADATA
    distribution_cls: ClassVar[type[TaskDistribution]] = BanditTaskDistribution
    reward_terms: tuple[str, ...] = ("reward_arm",)
    extra_keys: tuple[str, ...] = ("expected_reward",)

    def __init__(self, num_envs: int, *, num_arms: int = 10) -> None:
        super().__init__(num_envs, BanditTaskDistribution(num_arms=num_arms))
        self.num_arms = int(num_arms)
        self.observation_space = spaces.Box(0.0, 0.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_arms)
        self._status = SubEnvStatus(num_envs)
        self._probs = np.zeros((num_envs, self.num_arms))
        self._rows = np.arange(num_envs)
        self._terminated = np.ones(num_envs, dtype=bool)

    def _apply_tasks(self, indices: np.ndarray) -> None:
        if len(indices):
            self._probs[indices] = [t.probs for t in self._status.loaded_tasks(self, indices)]

    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Starts a pull in the listed sub-environments (sampling a task where none is set).

        Args:
            indices: ``[m]`` int array of sub-environment indices.

        Returns:
            ``[m, 1]`` float32 zeros.
        """
        idx = self._status.begin_reset(self, indices)
        return np.zeros((len(idx), 1), dtype=np.float32)

    def check_actions(self, actions: Any) -> np.ndarray:
        """Checks a batch ``[n]`` of arms (any ``n``): integers in ``[0, num_arms)``."""
        return check_discrete_batch(actions, self.num_arms)

    def render(self, index: int, render_mode: str) -> np.ndarray:
        """A ``[64, 12 * num_arms, 3]`` uint8 picture of sub-env ``index``'s arm probabilities."""
        check_rgb_mode(self, render_mode)
        return bar_image(self._probs[index])

    def step(self, actions: np.ndarray) -> EngineStep:
        """Pulls one arm in every sub-environment.

        Args:
            actions: ``[num_envs]`` int arms.

        Returns:
            An :class:`~envs.core.EngineStep` with ``obs`` ``[num_envs, 1]`` float32 zeros,
            ``reward`` and ``reward_terms["reward_arm"]`` ``[num_envs]`` float64 in {0, 1},
            ``terminated`` all true, and ``extras["expected_reward"]`` (``p`` of the pulled arm).

        Raises:
            ValueError: if ``actions`` has the wrong shape, dtype or an arm out of range.
            RuntimeError: if some sub-environment was never reset.
        """
        self._status.check_ready()
        arms = as_discrete_actions(actions, self.num_envs, self.num_arms)
        expected = self._probs[self._rows, arms]
        reward_arm = (draw_uniform(self.rngs) < expected).astype(np.float64)
        return EngineStep(
            obs=np.zeros((self.num_envs, 1), dtype=np.float32),
            reward=reward_arm.copy(),
            terminated=self._terminated.copy(),
            reward_terms={"reward_arm": reward_arm},
            extras={"expected_reward": expected},
        )

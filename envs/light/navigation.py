"""2D point navigation to a random goal (MAML §5.3), natively batched.

A point starts at the origin and moves by its (clipped) action each step; the reward is the
negative Euclidean distance to the task's goal, measured after the move; the episode terminates
when the point is inside a small box around the goal. Definitions follow cbfinn/maml_rl
``maml_examples/point_env_randgoal.py`` and pytorch-maml-rl ``maml_rl/envs/navigation.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import numpy as np
from gymnasium import spaces

from envs.checks import check_low_high, check_number, check_vector
from envs.core import BatchedTaskEngine, EngineStep, Task, TaskDistribution
from envs.light._common import (
    LIGHT_RENDER_METADATA,
    SubEnvStatus,
    as_continuous_actions,
    check_rgb_mode,
)

__all__ = [
    "Navigation2DEngine",
    "Navigation2DTask",
    "Navigation2DTaskDistribution",
]


@dataclasses.dataclass(frozen=True)
class Navigation2DTask(Task):
    """A 2D navigation task.

    Attributes:
        goal: goal position ``(x, y)``.
    """

    family: ClassVar[str] = "navigation2d"
    goal: tuple[float, float]


class Navigation2DTaskDistribution(TaskDistribution):
    """Goals uniform on the square ``[low, high]^2`` (MAML: ``[-0.5, 0.5]^2``).

    Args:
        low: lower bound of each goal coordinate.
        high: upper bound of each goal coordinate (> ``low``).
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (MAML draws fresh goals).

    Raises:
        TypeError: if ``low`` or ``high`` is not a number.
        ValueError: if a bound is not finite or ``low >= high``.
    """

    task_type: ClassVar[type[Task]] = Navigation2DTask
    options = ("low", "high")

    def __init__(self, low: float = -0.5, high: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = check_low_high(low, high, strict=True)

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        goals = rng.uniform(self.low, self.high, size=(n, 2))
        return [Navigation2DTask(goal=(float(x), float(y))) for x, y in goals]

    def validate(self, task: Task) -> None:
        """Checks that ``task`` is a :class:`Navigation2DTask` with a goal inside the square.

        Raises:
            TypeError: if ``task`` is not a :class:`Navigation2DTask`.
            ValueError: if the goal is not 2-D or lies outside ``[low, high]^2``.
        """
        self._check_type(task)
        check_vector("goal", cast(Navigation2DTask, task).goal, (2,), self.low, self.high)

    def describe(self) -> dict[str, str]:
        """Returns the range of each task parameter."""
        return {"goal": f"2-D goal position, uniform on [{self.low}, {self.high}]^2"}


class Navigation2DEngine(BatchedTaskEngine):
    """Steps ``num_envs`` 2D point-navigation sub-environments with one numpy computation.

    * observation: the point's position ``(x, y)``, ``[2]`` float32; every episode starts at (0, 0);
    * action: a 2-D velocity, clipped to ``[-max_action, max_action]`` per coordinate;
    * dynamics: ``position += clipped action``;
    * reward: ``reward_distance = -||position - goal||_2`` after the move (unsquared, as in all
      released code; the MAML paper's text says "squared");
    * termination: ``|dx| < success_radius and |dy| < success_radius`` (a box, not a disc);
      the horizon (100) comes from registration.

    Positions are kept in float64; observations are float32 copies. ``step`` returns fresh arrays
    the caller may keep.

    Args:
        num_envs: number of sub-environments.
        low: lower bound of each goal coordinate.
        high: upper bound of each goal coordinate.
        max_action: the largest velocity per coordinate (> 0); also the action-space bound.
        success_radius: half-width of the termination box around the goal (>= 0; 0 never ends).

    Example (the gymnasium env ``metarl/Navigation2D-v0`` over one sub-environment):
        >>> import envs  # registers the ids
        >>> import gymnasium as gym
        >>> env = gym.make("metarl/Navigation2D-v0")
        >>> task = Navigation2DTask(goal=(0.2, 0.0))
        >>> obs, info = env.reset(seed=0, options={"task": task})
        >>> obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0.0]))
        >>> round(reward, 6), round(info["reward_distance"], 6)
        (-0.1, -0.1)
    """

    metadata: ClassVar[dict[str, Any]] = LIGHT_RENDER_METADATA
    distribution_cls: ClassVar[type[TaskDistribution]] = Navigation2DTaskDistribution
    distribution: Navigation2DTaskDistribution
    reward_terms: tuple[str, ...] = ("reward_distance",)
    extra_keys: tuple[str, ...] = ("distance",)

    def __init__(
        self,
        num_envs: int,
        *,
        low: float = -0.5,
        high: float = 0.5,
        max_action: float = 0.1,
        success_radius: float = 0.01,
    ) -> None:
        super().__init__(num_envs, Navigation2DTaskDistribution(low=low, high=high))
        self.max_action = check_number("max_action", max_action, 0.0, np.inf, open_low=True)
        self.success_radius = check_number("success_radius", success_radius, 0.0, np.inf)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(
            -self.max_action, self.max_action, shape=(2,), dtype=np.float32
        )
        self._status = SubEnvStatus(num_envs)
        self._goal = np.zeros((num_envs, 2))
        self._position = np.zeros((num_envs, 2))
        self._move = np.zeros((num_envs, 2))
        self._delta = np.zeros((num_envs, 2))

    @property
    def position(self) -> np.ndarray:
        """Current positions, ``[num_envs, 2]`` float64 (a copy)."""
        return self._position.copy()

    def _apply_tasks(self, indices: np.ndarray) -> None:
        if len(indices):
            self._goal[indices] = [t.goal for t in self._status.loaded_tasks(self, indices)]

    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Puts the listed sub-environments at the origin (sampling a task where none is set).

        Args:
            indices: ``[m]`` int array of sub-environment indices.

        Returns:
            ``[m, 2]`` float32 observations (all zeros).
        """
        idx = self._status.begin_reset(self, indices)
        self._position[idx] = 0.0
        return self._position[idx].astype(np.float32)

    def check_actions(self, actions: Any) -> np.ndarray:
        """Checks a batch ``[n, 2]`` of actions (any ``n``): numeric and finite.

        Raises:
            ValueError: on a wrong shape, non-numeric data, or NaN/inf entries.
        """
        array = np.asarray(actions)
        return as_continuous_actions(array, (len(array) if array.ndim else self.num_envs, 2))

    def render(self, index: int, render_mode: str) -> np.ndarray:
        """A ``[128, 128, 3]`` uint8 top view of sub-env ``index``: goal green, point blue.

        The view spans the goal square ``[low, high]^2`` with a 10% margin; a point outside it
        is drawn at the edge.
        """
        check_rgb_mode(self, render_mode)
        size, low, high = 128, self.distribution.low, self.distribution.high
        margin = 0.1 * (high - low)
        low, high = low - margin, high + margin
        image = np.full((size, size, 3), 255, dtype=np.uint8)
        rows, cols = np.mgrid[:size, :size]
        for (x, y), radius, colour in (
            (self._goal[index], 5, (0, 160, 0)),
            (self._position[index], 3, (40, 80, 220)),
        ):
            col = np.clip((x - low) / (high - low), 0.0, 1.0) * (size - 1)
            row = np.clip((high - y) / (high - low), 0.0, 1.0) * (size - 1)
            image[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = colour
        return image

    def step(self, actions: np.ndarray) -> EngineStep:
        """Moves every point by its clipped action.

        Args:
            actions: ``[num_envs, 2]`` velocities (any float dtype; clipped here).

        Returns:
            An :class:`~envs.core.EngineStep` with ``obs`` ``[num_envs, 2]`` float32, ``reward``
            and ``reward_terms["reward_distance"]`` ``[num_envs]`` float64, ``terminated``
            ``[num_envs]`` bool, and ``extras["distance"]`` ``[num_envs]`` float64.

        Raises:
            ValueError: if ``actions`` has the wrong shape or non-finite entries.
            RuntimeError: if some sub-environment was never reset.
        """
        self._status.check_ready()
        batch = as_continuous_actions(actions, self._move.shape)
        np.clip(batch, -self.max_action, self.max_action, out=self._move)
        self._position += self._move
        np.subtract(self._position, self._goal, out=self._delta)
        distance = np.hypot(self._delta[:, 0], self._delta[:, 1])
        np.abs(self._delta, out=self._delta)
        terminated = np.all(self._delta < self.success_radius, axis=1)
        reward_distance = -distance
        return EngineStep(
            obs=self._position.astype(np.float32),
            reward=reward_distance.copy(),
            terminated=terminated,
            reward_terms={"reward_distance": reward_distance},
            extras={"distance": distance},
        )

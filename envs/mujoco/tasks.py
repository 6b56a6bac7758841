"""Tasks and task distributions of the reward-varying locomotion families.

Sources: Finn et al. 2017; cbfinn/maml_rl; tristandeleu/pytorch-maml-rl; jonasrothfuss/ProMP.

* :class:`GoalVelocityTask` / :class:`GoalVelocityDistribution`: a target forward velocity,
  ``U[low, high]`` (HalfCheetahVel ``[0, 2]``, AntVel ``[0, 3]``).
* :class:`DirectionTask` / :class:`DirectionDistribution`: forward (+1) or backward (-1), each with
  probability 0.5; the fixed train and test sets are both directions.
* :class:`Direction2DTask` / :class:`Direction2DDistribution`: a unit vector in the plane with a
  uniform angle (ProMP/learn2learn normalise an ``N(0, I2)`` draw; PEARL draws the angle).
* :class:`GoalTask` / :class:`GoalDistribution`: a goal position, ``U[-3, 3]^2`` (MAML) or uniform
  over the radius-3 disc (ProMP, PEARL).

The dynamics-varying family (:class:`~envs.mujoco.rand_params.DynamicsTask`) lives with its engine
because its shapes come from the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from envs.checks import check_low_high, check_number, check_range, check_vector
from envs.core import Task, TaskDistribution

__all__ = [
    "Direction2DDistribution",
    "Direction2DTask",
    "DirectionDistribution",
    "DirectionTask",
    "GoalDistribution",
    "GoalTask",
    "GoalVelocityDistribution",
    "GoalVelocityTask",
]

#: How far from 1 the norm of a 2D direction may be (directions are normalised float64 draws).
UNIT_NORM_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class GoalVelocityTask(Task):
    """Run forward at a target velocity.

    Attributes:
        goal_velocity: the target forward velocity v* (m/s).
    """

    family: ClassVar[str] = "goal_velocity"
    goal_velocity: float


@dataclasses.dataclass(frozen=True)
class DirectionTask(Task):
    """Run forward or backward along x.

    Attributes:
        direction: +1.0 (forward) or -1.0 (backward).
    """

    family: ClassVar[str] = "direction"
    direction: float


@dataclasses.dataclass(frozen=True)
class Direction2DTask(Task):
    """Run in a direction of the plane.

    Attributes:
        direction: ``(dx, dy)``, a unit vector.
    """

    family: ClassVar[str] = "direction_2d"
    direction: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class GoalTask(Task):
    """Reach a goal position in the plane.

    Attributes:
        goal: ``(x, y)`` of the goal (m).
    """

    family: ClassVar[str] = "goal"
    goal: tuple[float, float]


class GoalVelocityDistribution(TaskDistribution):
    """Target velocities ``v* ~ U[low, high]``.

    Args:
        low: lowest target velocity (MAML, pytorch-maml-rl: 0.0).
        high: highest target velocity (HalfCheetah: 2.0 as in MAML and pytorch-maml-rl; ProMP,
            PEARL and varibad use 3.0; AntVel: 3.0).
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (PEARL: 100 train, 30 test, seed 1337).
    """

    task_type = GoalVelocityTask
    options = ("low", "high")

    def __init__(self, low: float = 0.0, high: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = check_low_high(low, high)

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [GoalVelocityTask(float(v)) for v in rng.uniform(self.low, self.high, size=n)]

    def validate(self, task: Task) -> None:
        """Checks ``task.goal_velocity`` lies in ``[low, high]``."""
        self._check_type(task)
        check_range("goal_velocity", task.goal_velocity, self.low, self.high)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, str]:
        """Returns ``{"goal_velocity": "U[low, high]"}``."""
        return {"goal_velocity": f"U[{self.low}, {self.high}]"}


class DirectionDistribution(TaskDistribution):
    """Directions ``d in {-1, +1}`` with probability 0.5 each.

    The fixed train and test sets are both ``[DirectionTask(-1.0), DirectionTask(1.0)]``: the
    literature trains and tests on the same two directions.

    Constructor arguments are those of :class:`~envs.core.TaskDistribution`; ``num_train_tasks``
    and ``num_test_tasks`` have no effect because the sets are fixed.
    """

    task_type = DirectionTask

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [DirectionTask(float(2 * b - 1)) for b in rng.integers(0, 2, size=n)]

    def _fixed_splits(self) -> dict[str, list[Task]] | None:
        both: list[Task] = [DirectionTask(-1.0), DirectionTask(1.0)]
        return {"train": list(both), "test": list(both)}

    def validate(self, task: Task) -> None:
        """Checks ``task.direction`` is -1.0 or +1.0."""
        self._check_type(task)
        value = check_range("direction", task.direction, -1.0, 1.0)  # type: ignore[attr-defined]
        if value not in (-1.0, 1.0):
            raise ValueError(
                f"task parameter 'direction'={value!r} is not allowed; expected -1.0 or 1.0"
            )

    def describe(self) -> dict[str, str]:
        """Returns ``{"direction": "{-1, +1}, p=0.5 each"}``."""
        return {"direction": "{-1, +1}, p=0.5 each"}


class Direction2DDistribution(TaskDistribution):
    """Unit directions in the plane with a uniformly distributed angle.

    Args:
        direction_sampling: ``"normal"``: normalise an ``N(0, I2)`` draw (ProMP, learn2learn,
            varibad); ``"angle"``: angle ``~ U[0, 2 pi)`` (PEARL ant-dir). Both are uniform on the
            circle; they differ only in how the generator's stream is used.
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution`.
    """

    task_type = Direction2DTask
    options = ("direction_sampling",)

    def __init__(self, direction_sampling: str = "normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if direction_sampling not in ("normal", "angle"):
            raise ValueError(
                f"direction_sampling must be 'normal' or 'angle', got {direction_sampling!r}"
            )
        self.direction_sampling = direction_sampling

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        if self.direction_sampling == "normal":
            draws = rng.standard_normal((n, 2))
            draws /= np.linalg.norm(draws, axis=1, keepdims=True)
        else:
            angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
            draws = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return [Direction2DTask(tuple(d)) for d in draws.tolist()]

    def validate(self, task: Task) -> None:
        """Checks ``task.direction`` is a 2-vector of unit norm."""
        self._check_type(task)
        direction = check_vector("direction", task.direction, (2,))  # type: ignore[attr-defined]
        norm = float(np.linalg.norm(direction))
        if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
            raise ValueError(
                f"task parameter 'direction'={direction.tolist()} must be a unit vector, "
                f"got norm {norm:.6g} (allowed: 1 +- {UNIT_NORM_TOLERANCE})"
            )

    def describe(self) -> dict[str, str]:
        """Returns ``{"direction": ...}`` naming the sampling rule."""
        how = "normalised N(0, I2)" if self.direction_sampling == "normal" else "angle U[0, 2pi)"
        return {"direction": f"unit vector, uniform angle ({how})"}


class GoalDistribution(TaskDistribution):
    """Goal positions in the plane, from a square or a disc.

    Args:
        low: lower bound of each coordinate for ``goal_sampling="square"`` (MAML: -3.0).
        high: upper bound of each coordinate for ``goal_sampling="square"`` (MAML: 3.0).
        goal_sampling: ``"square"``: ``U[low, high]^2`` (MAML rllab, pytorch-maml-rl);
            ``"disc"``: uniform over the disc of ``radius`` (angle ``U[0, 2 pi)``, radius
            ``radius * sqrt(U[0, 1])``; ProMP, PEARL, varibad).
        radius: disc radius for ``goal_sampling="disc"`` (3.0).
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (PEARL: 150 train, 30 test).
    """

    task_type = GoalTask
    options = ("low", "high", "goal_sampling", "radius")

    def __init__(
        self,
        low: float = -3.0,
        high: float = 3.0,
        goal_sampling: str = "square",
        radius: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.low, self.high = check_low_high(low, high)
        if goal_sampling not in ("square", "disc"):
            raise ValueError(f"goal_sampling must be 'square' or 'disc', got {goal_sampling!r}")
        self.goal_sampling = goal_sampling
        self.radius = check_number("radius", radius, 0.0, open_low=True)

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        if self.goal_sampling == "square":
            goals = rng.uniform(self.low, self.high, size=(n, 2))
        else:
            angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
            r = self.radius * np.sqrt(rng.uniform(0.0, 1.0, size=n))
            goals = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        return [GoalTask(tuple(g)) for g in goals.tolist()]

    def validate(self, task: Task) -> None:
        """Checks ``task.goal`` lies in the square or the disc."""
        self._check_type(task)
        if self.goal_sampling == "square":
            check_vector("goal", task.goal, (2,), self.low, self.high)  # type: ignore[attr-defined]
            return
        goal = check_vector("goal", task.goal, (2,))  # type: ignore[attr-defined]
        norm = float(np.linalg.norm(goal))
        if norm > self.radius * (1.0 + 1e-12):
            raise ValueError(
                f"task parameter 'goal'={goal.tolist()} is outside the allowed disc "
                f"(norm {norm:.6g} > radius {self.radius})"
            )

    def describe(self) -> dict[str, str]:
        """Returns ``{"goal": ...}``: the square or the disc."""
        if self.goal_sampling == "square":
            return {"goal": f"U[{self.low}, {self.high}]^2"}
        return {"goal": f"uniform on the disc of radius {self.radius}"}

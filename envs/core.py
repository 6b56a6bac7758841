"""Tasks, task distributions, and the batched engine that every task environment is built on.

A *task* is a small frozen record of what differs between environments of one family (a goal
velocity, a direction, a goal position, a set of dynamics multipliers). A *task distribution*
samples tasks from a :class:`numpy.random.Generator` and validates them. An *engine*
(:class:`BatchedTaskEngine`) steps ``num_envs`` sub-environments at once, each with its own task,
with numpy arrays in and out; the single gymnasium env (:class:`TaskEnv`) is the engine with one
sub-environment, and the vectorized env (:mod:`envs.vector`) is the engine with many. Both therefore
share one implementation of the dynamics, observations and reward.

This module imports numpy and gymnasium only (never torch).
"""

from __future__ import annotations

import abc
import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.checks import check_range, check_vector

__all__ = [
    "BatchedTaskEngine",
    "EngineStep",
    "Task",
    "TaskDistribution",
    "TaskEnv",
    "WorkerError",
    "check_range",
    "check_vector",
    "write_step",
]

T = TypeVar("T", bound="Task")

#: The ``render_mode`` values gymnasium's MuJoCo envs accept (besides None).
MUJOCO_RENDER_MODES = ("human", "rgb_array", "depth_array")


class WorkerError(RuntimeError):
    """A worker of the ``thread`` or ``process`` backend raised, died, or did not answer in time."""


def _to_plain(value: Any) -> Any:
    """Converts tuples (nested) and numpy scalars into lists and Python scalars."""
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_frozen(value: Any) -> Any:
    """Converts lists and arrays (nested) into tuples of Python scalars, so tasks stay hashable."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return tuple(_to_frozen(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class for task records: frozen, hashable, convertible to and from a plain dict.

    Subclasses are frozen dataclasses whose fields are floats, ints or (nested) tuples of them.
    Arrays and lists given to the constructor are converted to tuples so tasks stay hashable.
    """

    family: ClassVar[str] = "task"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            frozen = _to_frozen(value)
            if frozen is not value:
                object.__setattr__(self, field.name, frozen)

    def to_dict(self) -> dict[str, Any]:
        """Returns the task's parameters as a plain, JSON- and YAML-serialisable dict."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Builds a task from :meth:`to_dict` output.

        Raises:
            ValueError: if a key is unknown or a parameter is missing.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: unknown parameter(s) {unknown}; "
                f"expected {sorted(names)}"
            )
        missing = sorted(names - set(data))
        if missing:
            raise ValueError(f"{cls.__name__}.from_dict: missing parameter(s) {missing}")
        return cls(**{k: _to_frozen(v) for k, v in data.items()})


#: Constructor arguments of every :class:`TaskDistribution`: the fixed train and test sets.
SPLIT_OPTIONS = ("num_train_tasks", "num_test_tasks", "split_seed")


class TaskDistribution(abc.ABC):
    """A distribution over tasks of one family, sampled with an explicit numpy Generator.

    Where the literature uses fixed task sets (for example two directions, or PEARL's 100 train and
    30 test goal velocities), ``split_tasks("train")`` and ``split_tasks("test")`` return them and
    ``sample(n, rng, split=...)`` draws from them; otherwise ``sample`` draws fresh tasks.

    Args:
        num_train_tasks: size of a fixed training set drawn once from the distribution, or None.
        num_test_tasks: size of a fixed test set drawn once from the distribution, or None.
        split_seed: seed of the generator that draws the fixed sets (train and test are disjoint
            draws from one stream, as in PEARL).

    Subclasses list the names of their own constructor arguments in :attr:`options`, so that the
    registry and the engines can pick them out of an env's keyword arguments.
    """

    task_type: ClassVar[type[Task]]
    #: Names of the subclass's own constructor arguments (besides :data:`SPLIT_OPTIONS`).
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every keyword argument the constructor takes: :attr:`options` and the split ones."""
        return (*cls.options, *SPLIT_OPTIONS)

    def __init__(
        self,
        *,
        num_train_tasks: int | None = None,
        num_test_tasks: int | None = None,
        split_seed: int = 1337,
    ) -> None:
        for name, value in (
            ("num_train_tasks", num_train_tasks),
            ("num_test_tasks", num_test_tasks),
        ):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        self.num_train_tasks = num_train_tasks
        self.num_test_tasks = num_test_tasks
        self.split_seed = split_seed
        self._splits: dict[str, list[Task]] | None = None

    @abc.abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draws ``n`` fresh tasks."""

    @abc.abstractmethod
    def validate(self, task: Task) -> None:
        """Checks that ``task`` belongs to this distribution's support.

        Raises:
            TypeError: if ``task`` is not of :attr:`task_type`.
            ValueError: naming the parameter, its value and the allowed range.
        """

    @abc.abstractmethod
    def describe(self) -> dict[str, str]:
        """Returns, for each task parameter, a human-readable description of its range."""

    def _check_type(self, task: Any) -> None:
        if not isinstance(task, self.task_type):
            raise TypeError(
                f"{type(self).__name__} expects a {self.task_type.__name__}, "
                f"got {type(task).__name__}: {task!r}"
            )

    def _fixed_splits(self) -> dict[str, list[Task]] | None:
        """Fixed train/test sets of a discrete family; None when the family is continuous."""
        if self.num_train_tasks is None and self.num_test_tasks is None:
            return None
        rng = np.random.default_rng(self.split_seed)
        return {
            "train": self._sample(self.num_train_tasks or 0, rng) if self.num_train_tasks else [],
            "test": self._sample(self.num_test_tasks or 0, rng) if self.num_test_tasks else [],
        }

    def split_tasks(self, split: str) -> list[Task]:
        """Returns the fixed task set ``split`` ("train" or "test").

        Raises:
            ValueError: if ``split`` is unknown or this distribution has no fixed sets.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if self._splits is None:
            self._splits = self._fixed_splits()
        if not self._splits or not self._splits.get(split):
            raise ValueError(
                f"{type(self).__name__} has no fixed {split!r} task set; pass num_{split}_tasks "
                "to the distribution, or sample without a split"
            )
        return list(self._splits[split])

    def sample(self, n: int, rng: np.random.Generator, split: str | None = None) -> list[Task]:
        """Samples ``n`` tasks.

        Args:
            n: number of tasks (>= 0).
            rng: the generator that owns this draw.
            split: None for fresh draws from the distribution, or "train"/"test" to draw uniformly
                (with replacement) from the fixed set of that name.

        Returns:
            A list of ``n`` tasks.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if split is None:
            return self._sample(int(n), rng)
        pool = self.split_tasks(split)
        return [pool[i] for i in rng.integers(len(pool), size=int(n))]


class EngineStep(NamedTuple):
    """What one batched step returns (``n`` = number of sub-environments).

    Attributes:
        obs: next observations, ``[n, *obs_shape]``.
        reward: rewards, ``[n]`` float64; equal to the sum of ``reward_terms``.
        terminated: ``[n]`` bool, true where the episode ended by the task's own rule.
        reward_terms: name -> ``[n]`` float64 array of every additive reward term.
        extras: name -> ``[n, ...]`` array of other per-step diagnostics (e.g. ``x_velocity``).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    reward_terms: dict[str, np.ndarray]
    extras: dict[str, np.ndarray]


def row_views(count: int) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """A function that returns the first ``count`` rows of an array as a tuple of views.

    ``operator.itemgetter`` takes the rows in C, half the cost of iterating the array for them
    (a vector env's infos are rows of blocks, every step); it returns a bare row for one index
    and takes no index at all, hence the two small cases.
    """
    if count == 0:
        return lambda block: ()
    if count == 1:
        return lambda block: (block[0],)
    return operator.itemgetter(*range(count))


def write_step(step: EngineStep, out: Mapping[str, np.ndarray]) -> None:
    """Copies ``step`` into ``out``: ``obs``, ``reward``, ``terminated`` and each term and extra."""
    out["obs"][...] = step.obs
    out["reward"][...] = step.reward
    out["terminated"][...] = step.terminated
    for key, value in (*step.reward_terms.items(), *step.extras.items()):
        out[key][...] = value


class BatchedTaskEngine(abc.ABC):
    """Steps ``num_envs`` sub-environments at once, each with its own task; numpy in, numpy out.

    Subclasses set :attr:`observation_space` and :attr:`action_space` (those of one sub-env) and
    :attr:`reward_terms` in ``__init__`` and implement :meth:`_apply_tasks`, :meth:`reset` and
    :meth:`step`. Randomness comes from :attr:`rngs`, one Generator per sub-environment, so that a
    sub-environment's trajectory does not depend on how the batch is split across processes.

    Args:
        num_envs: number of sub-environments.
        distribution: the task distribution that validates tasks and samples defaults.
    """

    distribution_cls: ClassVar[type[TaskDistribution]]
    #: Task-distribution arguments that differ from the distribution's own defaults.
    distribution_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The gymnasium ``metadata`` of the task env over this engine (render modes and fps).
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    observation_space: spaces.Space
    action_space: spaces.Space
    reward_terms: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()

    @classmethod
    def make_distribution(cls, **kwargs: Any) -> TaskDistribution:
        """Builds the task distribution from those of ``kwargs`` that configure it.

        An env's keyword arguments may be passed whole: the names in
        :meth:`TaskDistribution.option_names` of :attr:`distribution_cls` are used (over
        :attr:`distribution_defaults`), the rest ignored.
        """
        names = cls.distribution_cls.option_names()
        chosen = {k: v for k, v in kwargs.items() if k in names}
        return cls.distribution_cls(**{**cls.distribution_defaults, **chosen})

    def __init__(self, num_envs: int, distribution: TaskDistribution) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.distribution = distribution
        self.tasks: list[Task | None] = [None] * num_envs
        self.rngs: list[np.random.Generator] = [
            np.random.default_rng(None) for _ in range(num_envs)
        ]

    def seed(self, seeds: Sequence[int | None]) -> None:
        """Re-seeds each sub-environment's generator (``seeds[i]`` for sub-env ``i``)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        self.rngs = [np.random.default_rng(s) for s in seeds]

    def set_tasks(self, tasks: Sequence[Task], indices: Sequence[int] | None = None) -> None:
        """Sets the task of every sub-environment (or of those in ``indices``), after validation.

        The new task takes effect at the next reset of that sub-environment.
        """
        idx = np.arange(self.num_envs) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(tasks) != len(idx):
            raise ValueError(f"expected {len(idx)} tasks, got {len(tasks)}")
        for task in tasks:
            self.distribution.validate(task)
        for i, task in zip(idx, tasks, strict=True):
            self.tasks[int(i)] = task
        self._apply_tasks(idx)

    def ensure_tasks(self, indices: np.ndarray) -> None:
        """Samples a task for each listed sub-environment that has none, from its own generator."""
        missing = [int(i) for i in indices if self.tasks[int(i)] is None]
        for i in missing:
            self.tasks[i] = self.distribution.sample(1, self.rngs[i])[0]
        if missing:
            self._apply_tasks(np.asarray(missing, dtype=np.int64))

    @abc.abstractmethod
    def _apply_tasks(self, indices: np.ndarray) -> None:
        """Copies the tasks of the listed sub-environments into the engine's batched arrays."""

    @abc.abstractmethod
    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Resets the listed sub-environments (their tasks are set) and returns their observations.

        Args:
            indices: ``[m]`` int array of sub-environment indices.

        Returns:
            ``[m, *obs_shape]`` observations.
        """

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> EngineStep:
        """Steps every sub-environment with ``actions`` (``[num_envs, *action_shape]``)."""

    def check_actions(self, actions: Any) -> np.ndarray:
        """Returns ``actions`` as :meth:`step` will use them, or raises on a bad batch.

        The ``process`` backend calls this in the parent before handing the batch to its
        workers, so a bad action is a ``ValueError`` here, not a failed worker. The default
        accepts anything :meth:`step` does.

        Raises:
            ValueError: naming the problem (engines that check their actions).
        """
        return np.asarray(actions)

    def step_checked(self, actions: np.ndarray) -> EngineStep:
        """:meth:`step` with a full batch that :meth:`check_actions` has already returned.

        The ``process`` backend checks the whole batch in the parent and hands each slice's
        engine its checked part; an engine whose :meth:`step` checks its actions again overrides
        this to skip the second check. The default is :meth:`step`.
        """
        return self.step(actions)

    def step_into(self, actions: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        """:meth:`step_checked`, writing the step into ``out`` instead of returning it.

        ``out`` maps ``"obs"``, ``"reward"``, ``"terminated"`` and the name of every reward term
        and extra to an ``[n, ...]`` array of the step's shape and dtype (a ``process`` backend
        slice's shared memory). The default copies :meth:`step_checked`'s result
        (:func:`write_step`); an engine that computes its outputs in place overrides this, with
        the same values to the bit.
        """
        write_step(self.step_checked(actions), out)

    def render(self, index: int, render_mode: str) -> Any:
        """Renders sub-environment ``index`` (engines with a renderer override this).

        Raises:
            NotImplementedError: this engine has no renderer.
        """
        raise NotImplementedError(f"{type(self).__name__} has no renderer")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Releases resources (no-op by default)."""


def _task_option(options: Mapping[str, Any] | None) -> Any:
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping, got {type(options).__name__}")
    return options.get("task")


class TaskEnv(gym.Env):
    """A gymnasium env over one sub-environment of a :class:`BatchedTaskEngine`.

    The task is set with ``reset(options={"task": task})`` or :meth:`set_task` and kept across
    resets. If no task was ever set, each reset samples a fresh task from the distribution with the
    env's own ``np_random``, so the env is also a multi-task env that any gymnasium or
    stable-baselines3 learner can train on directly. Episode time limits come from registration
    (``max_episode_steps``), not from this class.

    One class serves every engine: the registry configures it for an engine (sets
    :attr:`engine_cls` and the engine's :attr:`~BatchedTaskEngine.metadata`, see
    :func:`envs.registration.get_env_class`); constructor keyword arguments go to the engine.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # not ClassVar: gymnasium.Env types it so
    engine_cls: ClassVar[type[BatchedTaskEngine]]

    def __init__(self, render_mode: str | None = None, **engine_kwargs: Any) -> None:
        modes = list(self.metadata.get("render_modes", []))
        if render_mode is not None and render_mode not in modes:
            raise ValueError(
                f"{type(self).__name__}: render_mode={render_mode!r} is not supported; "
                f"expected None or one of {modes}"
            )
        self.render_mode = render_mode
        self.engine = self.engine_cls(1, **engine_kwargs)
        self.observation_space = self.engine.observation_space
        self.action_space = self.engine.action_space
        self._fixed_task: Task | None = None
        self._index = np.zeros(1, dtype=np.int64)

    @property
    def distribution(self) -> TaskDistribution:
        """The task distribution of this env (with its constructor's ranges)."""
        return self.engine.distribution

    @property
    def task(self) -> Task | None:
        """The task of the current episode (None before the first reset)."""
        return self.engine.tasks[0]

    def set_task(self, task: Task | None) -> None:
        """Fixes the task for all following episodes (None: sample a new task at every reset).

        Raises:
            ValueError: if the task is outside this env's distribution (naming the parameter).
        """
        if task is not None:
            self.engine.distribution.validate(task)
        self._fixed_task = task

    def sample_tasks(self, n: int) -> list[Task]:
        """Samples ``n`` tasks from this env's distribution with its own generator."""
        return self.engine.distribution.sample(n, self.np_random)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode; ``options={"task": task}`` fixes the task from now on."""
        super().reset(seed=seed)
        self.engine.rngs = [self.np_random]
        task = _task_option(options)
        if task is not None:
            self.set_task(task)
        if self._fixed_task is not None:
            self.engine.set_tasks([self._fixed_task])
        else:
            self.engine.set_tasks(self.engine.distribution.sample(1, self.np_random))
        obs = self.engine.reset(self._index)[0]
        if self.render_mode == "human":  # gymnasium: "human" draws at every reset and step
            self.render()
        return obs, {"task": self.task}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advances the episode by one step; ``info`` holds every reward term."""
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        batch = np.asarray(action)[None]
        out = self.engine.step(batch)
        info: dict[str, Any] = {k: v[0].item() for k, v in out.reward_terms.items()}
        for key, value in out.extras.items():
            info[key] = value[0].item() if value[0].ndim == 0 else value[0]
        if self.render_mode == "human":
            self.render()
        return out.obs[0], float(out.reward[0]), bool(out.terminated[0]), False, info

    def render(self) -> Any:
        """Renders the current state in :attr:`render_mode` (None when it is None).

        Returns:
            An ``[height, width, 3]`` uint8 image (``"rgb_array"``), an ``[height, width]``
            float depth image (``"depth_array"``), or None (``"human"``, or no render mode).

        Raises:
            RuntimeError: if no OpenGL context can be made (the message names ``MUJOCO_GL``).
        """
        if self.render_mode is None:
            return None
        return self.engine.render(0, self.render_mode)

    def close(self) -> None:
        """Releases the engine."""
        self.engine.close()

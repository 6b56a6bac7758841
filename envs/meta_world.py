"""Meta-World ML1 / ML10 / ML45 as metarl task families (needs ``pip install metarl[metaworld]``).

Meta-World (Yu et al., 2019, arXiv 1910.10897; v3 envs as in Meta-World+, arXiv 2505.11289,
github.com/Farama-Foundation/Metaworld) is 50 Sawyer manipulation task classes. Its meta-learning
benchmarks fix a train and a test split: ML1 = 50 train and 50 test goal variations of one class,
ML10 = 10 train classes and 5 held-out ones, ML45 = 45 and 5, with 50 goal variations per class.
This module keeps the benchmark's own split (``metaworld.ML1(name, seed)`` etc.):
:meth:`MetaWorldTaskDistribution.sample` draws from the train split, ``split="test"`` from the
held-out tasks.

A task is a frozen :class:`MetaWorldTask` (the class name and Meta-World's task data bytes), so it
pickles, compares and goes through ``set_tasks`` like any other task. :class:`MetaWorldEngine`
steps one Meta-World env per sub-env (sub-envs of one batch may belong to different classes);
Meta-World computes its reward in Python per env, so the engine loops over the envs. Per step,
``info["success"]`` is Meta-World's success flag (an episode succeeds when it is 1 at any step).

Building a benchmark's task lists runs Meta-World's own task generator (it resets every class 50
times): about 2 s for ML1, 20 s for ML10 and a minute for ML45 on one core, once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.core import (
    MUJOCO_RENDER_MODES,
    BatchedTaskEngine,
    EngineStep,
    Task,
    TaskDistribution,
    WorkerError,
)
from envs.mujoco.rendering import make_renderer, render_frame
from envs.slice_threads import SliceThreads

try:
    # the optional extra: absent where mypy runs without it
    import metaworld  # type: ignore[import-not-found, unused-ignore]
    import metaworld.env_dict as _env_dict  # type: ignore[import-not-found, unused-ignore]
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "Meta-World support needs the optional extra: pip install 'metarl[metaworld]' "
        f"(metaworld==3.1.1); importing it failed with: {err}"
    ) from err

__all__ = [
    "BENCHMARKS",
    "INFO_KEYS",
    "MetaWorldEngine",
    "MetaWorldTask",
    "MetaWorldTaskDistribution",
    "benchmark_classes",
]

#: The meta-learning benchmarks of Meta-World this module serves.
BENCHMARKS = ("ML1", "ML10", "ML45")

#: Per-step diagnostics of every Meta-World v3 env, passed on as ``info`` (float64).
INFO_KEYS = (
    "success",
    "near_object",
    "grasp_success",
    "grasp_reward",
    "in_place_reward",
    "obj_to_target",
    "unscaled_reward",
)

OBS_DIM = 39


@dataclasses.dataclass(frozen=True)
class MetaWorldTask(Task):
    """One Meta-World task: a task class and Meta-World's task data for it.

    Attributes:
        env_name: the task class, e.g. ``"reach-v3"``.
        data: Meta-World's task data (its pickled goal and object positions), as in
            ``metaworld.Task``.
    """

    family: ClassVar[str] = "metaworld"
    env_name: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.env_name, str) or not isinstance(self.data, bytes):
            raise TypeError(
                "MetaWorldTask needs env_name: str and data: bytes, got "
                f"{type(self.env_name).__name__} and {type(self.data).__name__}"
            )

    def __repr__(self) -> str:
        digest = hashlib.sha1(self.data).hexdigest()[:10]  # noqa: S324 - a label, not security
        return f"MetaWorldTask(env_name={self.env_name!r}, data=<{len(self.data)} bytes {digest}>)"

    def to_dict(self) -> dict[str, Any]:
        """Returns ``{"env_name": ..., "data": hex string}`` (JSON- and YAML-serialisable)."""
        return {"env_name": self.env_name, "data": self.data.hex()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaWorldTask:
        """Builds a task from :meth:`to_dict` output.

        Raises:
            ValueError: if a key is unknown or missing.
        """
        if set(data) != {"env_name", "data"}:
            raise ValueError(
                f"MetaWorldTask.from_dict expects the keys ['data', 'env_name'], got {sorted(data)}"
            )
        raw = data["data"]
        return cls(str(data["env_name"]), bytes.fromhex(raw) if isinstance(raw, str) else raw)

    @property
    def task_class(self) -> str:
        """The task class, by which evaluation groups its results."""
        return self.env_name

    def to_metaworld(self) -> Any:
        """The ``metaworld.Task`` that ``env.set_task`` takes."""
        return metaworld.Task(env_name=self.env_name, data=self.data)


def benchmark_classes(benchmark: str, task_name: str | None = None) -> dict[str, list[str]]:
    """The task classes of each split of a benchmark (without generating its tasks).

    Raises:
        ValueError: on an unknown benchmark or ML1 task name, listing the valid ones.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {list(BENCHMARKS)}, got {benchmark!r}")
    if benchmark == "ML1":
        names = list(_env_dict.ALL_V3_ENVIRONMENTS)
        if task_name not in names:
            raise ValueError(
                f"ML1 task_name={task_name!r} is not a Meta-World v3 task; the 50 names are: "
                f"{', '.join(names)}"
            )
        return {"train": [str(task_name)], "test": [str(task_name)]}
    if task_name is not None:
        raise ValueError(f"task_name is for ML1 only; {benchmark} fixes its classes")
    table = _env_dict.ML10_V3 if benchmark == "ML10" else _env_dict.ML45_V3
    return {split: list(table[split]) for split in ("train", "test")}


@functools.lru_cache(maxsize=8)
def _benchmark_tasks(
    benchmark: str, task_name: str | None, seed: int
) -> dict[str, tuple[MetaWorldTask, ...]]:
    """Meta-World's own train and test tasks of a benchmark (built once per process)."""
    if benchmark == "ML1":
        bench = metaworld.ML1(task_name, seed=seed)
    else:
        bench = getattr(metaworld, benchmark)(seed=seed)
    return {
        "train": tuple(MetaWorldTask(t.env_name, t.data) for t in bench.train_tasks),
        "test": tuple(MetaWorldTask(t.env_name, t.data) for t in bench.test_tasks),
    }


class MetaWorldTaskDistribution(TaskDistribution):
    """The tasks of one Meta-World benchmark, with the benchmark's train/test split.

    :meth:`sample` without a split draws uniformly (with replacement) from the train tasks;
    ``split="test"`` from the held-out ones. The task lists are built on first use.

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        task_name: ML1's task class (one of Meta-World's 50 v3 names, e.g. ``"reach-v3"``);
            must be None for ML10 and ML45.
        benchmark_seed: the seed Meta-World generates the benchmark's goals with.
        **kwargs: must be empty or None: the benchmark fixes its own train and test sets.

    Raises:
        ValueError: on an unknown benchmark or task name, or a split argument.
    """

    task_type: ClassVar[type[Task]] = MetaWorldTask
    options: ClassVar[tuple[str, ...]] = ("benchmark", "task_name", "benchmark_seed")

    def __init__(
        self,
        benchmark: str = "ML1",
        task_name: str | None = None,
        benchmark_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        given = sorted(k for k, v in kwargs.items() if v is not None)
        if given:
            raise ValueError(
                f"{given}: Meta-World's benchmark fixes its own train and test tasks; "
                "sample(split='test') draws from the held-out ones"
            )
        super().__init__(**kwargs)
        self.classes = benchmark_classes(benchmark, task_name)
        if isinstance(benchmark_seed, bool) or not isinstance(benchmark_seed, int):
            raise ValueError(f"benchmark_seed must be an int, got {benchmark_seed!r}")
        self.benchmark = benchmark
        self.task_name = task_name
        self.benchmark_seed = benchmark_seed

    def __repr__(self) -> str:
        name = f"{self.task_name!r}, " if self.task_name else ""
        return f"MetaWorld {self.benchmark}({name}seed={self.benchmark_seed})"

    def _tasks(self) -> dict[str, tuple[MetaWorldTask, ...]]:
        return _benchmark_tasks(self.benchmark, self.task_name, self.benchmark_seed)

    @functools.cached_property
    def _known(self) -> frozenset[MetaWorldTask]:
        tasks = self._tasks()
        return frozenset(tasks["train"] + tasks["test"])

    def split_tasks(self, split: str) -> list[Task]:
        """Returns the benchmark's ``"train"`` or ``"test"`` tasks, in Meta-World's order."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return list(self._tasks()[split])

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        pool = self._tasks()["train"]
        return [pool[i] for i in rng.integers(len(pool), size=n)]

    def validate(self, task: Task) -> None:
        """Checks that ``task`` is one of this benchmark's train or test tasks.

        Raises:
            TypeError: if ``task`` is not a :class:`MetaWorldTask`.
            ValueError: naming the task class, or saying the task belongs to another benchmark.
        """
        self._check_type(task)
        assert isinstance(task, MetaWorldTask)
        names = sorted(set(self.classes["train"]) | set(self.classes["test"]))
        if task.env_name not in names:
            raise ValueError(
                f"task class {task.env_name!r} is not part of {self!r}; its classes: {names}"
            )
        if task not in self._known:
            raise ValueError(
                f"{task!r} is not one of the train or test tasks of {self!r}: a task of "
                "another benchmark or benchmark_seed"
            )

    def describe(self) -> dict[str, str]:
        """The benchmark, its classes per split and how tasks are drawn."""
        return {
            "benchmark": repr(self),
            "train classes": ", ".join(self.classes["train"]),
            "test classes": ", ".join(self.classes["test"]),
            "data": "50 goal/object placements per class (Meta-World's task data); sample() "
            "draws train tasks, split='test' the held-out ones",
        }


class MetaWorldEngine(BatchedTaskEngine):
    """Steps ``num_envs`` Meta-World envs, each with its own task (of any class of the benchmark).

    Observations are Meta-World's 39-d float64 vectors (ML benchmarks hide the goal), actions
    ``Box(-1, 1, (4,))``. A sub-env's task takes effect at its next :meth:`reset`; the env of a
    class is built on first use and kept in a pool, so a sub-env switching class reuses an idle
    env of that class. Meta-World's own randomness is re-seeded from the sub-env's generator at
    every reset, so trajectories do not depend on how the batch is split across backends.

    Args:
        num_envs: number of sub-envs.
        nonfinite_action: ``"raise"`` (default): a NaN or infinite action raises ``ValueError``;
            ``"clip"``: NaN becomes 0 and +-inf the action bound.
        **task_kwargs: arguments of :class:`MetaWorldTaskDistribution`.

    Raises:
        TypeError: on an unknown argument.
    """

    distribution_cls: ClassVar[type[TaskDistribution]] = MetaWorldTaskDistribution
    #: Meta-World's frame rate: 1 / (timestep 0.0025 s * frame_skip 5)
    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(MUJOCO_RENDER_MODES),
        "render_fps": 80,
    }
    extra_keys = INFO_KEYS

    def __init__(self, num_envs: int, *, nonfinite_action: str = "raise", **task_kwargs: Any):
        accepted = self.distribution_cls.option_names()
        unknown = sorted(set(task_kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"MetaWorldEngine got unknown argument(s) {unknown}; it takes nonfinite_action "
                f"and those of MetaWorldTaskDistribution: {sorted(accepted)}"
            )
        super().__init__(num_envs, self.make_distribution(**task_kwargs))
        if nonfinite_action not in ("raise", "clip"):
            raise ValueError(
                f"nonfinite_action must be 'raise' or 'clip', got {nonfinite_action!r}"
            )
        self.nonfinite_action = nonfinite_action
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._envs: list[Any] = [None] * num_envs
        self._classes: list[str | None] = [None] * num_envs  # the class each sub-env's env is
        self._pool: dict[str, list[Any]] = {}
        self._ready = np.zeros(num_envs, dtype=bool)
        self._obs = np.zeros((num_envs, OBS_DIM))
        self._reward = np.zeros(num_envs)
        self._info = {k: np.zeros(num_envs) for k in INFO_KEYS}
        self._threads = SliceThreads(num_envs, "MetaWorldEngine")
        self._renderers: dict[int, tuple[Any, Any]] = {}

    def _apply_tasks(self, indices: np.ndarray) -> None:
        """Tasks are set on the Meta-World envs at the sub-envs' next reset."""

    def _env_for(self, i: int, env_name: str) -> Any:
        current = self._envs[i]
        if current is not None and self._classes[i] == env_name:
            return current
        if current is not None:
            self._pool.setdefault(str(self._classes[i]), []).append(current)
        idle = self._pool.get(env_name)
        if idle:
            env = idle.pop()
        else:
            env = _env_dict.ALL_V3_ENVIRONMENTS[env_name]()
        self._envs[i], self._classes[i] = env, env_name
        return env

    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Resets the listed sub-envs with their tasks and returns their observations."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_envs):
            raise ValueError(f"indices must be in [0, {self.num_envs}), got {idx.tolist()}")
        self.ensure_tasks(idx)
        for i in idx.tolist():
            task = self.tasks[i]
            assert isinstance(task, MetaWorldTask)
            env = self._env_for(i, task.env_name)
            env.set_task(task.to_metaworld())
            env.seed(int(self.rngs[i].integers(2**31 - 1)))
            obs, _ = env.reset()
            self._obs[i] = obs
        self._ready[idx] = True
        return self._obs[idx].copy()

    def check_actions(self, actions: Any) -> np.ndarray:
        """Returns ``actions`` as ``[n, 4]`` float32 (the action space's dtype), finite.

        Raises:
            ValueError: on a wrong shape or (``nonfinite_action="raise"``) a NaN or inf entry.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1:] != (4,):
            raise ValueError(f"actions must have shape ({self.num_envs}, 4), got {actions.shape}")
        finite = np.isfinite(actions)
        if finite.all():
            return actions.astype(np.float32)
        if self.nonfinite_action == "raise":
            rows = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"MetaWorldEngine: actions must be finite; sub-env(s) {rows.tolist()} got NaN or "
                f"inf; pass nonfinite_action='clip' to map NaN to 0 and +-inf to the bounds"
            )
        return np.nan_to_num(actions, nan=0.0, posinf=1.0, neginf=-1.0).astype(np.float32)

    def step(self, actions: np.ndarray) -> EngineStep:
        """Steps every sub-env once (Meta-World's ``env.step`` in a loop)."""
        actions = self.check_actions(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"actions must have shape ({self.num_envs}, 4), got {actions.shape}")
        if not self._ready.all():
            raise RuntimeError(
                f"reset sub-environments {np.flatnonzero(~self._ready).tolist()} before step()"
            )
        if self._threads.failed is not None:
            raise WorkerError(self._threads.failed)
        self._threads.run(functools.partial(self._step_slice, actions))
        extras = {k: v.copy() for k, v in self._info.items()}
        terminated = np.zeros(self.num_envs, dtype=bool)
        return EngineStep(self._obs.copy(), self._reward.copy(), terminated, {}, extras)

    def _step_slice(self, actions: np.ndarray, part: slice) -> None:
        for i in range(self.num_envs)[part]:
            obs, reward, _, _, info = self._envs[i].step(actions[i])
            self._obs[i] = obs
            self._reward[i] = reward
            for key, values in self._info.items():
                values[i] = float(info.get(key, np.nan))

    def set_num_threads(self, num_threads: int, worker_timeout: float | None = None) -> None:
        """Steps the sub-envs on ``num_threads`` threads (the ``thread`` backend).

        MuJoCo releases the GIL while it simulates; Meta-World's Python reward does not, so this
        gains little. Each sub-env is stepped exactly as with one thread.
        """
        self._threads.configure(num_threads, worker_timeout)

    def render(self, index: int, render_mode: str) -> Any:
        """Renders sub-env ``index`` with gymnasium's MuJoCo renderer (free camera).

        Raises:
            RuntimeError: before the sub-env's first reset, or if no OpenGL context can be made
                (naming ``MUJOCO_GL``).
        """
        env = self._envs[index]
        if env is None:
            raise RuntimeError(f"reset sub-environment {index} before render()")
        if index not in self._renderers or self._renderers[index][0] is not env:
            self._renderers[index] = (env, make_renderer(env.model, env.data))
        return render_frame(self._renderers[index][1], render_mode)

    def close(self) -> None:
        """Closes every Meta-World env and stops the stepping threads."""
        for _, renderer in self._renderers.values():
            try:
                renderer.close()
            except Exception:  # noqa: BLE001, S110 - a renderer without a context has nothing open
                pass
        self._renderers = {}
        self._threads.close()
        envs = [e for e in self._envs if e is not None]
        envs += [e for pool in self._pool.values() for e in pool]
        for env in envs:
            env.close()
        self._envs = [None] * self.num_envs
        self._classes = [None] * self.num_envs
        self._pool = {}

"""The vectorized task env: `num_envs` sub-envs, each with its own task, stepped as one batch.

Three backends share one :class:`TaskVectorEnv` (and ``"auto"`` picks one of them from the
env's measured step cost and the free cores, see :mod:`envs.auto_backend`):

- ``"sync"``: one :class:`~envs.core.BatchedTaskEngine` in this process steps every sub-env
  (natively batched numpy for the light envs; a tight loop over ``MjData`` with batched
  observations and rewards for MuJoCo).
- ``"thread"`` (MuJoCo envs): the same engine, its ``mj_step`` loop split into slices stepped on
  threads (``mj_step`` releases the GIL); observations and rewards stay batched in numpy.
- ``"process"``: :class:`ProcessEngine` splits the sub-envs into contiguous slices, one engine per
  process (this process steps the first slice while worker processes step the others), with
  actions, observations, rewards and terminations in shared memory; a step hands over through
  semaphores and pickles nothing (see :mod:`envs.process_engine`). Each sub-env draws from its
  own generator, so under one seed and the same tasks both backends give identical
  trajectories. A worker that raises or dies surfaces as :class:`WorkerError` in the
  parent within a fraction of a second, and one that does not answer within ``worker_timeout``
  seconds (stopped, deadlocked) as one then; :meth:`TaskVectorEnv.close` releases every process
  and shared-memory block.

The autoreset mode is stated in ``metadata["autoreset_mode"]`` and selectable: ``SAME_STEP`` (the
default: a finished sub-env is reset inside the same ``step``, its last observation in
``infos["final_obs"]``), ``NEXT_STEP`` (gymnasium's default) or ``DISABLED`` (the caller resets with
``reset(options={"reset_mask": mask})``; fixed-horizon MAML batches and RL² trials use this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.auto_backend import BackendChoice, choose_backend
from envs.core import BatchedTaskEngine, Task, row_views
from envs.process_engine import (
    DEFAULT_WORKER_TIMEOUT,
    ProcessEngine,
    WorkerError,
    check_worker_timeout,
)
from envs.registration import env_info, get_engine_class

__all__ = ["ProcessEngine", "TaskVectorEnv", "WorkerError", "make_vec"]

# the sub-envs waiting for a reset when there are none (read-only: it is shared by every step)
_NO_INDICES = np.zeros(0, dtype=np.int64)
_NO_INDICES.flags.writeable = False

_AUTORESET_NAMES = {
    "same_step": AutoresetMode.SAME_STEP,
    "next_step": AutoresetMode.NEXT_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def _as_autoreset_mode(mode: str | AutoresetMode) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return _AUTORESET_NAMES[str(mode).lower()]
    except KeyError:
        raise ValueError(
            f"autoreset_mode must be one of {sorted(_AUTORESET_NAMES)}, got {mode!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# the vector env
# --------------------------------------------------------------------------------------------


class TaskVectorEnv(VectorEnv):
    """A gymnasium ``VectorEnv`` whose sub-envs each carry their own task.

    Args:
        engine_cls: the batched engine class of the task family.
        num_envs: number of sub-envs.
        engine_kwargs: constructor arguments of the engine (env options such as reward weights).
        horizon: episode length H; an episode is truncated after H steps (None: no limit).
        autoreset_mode: ``"same_step"`` (default), ``"next_step"`` or ``"disabled"``.
        backend: ``"sync"``, ``"thread"`` (MuJoCo envs: slices of the batch stepped on
            threads, since ``mj_step`` releases the GIL), ``"process"``, or ``"auto"`` (one of
            them and its number of workers, from the measured step cost and the free cores:
            see :func:`~envs.auto_backend.choose_backend`; :attr:`backend` then says which and
            :attr:`backend_choice` why).
        num_workers: slices of the ``thread`` or ``process`` backend, each stepped by its own
            thread or process (default 2: for ``process``, this process and one worker
            process, see ``step_in_parent``); for ``"auto"`` the most it may use (default:
            every usable core).
        start_method: multiprocessing start method for the ``process`` backend.
        step_in_parent: whether this process steps the first slice of the ``process`` backend
            itself (default) or only waits for ``num_workers`` worker processes.
        tasks: optional initial tasks, one per sub-env.
        worker_timeout: seconds any one wait for a worker thread or process may last before
            :class:`WorkerError` names it (default 60; None: no limit; unused by ``sync``).

    ``infos`` holds every reward term (``[num_envs]`` arrays, summing to the reward) and the
    engine's extras, each with the gymnasium ``_key`` mask.
    """

    def __init__(
        self,
        engine_cls: type[BatchedTaskEngine],
        num_envs: int,
        *,
        engine_kwargs: dict[str, Any] | None = None,
        horizon: int | None = None,
        autoreset_mode: str | AutoresetMode = "same_step",
        backend: str = "sync",
        num_workers: int | None = None,
        start_method: str = "spawn",
        step_in_parent: bool = True,
        tasks: Sequence[Task] | None = None,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    ) -> None:
        worker_timeout = check_worker_timeout(worker_timeout)
        if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
            raise ValueError(f"horizon must be a positive int or None, got {horizon!r}")
        self.autoreset_mode = _as_autoreset_mode(autoreset_mode)
        kwargs = dict(engine_kwargs or {})
        #: what ``backend="auto"`` picked and why (None for the other backends)
        self.backend_choice: BackendChoice | None = None
        if backend == "auto":
            self.backend_choice = choose_backend(engine_cls, num_envs, kwargs, num_workers)
            backend = self.backend_choice.backend
            num_workers = self.backend_choice.num_workers
        if backend == "sync":
            if num_workers not in (None, 1):
                raise ValueError(f"num_workers={num_workers} needs backend='process'")
            self.engine: Any = engine_cls(num_envs, **kwargs)
        elif backend == "thread":
            self.engine = engine_cls(num_envs, **kwargs)
            if not hasattr(self.engine, "set_num_threads"):
                self.engine.close()
                raise ValueError(
                    f"backend='thread' steps MuJoCo envs on threads; {engine_cls.__name__} is "
                    "natively batched in numpy, use backend='sync'"
                )
            self.engine.set_num_threads(
                2 if num_workers is None else num_workers, worker_timeout=worker_timeout
            )
        elif backend == "process":
            workers = 2 if num_workers is None else num_workers
            self.engine = ProcessEngine(
                engine_cls,
                num_envs,
                workers,
                kwargs,
                start_method,
                step_in_parent=step_in_parent,
                worker_timeout=worker_timeout,
            )
        else:
            raise ValueError(
                f"backend must be 'sync', 'thread', 'process' or 'auto', got {backend!r}"
            )
        self.backend = backend
        self._slices_reset = backend == "process"  # ProcessEngine.step_autoreset
        self.num_envs = num_envs
        self.horizon = horizon
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": []}
        self.single_observation_space = self.engine.observation_space
        self.single_action_space = self.engine.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._action_batch_shape = (num_envs, *(self.single_action_space.shape or ()))
        # a sub-env's episode has lasted _steps - _started[i] steps: the steps this env has taken,
        # a Python int, less their count at the sub-env's last reset (no array update per step)
        self._steps = 0
        self._started = np.zeros(num_envs, dtype=np.int64)
        # the earliest of _started, kept in Python: whether a step may truncate an episode; and
        # whether any episode has terminated yet, for the process backend's in-step resets
        self._min_started = 0
        self._terminates = False
        # infos' keys, their gymnasium "_key" masks and a block of true masks to copy, built at
        # the first step (every step of an engine returns the same keys)
        self._set_info_keys(())
        # the process backend of an engine whose every term and extra is one float per sub-env
        # steps with rows (ProcessEngine.step_rows): the infos' keys, masks' included, up front
        self._row_keys: tuple[str, ...] | None = None
        if backend == "process" and self.engine.packed_info_keys is not None:
            self._set_info_keys(self.engine.packed_info_keys)
            self._row_keys = self._info_keys + self._mask_keys
        self._needs_reset = np.ones(num_envs, dtype=np.bool_)
        self._obs: np.ndarray | None = None
        if tasks is not None:
            self.set_tasks(tasks)

    @property
    def tasks(self) -> list[Task | None]:
        """The task of each sub-env."""
        return list(self.engine.tasks)

    @property
    def distribution(self) -> Any:
        """The task distribution of this env family."""
        return self.engine.distribution

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Gives sub-env ``i`` the task ``tasks[i]``; it takes effect at that sub-env's next reset.

        Raises:
            ValueError: if the count is wrong or a task is outside the distribution.
        """
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks expects {self.num_envs} tasks, got {len(tasks)}")
        self.engine.set_tasks(list(tasks))

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets every sub-env, or those in ``options["reset_mask"]``.

        Args:
            seed: an int (sub-env ``i`` gets ``seed + i``) or one seed per sub-env.
            options: ``"tasks"``: a list of tasks to set first; ``"reset_mask"``: a ``[num_envs]``
                bool array of the sub-envs to reset.
        """
        options = dict(options or {})
        if "tasks" in options:
            self.set_tasks(options.pop("tasks"))
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}")
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
            self.engine.seed(list(seeds))
        if mask is None:
            indices = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},)")
            indices = np.flatnonzero(mask)
        if mask is not None and self._obs is None and len(indices) < self.num_envs:
            raise ValueError("the first reset must reset every sub-env (no reset_mask)")
        self.engine.ensure_tasks(indices)
        obs = self.engine.reset(indices)
        if self._obs is None:
            self._obs = np.zeros((self.num_envs, *obs.shape[1:]), dtype=obs.dtype)
        self._obs[indices] = obs
        self._restart(indices)
        self._needs_reset[indices] = False
        return self._obs.copy(), {}

    def _restart(self, indices: np.ndarray) -> None:
        """Starts the listed sub-envs' episodes at the current step (and the earliest start)."""
        self._started[indices] = self._steps
        self._min_started = int(self._started.min())

    def _with_masks(
        self, terms: dict[str, np.ndarray], extras: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        """Every reward term and extra, then each one's gymnasium ``_key`` mask (all true).

        The masks are the rows of one fresh block, a copy of a cached all-true one (one
        allocation per step, not one per key, and each row is still the caller's own array).
        """
        infos: dict[str, Any] = {**terms, **extras}
        keys = tuple(infos)
        if keys != self._info_keys:  # the first step (an engine returns the same keys each step)
            self._set_info_keys(keys)
        infos.update(zip(self._mask_keys, self._mask_rows(self._mask_block.copy()), strict=True))
        return infos

    def _set_info_keys(self, keys: tuple[str, ...]) -> None:
        """The infos' keys, their gymnasium ``_key`` masks and the all-true block they copy."""
        self._info_keys, self._mask_keys = keys, tuple("_" + key for key in keys)
        self._mask_block = np.ones((len(keys), self.num_envs), dtype=np.bool_)
        self._mask_rows = row_views(len(keys))

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every sub-env; see the class docstring for autoreset behaviour."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != self._action_batch_shape:
            raise ValueError(
                f"actions must have shape {self._action_batch_shape}, got {actions.shape}"
            )
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        if same_step:  # finished sub-envs restart within their step: none waits for the next
            pending = _NO_INDICES
        else:  # the common step has no sub-env waiting for a reset: one any(), no index array
            pending = np.flatnonzero(self._needs_reset) if self._needs_reset.any() else _NO_INDICES
        if len(pending) and self.autoreset_mode == AutoresetMode.DISABLED:
            raise RuntimeError(
                f"sub-envs {pending.tolist()} finished their episode; with autoreset disabled, "
                "reset them with reset(options={'reset_mask': mask}) before stepping"
            )
        # this step truncates the episodes started at or before `latest` (None: no horizon); most
        # steps truncate none (the earliest start, kept in Python, says so), and then need no
        # comparison of every sub-env, nor an or with it
        latest = None if self.horizon is None else self._steps - (self.horizon - 1)
        if latest is not None and self._min_started <= latest:
            truncating, truncated = True, self._started <= latest
        else:
            truncating, truncated = False, np.zeros(self.num_envs, dtype=np.bool_)
        # the process backend resets the ended sub-envs within the step, on their own slices, in
        # steps that may end an episode (one has terminated before, or this one truncates): its
        # slices' test for ended episodes (two numpy calls each) in every step cost HalfCheetah,
        # which never terminates, more than the round trip it saves once per horizon (0.99x,
        # scratch A/B); Ant ends an episode in about every other step
        in_step_reset = same_step and self._slices_reset and (self._terminates or truncating)
        before_reset: np.ndarray | None = None
        if self._row_keys is not None:  # the infos in one dict from the rows and the masks
            step = self.engine.step_rows(actions, truncated if in_step_reset else None)
            obs_s, reward_s, terminated_s, rows, before_reset = step  # _s: in shared memory
            obs, reward, terminated = obs_s.copy(), reward_s.copy(), terminated_s.copy()
            masks = self._mask_rows(self._mask_block.copy())
            infos: dict[str, Any] = dict(zip(self._row_keys, rows + masks, strict=True))
        else:
            if in_step_reset:
                out, before_reset = self.engine.step_autoreset(actions, truncated)
            else:
                out = self.engine.step(actions)
            obs, reward, terminated = out.obs.copy(), out.reward.copy(), out.terminated.copy()
            infos = self._with_masks(out.reward_terms, out.extras)
        self._steps += 1
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and len(pending):
            obs[pending] = self.engine.reset(pending)
            reward[pending] = 0.0
            terminated[pending] = False
            truncated[pending] = False
            self._restart(pending)
            self._needs_reset[pending] = False
        done = terminated | truncated if truncating else terminated
        if same_step:
            if np.count_nonzero(done):  # count_nonzero: a third of any()'s cost on a bool row
                finished = np.flatnonzero(done)
                final_obs = obs.copy()
                if before_reset is None:
                    obs[finished] = self.engine.reset(finished)
                else:  # obs are after the resets already
                    final_obs[finished] = before_reset[finished]
                infos["final_obs"] = final_obs
                infos["_final_obs"] = done.copy()
                self._restart(finished)
                if self._slices_reset and not self._terminates:  # for the in-step resets
                    self._terminates = bool(terminated.any())
        else:
            self._needs_reset |= done
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Closes the engine (and the worker processes of the ``process`` backend)."""
        self.engine.close()


def make_vec(
    env_id: str,
    num_envs: int,
    *,
    tasks: Sequence[Task] | None = None,
    backend: str = "sync",
    num_workers: int | None = None,
    autoreset_mode: str | AutoresetMode = "same_step",
    horizon: int | None = None,
    start_method: str = "spawn",
    step_in_parent: bool = True,
    worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    **env_kwargs: Any,
) -> TaskVectorEnv:
    """Makes the vectorized version of a registered task env.

    Args:
        env_id: a registered id such as ``"metarl/HalfCheetahVel-v0"``.
        num_envs: number of sub-envs.
        tasks: optional tasks, one per sub-env (else each sub-env samples its own at first reset).
        backend: ``"sync"`` (one process, one thread), ``"thread"`` (MuJoCo envs: the batch
            split over threads in this process), ``"process"`` (worker processes, shared
            memory) or ``"auto"``: sync for the numpy-batched light envs and for batches whose
            step takes under 1 ms (measured on a 4-env probe); else, from the free cores (usable
            cores less the other runnable tasks): process, one slice per free core, with two or
            more; with one, sync for steps under 5 ms and thread (MuJoCo) for longer ones; with
            none, thread for MuJoCo envs, sync for the others. Every backend gives the same
            results.
        num_workers: slices of the ``thread`` or ``process`` backend (default 2: this
            process/thread steps one, a worker the other); for ``"auto"`` the most it may use.
        autoreset_mode: ``"same_step"``, ``"next_step"`` or ``"disabled"``.
        horizon: episode length; defaults to the id's registered ``max_episode_steps``.
        start_method: multiprocessing start method for the ``process`` backend.
        step_in_parent: whether this process steps one slice of the ``process`` backend itself.
        worker_timeout: seconds any one wait for a worker thread or process may last before
            :class:`WorkerError` names the worker and what it was doing (None: no limit).
        **env_kwargs: env constructor options overriding the registered defaults.

    Returns:
        A :class:`TaskVectorEnv`.

    Example:
        >>> import numpy as np
        >>> import envs
        >>> from envs.vector import make_vec
        >>> vec = make_vec("metarl/Navigation2D-v0", 4)
        >>> obs, _ = vec.reset(seed=0)
        >>> obs.shape
        (4, 2)
        >>> vec.close()
    """
    info = env_info(env_id)
    kwargs = {**info.kwargs, **env_kwargs}
    return TaskVectorEnv(
        get_engine_class(env_id),
        num_envs,
        engine_kwargs=kwargs,
        horizon=info.max_episode_steps if horizon is None else horizon,
        autoreset_mode=autoreset_mode,
        backend=backend,
        num_workers=num_workers,
        start_method=start_method,
        step_in_parent=step_in_parent,
        tasks=tasks,
        worker_timeout=worker_timeout,
    )

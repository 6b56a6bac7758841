"""The ``process`` backend of :class:`~envs.vector.TaskVectorEnv`: sub-env slices in processes.

:class:`ProcessEngine` splits the sub-envs into contiguous slices, one engine per process (this
process steps the first slice while worker processes step the others), with actions, observations,
rewards and terminations in shared memory. Each worker has two semaphores, ``go`` (the parent has a
command for it) and ``done`` (it has answered), and a two-word control block in shared memory saying
how the command and the answer travel: a ``step``, a ``step_autoreset`` (a step whose ended episodes
each slice resets at once: the vector env's same-step autoreset in one handover) or a ``reset``
needs nothing else (its data is in shared memory), so the lockstep loop exchanges no pipe message
and pickles nothing; other commands, their replies and errors go through the worker's pipe (the
worker's side is :mod:`envs.process_worker`). A waiting side spins on the semaphore's non-blocking
acquire for a short budget (:class:`~envs.spin_wait.AdaptiveSpin`), then blocks on it (a futex wait
on Linux), so a busy machine does not lose a core to spinning. A worker that raises or dies surfaces
as :class:`WorkerError` in the parent within a fraction of a second, and one that does not answer
within ``worker_timeout`` seconds (stopped, deadlocked, starved) surfaces as one then;
:meth:`ProcessEngine.close` releases every process and shared-memory block.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.core import BatchedTaskEngine, EngineStep, Task, WorkerError, row_views
from envs.process_worker import (
    _ANSWER_DONE,
    _CAST_SHIFT,
    _CMD_PIPE,
    _CMD_STEP,
    _CMD_STEP_AUTORESET,
    _PACKED,
    _SHARED_BY_CODE,
    _SHARED_COMMANDS,
    _SPIN_SECONDS,
    _run_command,
    _shared_arrays,
    _slice_view,
    _step_outputs,
    _worker_main,
)
from envs.spin_wait import AdaptiveSpin

__all__ = ["DEFAULT_WORKER_TIMEOUT", "ProcessEngine", "WorkerError", "check_worker_timeout"]

#: Seconds any one wait for a worker may last before :class:`WorkerError` (generous: a spawned
#: worker imports numpy, gymnasium and MuJoCo before its first answer).
DEFAULT_WORKER_TIMEOUT = 60.0


def check_worker_timeout(value: Any) -> float | None:
    """Checks a ``worker_timeout``: a positive finite number of seconds, or None (no limit).

    Raises:
        ValueError: naming the argument and the value received.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(
            f"worker_timeout must be a positive number of seconds or None, got {value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"worker_timeout must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


def _timed_acquire(sem: Any) -> Callable[[float], bool]:
    """``seconds -> bool``: ``sem.acquire(timeout=seconds)``."""
    return lambda seconds: bool(sem.acquire(timeout=seconds))


def _probe_info(
    engine: BatchedTaskEngine,
) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], np.dtype]:
    """Shapes and dtypes of one sub-env's reward terms and extras, from one step of a probe.

    Also the dtype the engine's ``check_actions`` gives an action of its space's dtype: the
    shared action array holds checked actions in it, so a slice steps exactly what ``step``
    would (a MuJoCo engine checks into float64; continuous actions of an engine that keeps the
    given dtype cross as float64 too, and a step casts them back to that dtype in the slices, so
    neither a float64 batch is rounded to its float32 space nor a float32 batch stepped in
    float64).
    """
    engine.seed([0])
    engine.ensure_tasks(np.zeros(1, dtype=np.int64))
    engine.reset(np.zeros(1, dtype=np.int64))
    space = engine.action_space
    action = np.zeros((1, *(space.shape or ())), dtype=space.dtype)
    if isinstance(space, spaces.Box):
        action[...] = np.clip(action, space.low, space.high)
    checked = np.asarray(engine.check_actions(action)).dtype
    if np.issubdtype(checked, np.floating):  # a float64 batch crosses unrounded, as sync steps it
        checked = np.promote_types(checked, np.float64)
    out = engine.step(action)
    info = {
        k: (tuple(np.asarray(v).shape[1:]), np.asarray(v).dtype)
        for k, v in (*out.reward_terms.items(), *out.extras.items())
    }
    return info, checked


class ProcessEngine:
    """Duck-typed :class:`~envs.core.BatchedTaskEngine` that spreads sub-envs over processes.

    Args:
        engine_cls: the engine class each worker builds for its slice.
        num_envs: total number of sub-envs.
        num_workers: number of slices the sub-envs are split into, each stepped by its own
            process (at most ``num_envs``).
        engine_kwargs: constructor arguments of the engine (must be picklable).
        start_method: multiprocessing start method (``"spawn"`` is safe beside torch threads;
            ``"fork"`` starts faster).
        poll_interval: seconds between liveness checks while waiting for a worker.
        worker_timeout: seconds any one wait for a worker (its start, or its answer to a
            command) may last; past it the worker is killed, the engine closed and
            :class:`WorkerError` raised naming the worker and the command. None: no limit.
        step_in_parent: this process steps the first slice itself while the worker processes
            step the others (``num_workers - 1`` worker processes), instead of idling in a pipe
            wait; it saves one process and one round trip per step. The trajectories are the
            same either way.
    """

    def __init__(
        self,
        engine_cls: type[BatchedTaskEngine],
        num_envs: int,
        num_workers: int,
        engine_kwargs: dict[str, Any] | None = None,
        start_method: str = "spawn",
        poll_interval: float = 0.05,
        step_in_parent: bool = True,
        spin_seconds: float = _SPIN_SECONDS,
        worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT,
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        if num_workers > num_envs:
            raise ValueError(f"num_workers={num_workers} exceeds num_envs={num_envs}")
        #: seconds one wait for a worker may last (None: no limit); may be changed at any time
        self.worker_timeout = check_worker_timeout(worker_timeout)
        kwargs = dict(engine_kwargs or {})
        probe = engine_cls(1, **kwargs)  # spaces, reward terms and validation in the parent
        # checks each action batch here, so a bad action is a ValueError, not a lost worker
        self._check_actions = probe.check_actions
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        self.reward_terms = probe.reward_terms
        self.distribution = probe.distribution
        self._info_specs, self._action_dtype = _probe_info(probe)
        self._extra_keys = [k for k in self._info_specs if k not in self.reward_terms]
        probe.close()
        self.num_envs = num_envs
        self.tasks: list[Task | None] = [None] * num_envs
        self._poll_interval = poll_interval
        # the parent spins only when it has a slice of its own: with every slice in a worker, a
        # spinning parent would take a core from them
        self._parent_spin = AdaptiveSpin(spin_seconds if step_in_parent else 0.0)
        self._spin = spin_seconds
        self._closed = False
        bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        self._slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        # slice index -> worker index; the parent's slice (0) has none
        self._local_slice = 0 if step_in_parent else None
        self._remote = [w for w in range(num_workers) if w != self._local_slice]
        self._local: BatchedTaskEngine | None = None
        self._local_view: dict[str, np.ndarray] = {}
        self._local_outputs: dict[str, np.ndarray] = {}
        self._packed: list[str] = []  # info keys that are rows of the packed block
        #: the reward terms, then the extras, where every one is a row of the packed block
        #: (:meth:`step_rows` applies; every registered env); None where one is not
        self.packed_info_keys: tuple[str, ...] | None = None
        self._blocks: dict[str, shared_memory.SharedMemory] = {}
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._go: list[Any] = []  # per worker: the parent has a command for it
        # per worker: its 'done' semaphore's non-blocking and timed acquire (built once: the
        # lockstep loop waits on them every step)
        self._done: list[tuple[Callable[[], bool], Callable[[float], bool]]] = []
        self._ctl = np.zeros((0, 2), dtype=np.int64)
        self._hung: set[int] = set()  # workers that did not answer in time: killed on close
        try:
            self._allocate()
            if self._local_slice is not None:
                start, stop = self._slices[self._local_slice]
                self._local = engine_cls(stop - start, **kwargs)
                self._local_view = _slice_view(self._arrays, start, stop)
                self._local_outputs = _step_outputs(self._local_view)
            self._start_workers(engine_cls, kwargs, start_method)
        except BaseException:
            self.close()
            raise

    def _allocate(self) -> None:
        n = self.num_envs
        obs_space, act_space = self.observation_space, self.action_space
        act_shape = act_space.shape if act_space.shape is not None else ()
        if obs_space.shape is None:
            raise ValueError(
                f"the process backend needs a shaped observation space, got {obs_space}"
            )
        specs = {
            "obs": ((n, *obs_space.shape), np.dtype(obs_space.dtype)),
            "actions": ((n, *act_shape), self._action_dtype),
            "reward": ((n,), np.dtype(np.float64)),
            "terminated": ((n,), np.dtype(np.bool_)),
            "reset_mask": ((n,), np.dtype(np.bool_)),
            # step_autoreset: the sub-envs truncated this step, and every observation before
            # the resets (its ended sub-envs' rows are read)
            "truncated": ((n,), np.dtype(np.bool_)),
            "final_obs": ((n, *obs_space.shape), np.dtype(obs_space.dtype)),
        }
        # one float64 per sub-env (every term, and most extras): rows of one block, which the
        # parent copies in one call per step instead of one per key
        float64 = np.dtype(np.float64)
        self._packed = packed = [k for k, s in self._info_specs.items() if s == ((), float64)]
        if packed:
            specs[_PACKED] = ((len(self._packed), n), float64)
        # the packed rows are the info keys in order (reward terms first, as _probe_info lists)
        if packed and packed == [*self.reward_terms, *self._extra_keys]:
            self.packed_info_keys = tuple(packed)
        self._packed_rows = row_views(len(packed))
        for key, (shape, dtype) in self._info_specs.items():
            if key not in self._packed:
                specs["info/" + key] = ((n, *shape), dtype)
        self._layout: dict[str, tuple[str, tuple[int, ...], str]] = {}
        for key, (shape, dtype) in specs.items():
            size = max(1, int(np.prod(shape)) * dtype.itemsize)
            block = shared_memory.SharedMemory(create=True, size=size)
            self._blocks[key] = block
            self._layout[key] = (block.name, shape, dtype.str)
        self._arrays: dict[str, np.ndarray] = _shared_arrays(self._layout, self._blocks, packed)

    def _start_workers(
        self, engine_cls: type[BatchedTaskEngine], kwargs: dict[str, Any], start_method: str
    ) -> None:
        ctx = mp.get_context(start_method)
        num = len(self._remote)
        # not a sub-env array: the workers get its name apart from the layout
        ctl_block = self._blocks["ctl"] = shared_memory.SharedMemory(create=True, size=16 * num + 1)
        self._ctl = np.ndarray((num, 2), dtype=np.int64, buffer=ctl_block.buf)
        self._ctl[...] = 0
        for w, (start, stop) in enumerate(self._slices[s] for s in self._remote):
            parent, child = ctx.Pipe()
            go, done = ctx.Semaphore(0), ctx.Semaphore(0)
            # typeshed types get_context(str) as BaseContext; each concrete context has Process
            proc = ctx.Process(  # type: ignore[attr-defined]
                target=_worker_main,
                args=(child, go, done, ctl_block.name, w, engine_cls, kwargs, start, stop)
                + (self._layout, self._packed, self._spin),
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
            self._go.append(go)
            self._done.append((functools.partial(done.acquire, False), _timed_acquire(done)))
        for w in range(len(self._procs)):
            self._recv(w, "start")

    @property
    def worker_pids(self) -> list[int]:
        """The process id of each worker process (the parent's own slice has none)."""
        return [int(proc.pid) for proc in self._procs]

    # -- messaging ---------------------------------------------------------------------------

    def _recv(self, w: int, cmd: str) -> Any:
        """The reply of worker ``w`` (the ``w``-th worker process, not slice ``w``) to ``cmd``.

        Waits for its ``done`` semaphore (one spin where it pays, then blocking waits with
        liveness and timeout checks), then for the pipe message if the control block announces
        one (a command's reply or an error).
        """
        conn, (try_done, wait_done) = self._conns[w], self._done[w]
        start, stop = self._slices[self._remote[w]]
        try:
            self._wait(w, cmd, try_done, wait_done, True)
            if self._ctl[w, 1] == _ANSWER_DONE:
                return None
            self._wait(w, cmd, conn.poll, conn.poll, False)
            status, payload = conn.recv()
        except (EOFError, ConnectionError, OSError) as err:
            self.close()
            raise WorkerError(
                f"worker {w} (sub-envs {start}..{stop - 1}) closed its pipe (exit code "
                f"{self._procs[w].exitcode})"
            ) from err
        except WorkerError:
            self.close()
            raise
        if status == "error":
            self.close()
            raise WorkerError(
                f"worker {w} (sub-envs {start}..{stop - 1}) raised on {cmd!r}:\n{payload}"
            )
        return payload

    def _wait(
        self,
        w: int,
        cmd: str,
        ready: Callable[[], bool],
        wait: Callable[[float], bool],
        spin: bool,
    ) -> None:
        """Returns once ``ready()`` (or ``wait(seconds)``) is true.

        Raises:
            WorkerError: if worker ``w`` died or did not answer within ``worker_timeout``.
        """
        proc = self._procs[w]
        start, stop = self._slices[self._remote[w]]
        deadline: float | None = None
        spin_budget = self._parent_spin.seconds if spin else 0.0
        # one spin per wait (none where it would not pay), then blocking waits; the clock is
        # read only once both found no answer: off the hot path
        ok = self._parent_spin.poll(ready) if spin else ready()
        while not (ok or wait(self._poll_interval)):
            if not proc.is_alive():
                raise WorkerError(
                    f"worker {w} (sub-envs {start}..{stop - 1}) died with exit code {proc.exitcode}"
                )
            if self.worker_timeout is None:
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.worker_timeout - self._poll_interval - spin_budget
            elif now >= deadline:
                self._hung.add(w)
                raise WorkerError(
                    f"worker {w} (sub-envs {start}..{stop - 1}, pid {proc.pid}) did not "
                    f"answer {cmd!r} within worker_timeout={self.worker_timeout} s; it may be "
                    "stopped (SIGSTOP), deadlocked or starved of CPU; the vector env is "
                    "closed and the worker killed"
                )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the process engine is closed")

    def _broadcast(self, cmd: str, per_slice: Sequence[Any]) -> list[Any]:
        """Runs ``cmd`` on every slice whose data is not None; the replies in slice order.

        For every command but ``step``, which takes :meth:`_step_slices`. ``reset`` (with
        its sub-envs marked in the shared ``reset_mask``) travels as ``step`` does, through the
        control word alone: an env whose episodes end early (Ant, Hopper, Walker2d) resets a few
        sub-envs in many steps, and a pipe message each way would cost more than the reset.

        The workers get their commands first, then the parent runs its own slice while they
        work, then their replies are collected (also when the parent's slice raised, so the
        pipes stay in step).
        """
        self._check_open()
        remote = [w for w, s in enumerate(self._remote) if per_slice[s] is not None]
        code = _SHARED_COMMANDS.get(cmd)
        for w in remote:
            try:
                if code is None:
                    self._conns[w].send((cmd, per_slice[self._remote[w]]))
                    self._ctl[w, 0] = _CMD_PIPE
                else:
                    self._ctl[w, 0] = code
                self._go[w].release()
            except (BrokenPipeError, OSError) as err:
                self.close()
                raise WorkerError(f"worker {w} is gone ({cmd!r} could not be sent)") from err
        replies: dict[int, Any] = {}
        local = self._local_slice
        try:
            if local is not None and per_slice[local] is not None:
                assert self._local is not None
                engine, view, data = self._local, self._local_view, per_slice[local]
                outputs = self._local_outputs
                run = functools.partial(_run_command, engine, view, outputs, cmd, data)
                replies[local] = self._parent_spin.work(run)
        finally:
            for w in remote:
                replies[self._remote[w]] = self._recv(w, cmd)
        return [replies[s] for s in sorted(replies)]

    def _split(self, indices: np.ndarray) -> list[np.ndarray | None]:
        parts: list[np.ndarray | None] = []
        for start, stop in self._slices:
            mine = indices[(indices >= start) & (indices < stop)] - start
            parts.append(mine if len(mine) else None)
        return parts

    # -- engine interface --------------------------------------------------------------------

    def seed(self, seeds: Sequence[int | None]) -> None:
        """Seeds each sub-env's generator (``seeds[i]`` for sub-env ``i``)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        self._broadcast("seed", [list(seeds[a:b]) for a, b in self._slices])

    def set_tasks(self, tasks: Sequence[Task], indices: Sequence[int] | None = None) -> None:
        """Validates the tasks here, then hands each worker its share."""
        idx = np.arange(self.num_envs) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(tasks) != len(idx):
            raise ValueError(f"expected {len(idx)} tasks, got {len(tasks)}")
        for task in tasks:
            self.distribution.validate(task)
        by_index = dict(zip(idx.tolist(), tasks, strict=True))
        per_worker: list[Any] = []
        for (start, _stop), local in zip(self._slices, self._split(idx), strict=True):
            if local is None:
                per_worker.append(None)
            else:
                per_worker.append(([by_index[int(i) + start] for i in local], local))
        self._broadcast("set_tasks", per_worker)
        for i, task in by_index.items():
            self.tasks[i] = task

    def ensure_tasks(self, indices: np.ndarray) -> None:
        """Has each worker sample a task, from the sub-env's own generator, where none is set."""
        parts = self._split(np.asarray(indices, dtype=np.int64))
        replies = self._broadcast("ensure_tasks", parts)
        slices = [s for s, p in enumerate(parts) if p is not None]
        for s, worker_tasks in zip(slices, replies, strict=True):
            start, stop = self._slices[s]
            self.tasks[start:stop] = worker_tasks

    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Resets the listed sub-envs and returns their observations."""
        self._check_open()
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_envs):
            raise ValueError(f"indices must be in [0, {self.num_envs}), got {indices.tolist()}")
        mask = self._arrays["reset_mask"]
        mask[...] = False
        mask[indices] = True
        if np.count_nonzero(mask) == len(indices):
            self._broadcast("reset", self._split(indices))
        else:  # repeated indices reset repeatedly, as in one process: the mask cannot say so
            self._broadcast("reset_listed", self._split(indices))
        return self._arrays["obs"][indices].copy()

    def step(self, actions: np.ndarray) -> EngineStep:
        """Steps every sub-env with ``actions`` (``[num_envs, *action_shape]``)."""
        return self._step(actions)

    def step_autoreset(
        self, actions: np.ndarray, truncated: np.ndarray
    ) -> tuple[EngineStep, np.ndarray]:
        """:meth:`step`, then a reset of every sub-env whose episode ended, in the same command.

        A sub-env's episode ended when it terminated or is marked in ``truncated`` (``[num_envs]``
        bool); each slice resets its own ended sub-envs right after stepping them, so the
        vector env's same-step autoreset costs no second round trip to the workers (an Ant
        batch ends an episode in about every other step under random actions).

        Returns:
            The step, whose observations are those after the resets, and the observations before
            them: ``[num_envs, *obs_shape]`` in shared memory, whose rows of the ended sub-envs
            are valid until the next step.
        """
        return self._step(actions, truncated), self._arrays["final_obs"]

    def step_rows(
        self, actions: np.ndarray, truncated: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.ndarray | None]:
        """:meth:`step` (:meth:`step_autoreset` given ``truncated``), terms and extras as rows.

        Returns:
            The observations, rewards and terminations in shared memory (as :meth:`step` gives
            them), the reward terms and extras as the rows of one fresh array in
            :attr:`packed_info_keys` order (the vector env builds its infos from them in one
            call: two dicts less on the lockstep loop's serial path), and the observations before
            :meth:`step_autoreset`'s resets (None for a plain step).
        """
        if self.packed_info_keys is None:
            raise ValueError("step_rows: a reward term or extra of this engine is not packed")
        self._send_step(actions, truncated)
        arrays = self._arrays
        rows = self._packed_rows(arrays[_PACKED].copy())
        final = None if truncated is None else arrays["final_obs"]
        return arrays["obs"], arrays["reward"], arrays["terminated"], rows, final

    def _step(self, actions: np.ndarray, truncated: np.ndarray | None = None) -> EngineStep:
        """A step (with ``truncated``: step_autoreset's), terms and extras in dicts."""
        if self.packed_info_keys is not None:  # the common case: every term, then every extra
            obs, reward, terminated, rows, _ = self.step_rows(actions, truncated)
            split = len(self.reward_terms)
            terms = dict(zip(self.reward_terms, rows[:split], strict=True))
            extras = dict(zip(self._extra_keys, rows[split:], strict=True))
            return EngineStep(obs, reward, terminated, terms, extras)
        self._send_step(actions, truncated)  # a term or extra with a block of its own
        arrays = self._arrays
        packed = arrays[_PACKED].copy() if self._packed else ()
        values = dict(zip(self._packed, packed, strict=True))
        for key in (*self.reward_terms, *self._extra_keys):
            if key not in values:
                values[key] = arrays["info/" + key].copy()
        terms = {k: values[k] for k in self.reward_terms}
        extras = {k: values[k] for k in self._extra_keys}
        return EngineStep(arrays["obs"], arrays["reward"], arrays["terminated"], terms, extras)

    def _send_step(self, actions: np.ndarray, truncated: np.ndarray | None) -> None:
        """Checks the actions, runs a step (step_autoreset given ``truncated``) on every slice."""
        self._check_open()
        actions = np.asarray(actions)
        arrays = self._arrays
        expected = arrays["actions"].shape
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        checked = self._check_actions(actions)
        code = _CMD_STEP
        if truncated is not None:
            np.copyto(arrays["truncated"], truncated)
            code = _CMD_STEP_AUTORESET
        shared = arrays["actions"]
        shared[...] = checked
        # the slices step the batch in the dtype the engine's check gave, as sync would: float32
        # actions cross the float64 array exactly and are cast back there
        cast = 0 if checked.dtype == shared.dtype else ord(checked.dtype.char)
        self._step_slices(code, cast)

    def _step_slices(self, code: int, cast: int) -> None:
        """:meth:`_broadcast` of a step (``code``: step or step_autoreset) to every slice, lean.

        The lockstep loop's hot path: a step goes to every slice, has its data in shared memory
        and no reply, so this only sets each worker's control word and semaphore, steps the
        parent's slice, and waits for every worker. ``cast``: 0, or the ``dtype.char`` code of
        the dtype the slices cast the shared actions to (in the control word's higher bits).
        """
        ctl, go = self._ctl, self._go
        cmd = _SHARED_BY_CODE[code]  # what the slices run; errors name the user's call, 'step'
        for w in range(len(self._remote)):
            ctl[w, 0] = code | cast << _CAST_SHIFT
            try:
                go[w].release()
            except OSError as err:
                self.close()
                raise WorkerError(f"worker {w} is gone ('step' could not be sent)") from err
        try:
            if self._local is not None:
                engine, view, outputs = self._local, self._local_view, self._local_outputs
                self._parent_spin.work(
                    functools.partial(_run_command, engine, view, outputs, cmd, cast)
                )
        finally:
            for w in range(len(self._remote)):
                self._recv(w, "step")

    def close(self) -> None:
        """Stops every worker and frees every shared-memory block (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for w in self._hung:  # SIGKILL also ends a stopped process; it would not read "close"
            self._procs[w].kill()
        for w, (conn, proc) in enumerate(zip(self._conns, self._procs, strict=False)):
            if proc.is_alive() and w < len(self._go):
                try:
                    conn.send(("close", None))
                    self._ctl[w, 0] = _CMD_PIPE
                    self._go[w].release()
                except (BrokenPipeError, OSError, ValueError):
                    pass
        for conn, proc in zip(self._conns, self._procs, strict=False):
            proc.join(timeout=2.0)
            if proc.is_alive():
                # SIGKILL, not SIGTERM: a stopped (SIGSTOP) process keeps SIGTERM pending, and
                # the workers install no SIGTERM handler, so SIGTERM would clean up nothing more
                proc.kill()
                proc.join(timeout=2.0)
            conn.close()
        if self._local is not None:
            self._local.close()
            self._local = None
        self._local_view = {}
        self._arrays = {}
        self._ctl = np.zeros((0, 2), dtype=np.int64)
        for block in self._blocks.values():
            block.close()
            try:
                block.unlink()
            except FileNotFoundError:
                pass
        self._blocks = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter shutdown
            pass

"""``backend="auto"`` of :func:`~envs.vector.make_vec`: sync, thread or process from measurements.

:func:`choose_backend` picks the backend and the number of workers from three things it measures
when the vector env is made:

1. *Whether the engine can be split at all.* Engines without ``set_num_threads`` (the light envs)
   step the whole batch in one numpy computation: ``sync``.
2. *The batch's step cost*: a probe engine of up to :data:`PROBE_ENVS` sub-envs is built, reset
   and stepped a few times with a zero action (the fastest step of a few, per sub-env, times
   ``num_envs``). Under :data:`MIN_PARALLEL_STEP_SECONDS` a split costs more in hand-over (a
   semaphore round trip between processes or a thread pool's dispatch, tens of microseconds to
   0.2 ms a step) than it saves: ``sync``.
3. *The cores free for workers*: the cores this process may use
   (``len(os.sched_getaffinity(0))``) less the other tasks running or waiting for a core now
   (:func:`~envs.spin_wait.runnable_tasks`, averaged over a few samples, rounded to the nearest
   whole core). With a second core idle: ``process`` with one slice per free core (the fastest
   backend when each process keeps its own core). Without one, MuJoCo engines (whose threads
   release the GIL in ``mj_step``) get ``thread``: its work sharing lets this thread step the
   slices a starved thread did not reach, so no step waits for a descheduled slice, while the
   second thread still gets its share of a core. Beside a busy-loop neighbour on a 2-core VM
   with 9-12 tasks runnable, thread ran at 1.3-2.2x sync and process at 1.1-1.2x (medians of six
   interleaved 1.5 s windows). With exactly one core free (one busy neighbour on two cores),
   ``sync`` keeps that core to itself and a second thread can only take turns with the
   neighbour on the other: a slice it holds when descheduled stalls the whole step, which costs
   more than the extra share brings unless the step is long, so there ``thread`` only from
   :data:`MIN_BUSY_THREAD_STEP_SECONDS` on (on a 2-core AMD EPYC VM beside one busy loop,
   medians of five or six interleaved 1.5 s windows: HalfCheetahVel 64 envs, a 2 ms step,
   thread 0.93x sync; AntDir 16 envs, 2-3 ms, 0.94x; HalfCheetahVel 256 envs, 7 ms, 1.04x;
   AntDir 64 envs, 8-9 ms, 1.09x). Engines whose threads hold the GIL (Meta-World's Python
   reward) get ``sync``.

``num_workers`` caps the workers (default: every usable core). The choice only affects speed:
every backend gives identical observations, rewards and tasks under the same seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.core import BatchedTaskEngine
from envs.spin_wait import mean_runnable_tasks, usable_cores

_usable_cores = usable_cores  # looked up at each call, so tests may replace it

__all__ = [
    "MIN_BUSY_THREAD_STEP_SECONDS",
    "MIN_PARALLEL_STEP_SECONDS",
    "PROBE_ENVS",
    "BackendChoice",
    "choose_backend",
    "measure_step_seconds",
]

#: Batch step cost (seconds) below which splitting the batch does not pay.
MIN_PARALLEL_STEP_SECONDS = 1e-3

#: Batch step cost (seconds) from which threads pay when exactly one core is free.
MIN_BUSY_THREAD_STEP_SECONDS = 5e-3

#: Sub-envs of the probe engine whose step is timed.
PROBE_ENVS = 4

_TIMED_STEPS = 3
_LOAD_SAMPLES = 8
_LOAD_SAMPLE_GAP = 0.002


@dataclass(frozen=True)
class BackendChoice:
    """What ``backend="auto"`` picked, and the measurements it picked it from."""

    backend: str
    """``"sync"``, ``"thread"`` or ``"process"``."""
    num_workers: int
    """Threads or processes (1 for ``sync``)."""
    step_seconds: float | None
    """Estimated seconds of one step of the whole batch on one core (None: not measured)."""
    free_cores: float | None
    """Usable cores less the other runnable tasks (None: not measured)."""
    reason: str
    """The rule that decided, in words."""


def measure_step_seconds(
    engine_cls: type[BatchedTaskEngine], num_envs: int, engine_kwargs: dict[str, Any]
) -> float:
    """Seconds one step of ``num_envs`` sub-envs takes on one core, from a small probe engine."""
    k = max(1, min(num_envs, PROBE_ENVS))
    engine = engine_cls(k, **engine_kwargs)
    try:
        idx = np.arange(k, dtype=np.int64)
        engine.seed(list(range(k)))
        engine.ensure_tasks(idx)
        engine.reset(idx)
        space = engine.action_space
        action = np.zeros((k, *(space.shape or ())), dtype=space.dtype)
        if isinstance(space, spaces.Box):
            action[...] = np.clip(action, space.low, space.high)
        engine.step(action)  # warm-up
        best = float("inf")
        for _ in range(_TIMED_STEPS):
            start = time.perf_counter()
            engine.step(action)
            best = min(best, time.perf_counter() - start)
    finally:
        engine.close()
    return best / k * num_envs


def _free_cores(cores: int) -> float:
    """Usable cores less the tasks other than this one running or waiting for a core."""
    # this process is running while it reads
    others = max(0.0, mean_runnable_tasks(_LOAD_SAMPLES, _LOAD_SAMPLE_GAP) - 1.0)
    return cores - others


def choose_backend(
    engine_cls: type[BatchedTaskEngine],
    num_envs: int,
    engine_kwargs: dict[str, Any] | None = None,
    num_workers: int | None = None,
    *,
    step_seconds: float | None = None,
    free_cores: float | None = None,
) -> BackendChoice:
    """Picks the backend for ``num_envs`` sub-envs of ``engine_cls`` (rule: module docstring).

    Args:
        engine_cls: the engine class of the env family.
        num_envs: sub-envs of the vector env.
        engine_kwargs: the engine's constructor options (for the probe).
        num_workers: most threads or processes to use (None: every usable core).
        step_seconds: the batch step cost, if already known (None: measure it).
        free_cores: the cores free for this vector env, if already known (None: measure).

    Raises:
        ValueError: if ``num_workers`` is not a positive int.
    """
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
    ):
        raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
    if not hasattr(engine_cls, "set_num_threads"):
        return BackendChoice("sync", 1, None, None, "natively batched in numpy")
    cores = _usable_cores()
    cap = min(cores if num_workers is None else num_workers, cores, num_envs)
    if cap < 2:
        return BackendChoice("sync", 1, None, None, f"room for {cap} worker")
    if step_seconds is None:
        step_seconds = measure_step_seconds(engine_cls, num_envs, dict(engine_kwargs or {}))
    if step_seconds < MIN_PARALLEL_STEP_SECONDS:
        reason = f"a step takes {step_seconds * 1e3:.2f} ms, too little to split"
        return BackendChoice("sync", 1, step_seconds, None, reason)
    if free_cores is None:
        free_cores = _free_cores(cores)
    # the nearest whole number of free cores: a second core idle most of the time is free (one
    # other task seen in a sample of ten read 1.9 free cores, and there threads ran at 0.81x the
    # process backend, median windows of scripts/bench_envs.py on a quiet 2-core VM)
    whole = int(free_cores + 0.5)
    if whole >= 2:
        workers = min(cap, whole)
        reason = f"{free_cores:.1f} cores free"
        return BackendChoice("process", workers, step_seconds, free_cores, reason)
    if whole == 1 and step_seconds < MIN_BUSY_THREAD_STEP_SECONDS:
        reason = (
            f"{free_cores:.1f} cores free and a {step_seconds * 1e3:.1f} ms step: "
            "one core to itself beats sharing the busy one"
        )
        return BackendChoice("sync", 1, step_seconds, free_cores, reason)
    if getattr(engine_cls, "THREADS_RELEASE_GIL", False):
        reason = f"{free_cores:.1f} cores free: threads share the work"
        return BackendChoice("thread", cap, step_seconds, free_cores, reason)
    reason = f"{free_cores:.1f} cores free"
    return BackendChoice("sync", 1, step_seconds, free_cores, reason)

"""Spin-then-block waits, for the ``process`` backend's lockstep loop.

Waking a process blocked on a semaphore or a pipe costs a scheduler round trip (hundreds of
microseconds on a virtual machine), comparable to stepping a slice of a cheap model, so a waiting
side first polls without sleeping for a short budget. That only pays while each process keeps its
own core: :class:`AdaptiveSpin` turns the spin off while the machine is busy or the spins find
nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["AdaptiveSpin", "mean_runnable_tasks", "runnable_tasks", "spin_poll", "usable_cores"]

_T = TypeVar("_T")

# After a spin that found no answer, the next waits block at once: 1, 2, 4, ... up to this many
# before one spins again. A spin fails when the other side is late, typically because it shares
# a core with this one or with another busy process; spinning then only takes that core from it
# (on a 2-core machine with one busy neighbour, spinning made the process backend 0.5x sync and
# blocking 1.05x). One successful spin restores spinning on every wait.
_MAX_SPIN_BACKOFF = 64

# Waits block while the CPU time this process got over recent commands is below this share of
# their wall time (each command's share weighted by _SHARE_WEIGHT in a running average; commands
# under _MIN_TIMED_SECONDS are too short for the clocks). Beside a busy-loop neighbour on an
# oversubscribed 2-core VM the parent's share was 0.78-0.99 (preemption mostly hits the waits,
# not the 1-2 ms steps, so the runnable-task count below is the main signal); the threshold sits
# low so that a hypervisor's steal on a quiet machine does not turn the spin off.
_MIN_CPU_SHARE = 0.85
_SHARE_WEIGHT = 0.1
_MIN_TIMED_SECONDS = 1e-4
# One command in _TIMED_EVERY is timed: reading the thread's CPU time is a system call, and the
# two reads and two clock reads of a timed command cost about as much as a numpy call, every step
# of the lockstep loop on both sides (the average then follows about the last 40 commands)
_TIMED_EVERY = 4

# Waits also block while the machine's runnable tasks (ours included) outnumber the cores this
# process may use by more than _SPARE_TASKS: the count is read from /proc/loadavg (Linux; the
# 1-minute load average elsewhere) at most every _LOAD_CHECK_SECONDS and averaged with weight
# _LOAD_WEIGHT, so a neighbour that starts spinning is seen within a fraction of a second.
_SPARE_TASKS = 0.5
_LOAD_CHECK_SECONDS = 0.05
_LOAD_WEIGHT = 0.2


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runnable_tasks() -> float:
    """Tasks running or waiting for a core on this machine now (this one included).

    The fourth field of Linux's ``/proc/loadavg`` (``running/total``); elsewhere the 1-minute
    load average.
    """
    try:
        with open("/proc/loadavg", "rb") as f:
            return float(f.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def mean_runnable_tasks(samples: int, gap: float) -> float:
    """:func:`runnable_tasks` averaged over ``samples`` reads ``gap`` seconds apart."""
    total = 0.0
    for i in range(samples):
        if i:
            time.sleep(gap)
        total += runnable_tasks()
    return total / samples


def spin_poll(ready: Callable[[], bool], seconds: float) -> bool:
    """True as soon as ``ready()`` is, calling it without sleeping for at most ``seconds``.

    ``ready`` may take what it waits for (a semaphore's non-blocking ``acquire``) or only look
    (a pipe's ``poll``).
    """
    deadline = time.perf_counter() + seconds
    while True:
        if ready():
            return True
        if time.perf_counter() >= deadline:
            return False


class AdaptiveSpin:
    """Spin-then-block waits that spin only while spinning pays.

    A wait first polls without sleeping for ``seconds`` (see :func:`spin_poll`), then blocks. The
    spin is skipped (the wait blocks at once) when either signal says it would only burn a core:

    - *This process does not keep its core.* :meth:`work` times one in four commands this side
      runs; the share of the wall time it got on the CPU (``time.thread_time`` over
      ``perf_counter``) is averaged over recent commands, and below ``_MIN_CPU_SHARE`` the
      machine has more runnable work than cores: a spin then spends this process's CPU share
      on nothing, and may hold the very core the other side waits for. It recovers by itself,
      since the work is timed whether or not the waits spin.
    - *The machine has more runnable tasks than cores* (:func:`runnable_tasks`, sampled every
      few tens of milliseconds and averaged): some process, perhaps the other side, is waiting
      for a core, and a spin would keep it waiting.
    - *Spins do not find the answer.* After a spin that found nothing, the next ``k`` waits block,
      ``k`` doubling with each failed spin up to ``_MAX_SPIN_BACKOFF`` and dropping back to 0
      after a successful one (a worker idle while the caller runs a policy, say).

    On a quiet machine every wait spins and the lockstep loop stays awake; on a busy one nearly
    every wait blocks.

    Args:
        seconds: the spin budget of one wait (0: always block).
    """

    def __init__(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"spin_seconds must be >= 0, got {seconds!r}")
        self.seconds = seconds
        self.spins = 0  # waits that spun, and of those, the ones the spin answered
        self.hits = 0
        self.cpu_share = 1.0  # recent CPU time / wall time of the timed work
        self.runnable = 0.0  # recent runnable tasks of the machine
        self._cores = usable_cores()
        self._next_check = 0.0
        self._skip = 0
        self._backoff = 1
        self._untimed = 0  # commands to run before the next timed one

    def busy(self) -> bool:
        """Whether this process lost CPU time, or the machine has more runnable tasks than cores."""
        now = time.perf_counter()
        if now >= self._next_check:
            self._next_check = now + _LOAD_CHECK_SECONDS
            self.runnable += _LOAD_WEIGHT * (runnable_tasks() - self.runnable)
        return self.cpu_share < _MIN_CPU_SHARE or self.runnable > self._cores + _SPARE_TASKS

    def poll(self, ready: Callable[[], bool]) -> bool:
        """True if ``ready()`` became true during this wait's spin; False: block now."""
        if self.seconds <= 0 or self.busy():
            return False
        if self._skip:
            self._skip -= 1
            return False
        self.spins += 1
        if spin_poll(ready, self.seconds):
            self.hits += 1
            self._backoff = 1
            return True
        self._skip = self._backoff
        self._backoff = min(2 * self._backoff, _MAX_SPIN_BACKOFF)
        return False

    def work(self, fn: Callable[[], _T]) -> _T:
        """Runs ``fn()``; one call in four also times the share of its wall time on the CPU."""
        if self.seconds <= 0:
            return fn()
        if self._untimed:
            self._untimed -= 1
            return fn()
        self._untimed = _TIMED_EVERY - 1
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn()
        finally:
            wall = time.perf_counter() - wall
            if wall > _MIN_TIMED_SECONDS:
                share = min(1.0, (time.thread_time() - cpu) / wall)
                self.cpu_share += _SHARE_WEIGHT * (share - self.cpu_share)

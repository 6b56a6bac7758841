"""The ``thread`` backend's work sharing: contiguous slices of sub-envs stepped on a thread pool.

An engine whose step is a loop over sub-envs (MuJoCo's ``mj_step`` releases the GIL; Meta-World's
Python reward mostly does not) hands that loop to :meth:`SliceThreads.run` as a function of a
slice. With more slices than threads, each thread takes the next unstepped slice, so a thread on
a slower (busier) core steps fewer sub-envs instead of holding up the batch; every sub-env is
stepped once, by one thread, exactly as in the serial loop, so trajectories do not change.

Example:
    >>> seen = []
    >>> threads = SliceThreads(8, "Demo")
    >>> threads.configure(2)
    >>> threads.run(lambda part: seen.extend(range(8)[part]))
    >>> sorted(seen)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> threads.close()
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Callable

from envs.core import WorkerError

__all__ = ["CHUNKS_PER_THREAD", "SliceThreads"]

CHUNKS_PER_THREAD = 4
"""Work-sharing granularity: slices per thread."""


class SliceThreads:
    """Runs a per-slice step function on ``num_threads`` threads (the caller's among them).

    Args:
        num_envs: Sub-envs of the engine.
        owner: The engine's name, for error messages and thread names.
    """

    def __init__(self, num_envs: int, owner: str) -> None:
        self.num_envs, self.owner = num_envs, owner
        self.num_threads = 1
        self.worker_timeout: float | None = None
        self.failed: str | None = None  # set when a stepping thread hung: no more steps
        self._slices = [slice(None)]
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def configure(self, num_threads: int, worker_timeout: float | None = None) -> None:
        """Uses ``num_threads`` threads from now on.

        A pool thread that has not finished its share of a step ``worker_timeout`` seconds after
        the calling thread finished its own raises :class:`~envs.core.WorkerError` (None: wait
        without limit); :attr:`failed` then says so and the pool is dropped.

        Raises:
            ValueError: If ``num_threads`` is not a positive int or exceeds the sub-envs.
        """
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        if num_threads > self.num_envs:
            raise ValueError(f"num_threads={num_threads} exceeds num_envs={self.num_envs}")
        self.close()
        size = max(1, -(-self.num_envs // (num_threads * CHUNKS_PER_THREAD)))
        self._slices = [
            slice(a, min(a + size, self.num_envs)) for a in range(0, self.num_envs, size)
        ]
        self.num_threads = num_threads
        self.worker_timeout = worker_timeout
        if num_threads > 1:
            name = f"metarl-{self.owner.lower()}"
            self._pool = concurrent.futures.ThreadPoolExecutor(num_threads - 1, name)

    def run(self, step_slice: Callable[[slice], None]) -> None:
        """Calls ``step_slice`` on every slice once: serially, or shared among the threads.

        Raises:
            WorkerError: If a pool thread overran ``worker_timeout``.
        """
        if self._pool is None:
            step_slice(slice(None))
            return
        counter = itertools.count()
        slices = self._slices

        def work() -> None:
            for k in counter:  # ``next`` on a count is atomic
                if k >= len(slices):
                    return
                step_slice(slices[k])

        futures = [self._pool.submit(work) for _ in range(self.num_threads - 1)]
        try:
            work()
        finally:
            self._wait(futures)

    def _wait(self, futures: list[concurrent.futures.Future[None]]) -> None:
        timeout = self.worker_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        for k, future in enumerate(futures, start=1):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.result(timeout=left)
            except concurrent.futures.TimeoutError:
                self.failed = (
                    f"{self.owner}: stepping thread {k} of {self.num_threads} did not finish its "
                    f"share of 'step' within worker_timeout={timeout} s; the engine no longer "
                    "steps (its state may still be in use by that thread)"
                )
                assert self._pool is not None
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                raise WorkerError(self.failed) from None

    def close(self) -> None:
        """Stops the pool threads (a later :meth:`configure` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

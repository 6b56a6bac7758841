"""Data parallelism over ranks with :mod:`torch.distributed`, launched by ``torchrun``.

A run with ``N`` ranks computes what a run with one rank computes: every rank draws the
meta-batch's tasks from the same seeded stream, takes its contiguous slice of them
(:func:`shard`), computes its share of the outer loss and gradient, and the shares are summed
across ranks (:func:`all_reduce_sum_`). Each task's env seeds derive from the task's index in the
meta-batch, never from the rank, so the world size changes only the order of float32 sums.
Ranks meet at collectives only, never per env step.

The world is read once from the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); without them the world is one rank and every
function here is a no-op, so single-process code pays nothing.

Example:
    >>> w = World()
    >>> (w.rank, w.size, w.is_main)
    (0, 1, True)
    >>> [list(shard(5, World(rank=r, size=2))) for r in range(2)]
    [[0, 1, 2], [3, 4]]
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "CollectiveError",
    "RankZeroError",
    "World",
    "all_reduce_sum_",
    "barrier",
    "broadcast_object",
    "collective_seconds",
    "concat_shards",
    "env_world",
    "finish_rank",
    "gather_objects",
    "init",
    "local_device",
    "mean_over_tasks",
    "on_main",
    "shard",
    "shutdown",
    "world",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
"""Seconds a collective waits for the other ranks before it fails (a dead rank is an error)."""


@dataclasses.dataclass(frozen=True)
class World:
    """Where this process stands among the ranks of a run.

    Attributes:
        rank: Global rank (0 writes the run directory).
        size: Number of ranks.
        local_rank: Rank on this machine (picks ``cuda:<local_rank>`` under ``--device cuda``).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size or self.local_rank < 0:
            raise ValueError(f"invalid world: rank {self.rank} of {self.size}")

    @property
    def is_main(self) -> bool:
        """Whether this rank writes checkpoints, metrics and eval files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one rank (collectives do something)."""
        return self.size > 1


_WORLD = World()
_TIMEOUT_S = DEFAULT_TIMEOUT_S


class CollectiveError(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or never joined."""


class RankZeroError(RuntimeError):
    """Rank 0 failed in :func:`on_main`; it reports the failure, the other ranks stop with this."""


_COLLECTIVE_SECONDS = 0.0


def collective_seconds() -> float:
    """Seconds this process has spent inside collectives (waiting for the others included).

    For profiling: the share of a run spent waiting at collectives rather than computing.
    """
    return _COLLECTIVE_SECONDS


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turns the backend's error of a collective into a :class:`CollectiveError` in one line."""
    global _COLLECTIVE_SECONDS
    started = time.perf_counter()
    try:
        yield
    except RuntimeError as err:  # gloo/NCCL raise DistBackendError, a RuntimeError, or plain ones
        detail = str(err).strip().splitlines()
        raise CollectiveError(
            f"rank {_WORLD.rank} of {_WORLD.size}: {what} failed: another rank stopped or did not "
            f"answer within the collective timeout ({_TIMEOUT_S:g} s, run.collective_timeout)"
            + (f" ({detail[0][:200]})" if detail else "")
            + "; continue from the last checkpoint with --resume"
        ) from err
    finally:
        _COLLECTIVE_SECONDS += time.perf_counter() - started


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def env_world() -> World:
    """The world the launcher's variables describe (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Unlike :func:`world` it needs no :func:`init`: the command line reads it to let only rank 0
    report, even for a failure before the ranks have met.

    Raises:
        ValueError: If the variables are not integers or are inconsistent.
    """
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:<LOCAL_RANK>`` for CUDA under a launcher, else ``device``.

    One GPU per local rank, as ``torchrun --nproc-per-node`` (one rank per GPU) expects.
    """
    w = env_world()
    if device.type != "cuda" or not w.distributed:
        return device
    return torch.device("cuda", w.local_rank)


def init(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Joins the ranks ``torchrun`` started, once per process (a world of one without it).

    Args:
        device: The compute device: gloo on CPU, NCCL on CUDA (each rank then uses
            ``cuda:<local_rank>``; the caller picks that device).
        timeout_s: Seconds a collective (and the rendezvous) waits before it fails.

    Returns:
        This process's :class:`World`.

    Raises:
        ValueError: If the torchrun variables are inconsistent or the timeout is not positive.
    """
    global _WORLD, _TIMEOUT_S
    if not timeout_s > 0:
        raise ValueError(f"collective timeout must be positive, got {timeout_s}")
    new = env_world()
    _TIMEOUT_S = timeout_s
    if new.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":  # NCCL: this rank's GPU is the current one (local_device)
            torch.cuda.set_device(local_device(device))
        _WORLD = new  # named in the error of a failed rendezvous
        with _collective("joining the process group"):
            dist.init_process_group(
                backend=backend,
                timeout=datetime.timedelta(seconds=timeout_s),
                rank=new.rank,
                world_size=new.size,
            )
    _WORLD = new
    return new


def world() -> World:
    """The world :func:`init` joined (one rank before, or without, it)."""
    return _WORLD


def shutdown() -> None:
    """Leaves the process group (a no-op in a world of one)."""
    global _WORLD
    if dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


def finish_rank() -> None:
    """Ends a rank whose work is complete and written, without tearing gloo down.

    Every rank first meets the others, so none leaves while a peer still needs it; then, in a
    world of several ranks, the process exits at once (status 0) after flushing its output.
    Tearing the process group down (or letting the interpreter finalise it) while a peer's gloo
    threads still hold its connections sometimes aborts that peer with ``std::terminate`` after
    finished work (seen about once in seven two-rank runs here, and in a two-rank test fixture
    under a loaded CI machine; pytorch/pytorch#179291 describes the same teardown race). In a
    world of one it leaves the group (:func:`shutdown`) and returns.
    """
    if not world().distributed:
        shutdown()
        return
    barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def shard(n: int, w: World | None = None) -> range:
    """This rank's contiguous slice of ``n`` items (tasks of a meta-batch, test tasks).

    The first ``n % size`` ranks get one item more; a rank may get none when ``n < size``.

    Args:
        n: Number of items.
        w: The world (default: :func:`world`).

    Returns:
        The indices this rank owns.
    """
    w = world() if w is None else w
    if n < 0:
        raise ValueError(f"cannot shard a negative count {n}")
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return range(start, start + base + (1 if w.rank < extra else 0))


def all_reduce_sum_(tensors: Sequence[Tensor]) -> None:
    """Sums ``tensors`` over the ranks, in place, with one collective (no-op for one rank).

    The tensors are flattened into one buffer (same dtype and device required), reduced, and
    copied back, so a whole gradient costs one round trip.

    Args:
        tensors: Tensors of this rank's shares; each holds the sum over ranks afterwards.
    """
    if not world().distributed or not tensors:
        return
    dtype, device = tensors[0].dtype, tensors[0].device
    for t in tensors:
        if t.dtype != dtype or t.device != device:
            raise ValueError("all_reduce_sum_ needs tensors of one dtype and device")
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    with _collective("all-reduce"):
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def mean_over_tasks(
    metrics: Mapping[str, Any],
    local_tasks: int,
    total_tasks: int,
    *,
    sums: Sequence[Tensor] = (),
) -> dict[str, Any]:
    """The meta-batch means of per-rank task means, in one collective with ``sums``.

    Each tensor metric is this rank's mean over its ``local_tasks`` tasks; the result is
    ``sum_r mean_r * local_tasks_r / total_tasks``, the mean over the whole meta-batch, equal on
    every rank (a NaN on any rank is a NaN everywhere, so every rank stops alike). Values that are
    not tensors (a learning rate) are the same on every rank and pass through. ``sums`` (e.g.
    gradients already scaled by ``local_tasks / total_tasks``) are summed in place by the same
    collective. With one rank the metrics come back unchanged.

    Args:
        metrics: Name to a scalar tensor (this rank's mean) or a rank-independent value.
        local_tasks: This rank's tasks (may be 0: its means are then ignored).
        total_tasks: Tasks of the meta-batch over every rank, >= 1.
        sums: Tensors to sum over ranks in place, of one dtype and device.

    Returns:
        The metrics, reduced tensors as 0-d tensors of the dtype of ``sums`` (float32 without).
    """
    w = world()
    if not w.distributed:
        return dict(metrics)
    if total_tasks < 1 or not 0 <= local_tasks <= total_tasks:
        raise ValueError(f"cannot weight {local_tasks} of {total_tasks} tasks")
    names = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    first = sums[0] if sums else (metrics[names[0]] if names else None)
    if first is None:
        return dict(metrics)
    dtype = sums[0].dtype if sums else torch.float32
    weight = local_tasks / total_tasks
    means = [
        (metrics[k].detach().to(first.device, dtype) * weight).reshape(())
        if local_tasks
        else torch.zeros((), dtype=dtype, device=first.device)
        for k in names
    ]
    all_reduce_sum_([*sums, *means])
    return {**metrics, **dict(zip(names, means, strict=True))}


def gather_objects(obj: Any) -> list[Any] | None:
    """Gathers one picklable object per rank on rank 0, in rank order.

    Returns:
        The list on rank 0 (``[obj]`` for one rank), None on the other ranks.
    """
    w = world()
    if not w.distributed:
        return [obj]
    out: list[Any] | None = [None] * w.size if w.is_main else None
    with _collective("gather"):
        dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a run directory decided once)."""
    if not world().distributed:
        return obj
    box = [obj]
    with _collective("broadcast"):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Waits for every rank (no-op for one rank)."""
    if world().distributed:
        with _collective("barrier"):
            dist.barrier()


def on_main(fn: Callable[[], T]) -> T:
    """Runs ``fn`` on rank 0 alone and gives its result to every rank (one broadcast).

    For what one rank does for all (preparing the run directory, reading a checkpoint): the
    other ranks wait for it, never read a half-written file, and need no shared file system.
    If ``fn`` raises on rank 0, rank 0 re-raises it (and reports it) while the other ranks raise
    :class:`RankZeroError`, instead of waiting forever for a result.

    Args:
        fn: The work; its result must be picklable (tensors are fine).

    Returns:
        ``fn()``'s result, on every rank.
    """
    w = world()
    if not w.distributed:
        return fn()
    if w.is_main:
        try:
            result = fn()
        except Exception as err:
            broadcast_object((False, f"{type(err).__name__}: {err}"))
            raise
        broadcast_object((True, result))
        return result
    ok, value = broadcast_object(None)
    if not ok:
        raise RankZeroError(f"rank 0 failed ({value.splitlines()[0]})")
    return value


def concat_shards(parts: Iterable[Sequence[Any]]) -> list[Any]:
    """Joins per-rank lists gathered by :func:`gather_objects` back into meta-batch order."""
    return [item for part in parts for item in part]

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

import dataclasses
import datetime
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "World",
    "all_reduce_sum_",
    "barrier",
    "broadcast_object",
    "concat_shards",
    "gather_objects",
    "init",
    "shard",
    "shutdown",
    "world",
]

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


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


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
    global _WORLD
    if timeout_s <= 0:
        raise ValueError(f"collective timeout must be positive, got {timeout_s}")
    size = _env_int("WORLD_SIZE", 1)
    new = World(_env_int("RANK", 0), size, _env_int("LOCAL_RANK", 0))
    if new.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
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
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def gather_objects(obj: Any) -> list[Any] | None:
    """Gathers one picklable object per rank on rank 0, in rank order.

    Returns:
        The list on rank 0 (``[obj]`` for one rank), None on the other ranks.
    """
    w = world()
    if not w.distributed:
        return [obj]
    out: list[Any] | None = [None] * w.size if w.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a run directory decided once)."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Waits for every rank (no-op for one rank)."""
    if world().distributed:
        dist.barrier()


def concat_shards(parts: Iterable[Sequence[Any]]) -> list[Any]:
    """Joins per-rank lists gathered by :func:`gather_objects` back into meta-batch order."""
    return [item for part in parts for item in part]

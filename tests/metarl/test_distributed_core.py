"""The distributed primitives: task shards, and a real two-process gloo all-reduce."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from metarl import distributed
from metarl.distributed import World, shard
from tests.helpers.gloo import free_port, rank_env


@pytest.mark.parametrize("n", [0, 1, 2, 5, 40, 41])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_every_task_once_in_order(n: int, size: int) -> None:
    parts = [list(shard(n, World(rank=r, size=size))) for r in range(size)]
    assert [i for part in parts for i in part] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_invalid_worlds_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="invalid world"):
        World(rank=2, size=2)
    with pytest.raises(ValueError, match="negative"):
        shard(-1)
    with pytest.raises(ValueError, match="timeout"):
        distributed.init(torch.device("cpu"), timeout_s=0)


def test_one_rank_collectives_are_identities() -> None:
    t = torch.arange(3.0)
    distributed.all_reduce_sum_([t])
    assert t.tolist() == [0.0, 1.0, 2.0]
    assert distributed.gather_objects("a") == ["a"]
    assert distributed.broadcast_object(7) == 7


def _worker(rank: int, port: int, out: dict) -> None:  # pragma: no cover - runs in a child
    rank_env(rank, port)
    w = distributed.init(torch.device("cpu"), timeout_s=30)
    a, b = torch.full((2,), float(rank + 1)), torch.tensor([[10.0 * (rank + 1)]])
    distributed.all_reduce_sum_([a, b])
    gathered = distributed.gather_objects(list(shard(5, w)))
    if w.is_main:
        out["a"], out["b"], out["g"] = a.tolist(), b.tolist(), gathered
    distributed.shutdown()


def test_two_gloo_ranks_sum_and_gather() -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(free_port(), out), nprocs=2, join=True)
        assert out["a"] == [3.0, 3.0]
        assert out["b"] == [[30.0]]
        assert distributed.concat_shards(out["g"]) == [0, 1, 2, 3, 4]

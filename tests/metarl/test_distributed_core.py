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
    distributed.finish_rank()  # a world of one: leaves the group and returns (no exit)
    assert not distributed.world().distributed


def _worker(rank: int, port: int, out: dict) -> None:  # pragma: no cover - runs in a child
    rank_env(rank, port)
    w = distributed.init(torch.device("cpu"), timeout_s=30)
    a, b = torch.full((2,), float(rank + 1)), torch.tensor([[10.0 * (rank + 1)]])
    distributed.all_reduce_sum_([a, b])
    gathered = distributed.gather_objects(list(shard(5, w)))
    if w.is_main:
        out["a"], out["b"], out["g"] = a.tolist(), b.tolist(), gathered
    distributed.finish_rank()


def test_two_gloo_ranks_sum_and_gather() -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(free_port(), out), nprocs=2, join=True)
        assert out["a"] == [3.0, 3.0]
        assert out["b"] == [[30.0]]
        assert distributed.concat_shards(out["g"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("size", [2, 3])
def test_balanced_minibatches_split_each_minibatch_evenly_and_weigh_by_valid_steps(
    monkeypatch, size: int
) -> None:
    from metarl.rl.parallel import balanced_minibatches
    from metarl.rl.returns import normalize_advantages
    from metarl.rl.trials import TrialChunks

    g = torch.Generator().manual_seed(0)
    n, c, t = 7, 2, 3  # 7 trials of 2 chunks of 3 steps
    adv = torch.randn(n, c, t, generator=g)
    mask = (torch.rand(n, c, t, generator=g) > 0.3).float()
    chunks = TrialChunks(
        torch.randn(n, c, t, 4, generator=g),
        torch.zeros(n, c, t),
        torch.zeros(n, c, t),
        adv,
        torch.zeros(n, c, t),
        mask,
        torch.zeros(n, c, 5),
    )
    order = torch.randperm(n, generator=g).tensor_split(2)  # minibatches of 4 and 3 trials
    pieces = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "_WORLD", World(rank=rank, size=size))
        pieces.append(balanced_minibatches(chunks, order, normalize=True))
    for k, mb in enumerate(order):
        whole = chunks.select(mb)
        expected = normalize_advantages(whole.advantages, whole.mask, per_task=False)
        parts = [p[k][0] for p in pieces]
        sizes = [0 if p is None else p.mask.shape[0] // c for p in parts]
        assert sum(sizes) == len(mb) and max(sizes) - min(sizes) <= 1
        # the pieces, in rank order, are the minibatch normalised over all of it
        joined = torch.cat([p.advantages for p in parts if p is not None])
        torch.testing.assert_close(joined, expected, rtol=0, atol=0)
        weights = [p[k][1] for p in pieces]
        valid = [0.0 if p is None else float(p.mask.sum()) for p in parts]
        assert weights == pytest.approx([v / float(whole.mask.sum()) for v in valid])
        assert sum(weights) == pytest.approx(1.0)

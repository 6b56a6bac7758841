"""Data-parallel helpers shared by the RL families (MAML-RL, RL²) over :mod:`metarl.distributed`.

A rank owns a contiguous slice of a batch's tasks or trials (:func:`owned`); its losses are its
*shares* of the whole batch's means (its own mean times the fraction of the batch it holds), so
summing shares and gradients over the ranks (:func:`weighted_sum`, :func:`sum_grads_`) gives what
one process computes on the whole batch, up to the order of float32 sums. In a world of one rank
every function here returns its input untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from metarl import distributed
from metarl.rl.returns import normalize_advantages

if TYPE_CHECKING:  # trials imports the evaluation, which imports this module
    from metarl.rl.trials import TrialChunks

__all__ = [
    "balanced_minibatches",
    "gathered_fields",
    "gathered_rows",
    "masked_stats",
    "minibatch_steps",
    "normalized",
    "owned",
    "skip_noise",
    "sum_grads_",
    "weighted_sum",
]


def owned(n: int, what: str) -> range:
    """The indices of this rank's items among ``n`` (all of them in a one-rank world).

    Args:
        n: Items in the batch (tasks of a meta-batch, trials).
        what: The config field that sets ``n``, for the error message.

    Raises:
        ValueError: If some rank would get no item.
    """
    world = distributed.world()
    if n < world.size:
        raise ValueError(f"{what}={n} is smaller than the {world.size} ranks: each needs one")
    return distributed.shard(n, world)


def weighted_sum(values: Sequence[Tensor], weight: float) -> list[Tensor]:
    """``sum over ranks of weight_r * value_r`` for 0-d values, with one collective.

    With ``weight`` the fraction of the batch this rank holds and ``values`` its means, the
    result is the batch's means. One rank: ``values`` unchanged.
    """
    if not distributed.world().distributed:
        return list(values)
    flat = torch.stack([v.detach().reshape(()).to(values[0].dtype) for v in values]) * weight
    distributed.all_reduce_sum_([flat])
    return list(flat.unbind())


def sum_grads_(params: Iterable[Tensor]) -> None:
    """Sums the ``.grad`` of ``params`` over the ranks in place, with one collective.

    A tensor without a gradient gets zeros first (its share is zero on this rank).
    """
    tensors = list(params)
    if not distributed.world().distributed:
        return
    for p in tensors:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    distributed.all_reduce_sum_([p.grad for p in tensors if p.grad is not None])


def masked_stats(values: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Count, mean and population std over every rank's valid entries of each ``values[k]``.

    Two collectives for all ``k`` (sums and counts, then squared deviations from the mean), the
    same two passes as :func:`metarl.rl.returns.normalize_advantages`.

    Returns:
        ``(count, mean, std)``, each ``[len(values)]``.
    """
    valid = [m if m.dtype == torch.bool else m != 0 for m in masks]
    zero = torch.zeros((), dtype=values[0].dtype, device=values[0].device)

    def total(xs: Iterable[Tensor]) -> Tensor:
        return torch.stack([torch.where(v, x, zero).sum() for x, v in zip(xs, valid, strict=True)])

    counts = torch.stack([v.sum().to(values[0].dtype) for v in valid])
    first = torch.stack([total(values), counts])
    distributed.all_reduce_sum_([first])
    sums, counts = first.unbind()
    mean = sums / counts.clamp_min(1.0)
    squares = total((x - m) ** 2 for x, m in zip(values, mean, strict=True))
    distributed.all_reduce_sum_([squares])
    return counts, mean, (squares / counts.clamp_min(1.0)).sqrt()


def normalized(x: Tensor, mask: Tensor, mean: Tensor, std: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / (std + eps)`` where ``mask`` is valid, 0 elsewhere (global statistics)."""
    valid = mask if mask.dtype == torch.bool else mask != 0
    return torch.where(valid, (x - mean) / (std + eps), x.new_zeros(()))


def balanced_minibatches(
    chunks: TrialChunks, minibatches: Sequence[Tensor], normalize: bool
) -> list[tuple[TrialChunks | None, float]]:
    """This rank's even share of each minibatch, from the whole batch held by every rank.

    Each minibatch's trials (global indices, the same on every rank) are cut into as many
    contiguous pieces as there are ranks, sizes differing by at most one trial, and this rank
    takes its piece, so every rank computes the same amount at every optimiser step and none
    waits at the gradient all-reduce for a rank that drew more of the minibatch. Advantages are
    normalised with the whole minibatch's statistics, computed here without a collective.

    Args:
        chunks: Every trial of the batch ``[N, C, T, ...]``, in batch order.
        minibatches: Global trial indices of each minibatch.
        normalize: Normalise the advantages over each minibatch's valid steps.

    Returns:
        Per minibatch: this rank's chunks of it (None if its piece is empty) and its weight,
        its valid steps over the minibatch's (a loss's mean times the weight is this rank's
        share of the minibatch mean).
    """
    w = distributed.world()
    per_trial = chunks.mask.shape[1]  # chunks of one trial: rows of a selection
    pieces: list[TrialChunks | None] = []
    totals, mine = [], []
    for mb in minibatches:
        # the whole minibatch's advantages and mask (for its statistics and the weight), but
        # every other field only for this rank's piece: ``select`` rows are trial-major
        adv, mask = chunks.advantages[mb].flatten(0, 1), chunks.mask[mb].flatten(0, 1)
        if normalize:
            adv = normalize_advantages(adv, mask, per_task=False)
        sizes = [len(p) for p in mb.tensor_split(w.size)]
        first = sum(sizes[: w.rank])
        start, stop = first * per_trial, (first + sizes[w.rank]) * per_trial
        part = None
        if stop > start:
            part = chunks.select(mb[first : first + sizes[w.rank]])
            part = part._replace(advantages=adv[start:stop])
        pieces.append(part)
        totals.append((mask != 0).sum())
        mine.append((mask[start:stop] != 0).sum())
    # the weights are plain floats for the loss scaling: one host sync for all minibatches
    stacked = torch.stack([torch.stack(mine), torch.stack(totals)]).double()
    weights = (stacked[0] / stacked[1].clamp_min(1.0)).tolist()
    return [
        (part, weight) if part is not None and weight != 0 else (None, 0.0)
        for part, weight in zip(pieces, weights, strict=True)
    ]


def minibatch_steps(
    chunks: TrialChunks,
    split: tuple[range, int],
    count: int,
    epochs: int,
    generator: torch.Generator,
    normalize: bool,
    loss_fn: Callable[[TrialChunks], list[Tensor]],
    step: Callable[[Tensor | None], None],
    names: Sequence[str],
) -> dict[str, Tensor]:
    """Epochs of optimiser steps on minibatches of global trial indices, over ranks.

    Every epoch splits a permutation of all the batch's trials (the same on every rank: one
    generator seeded alike) into ``count`` minibatches, as one process does. The ranks first
    share their trials (two collectives: every rank then holds the whole batch), then each
    computes the loss of its even share of a minibatch (:func:`balanced_minibatches`; advantages
    normalised with the whole minibatch's statistics when ``normalize``), weighted by its share
    of the minibatch's valid steps, and ``step`` sums the gradients over ranks before the update.

    Args:
        chunks: This rank's trials ``[n, C, T, ...]``.
        split: This rank's trial indices and the batch's number of trials.
        count: Minibatches per epoch.
        epochs: Passes over the batch.
        generator: Draws the permutations (on ``chunks``' device).
        normalize: Normalise advantages per minibatch over all ranks.
        loss_fn: ``mb -> [loss, *metrics]``, means over this rank's part ``mb`` of a minibatch.
        step: Steps on a loss share (None when this rank holds none of the minibatch) after
            summing the gradients over ranks.
        names: The metrics' names.

    Returns:
        The last minibatch's metrics, over all ranks.
    """
    num, device = split[1], chunks.mask.device
    perms = [torch.randperm(num, generator=generator, device=device) for _ in range(epochs)]
    order = [mb for perm in perms for mb in perm.tensor_split(count)]
    whole = type(chunks)(*gathered_fields(chunks, device))
    values, weight = [torch.zeros(())] * len(names), 0.0
    for mb, weight in balanced_minibatches(whole, order, normalize):
        loss, values = None, [torch.zeros(())] * len(names)
        if mb is not None:
            loss, *values = loss_fn(mb)
            loss = loss * weight
        step(loss)
    total = weighted_sum([v.detach().reshape(()) for v in values[: len(names)]], weight)
    return dict(zip(names, total, strict=True))


def skip_noise(policy: Any, template: Any, generator: torch.Generator, draws: int) -> None:
    """Advances ``generator`` past ``draws`` action draws shaped like ``template``.

    An evaluation split over ranks by chunks of tasks keeps one generator running through the
    chunks, as one process does: a rank starting at chunk ``c`` first draws (and drops) the
    noise of the chunks before it, which is cheap next to stepping their envs.
    """
    for _ in range(draws):
        policy.sample(template, generator)


def _joined(mine: Sequence[Tensor], join: Any, device: torch.device) -> list[Tensor]:
    """Every rank's ``mine`` joined by ``join`` on rank 0, then on every rank (two collectives)."""
    gathered = distributed.gather_objects([t.cpu() for t in mine])
    joined = None if gathered is None else join(gathered)
    return [t.to(device) for t in distributed.broadcast_object(joined)]


def gathered_rows(rows: list[Tensor], device: torch.device) -> list[Tensor]:
    """Every rank's rows (its contiguous chunks, in rank order: chunk order), on every rank."""
    if not distributed.world().distributed:
        return rows
    return _joined(rows, distributed.concat_shards, device)


def gathered_fields(fields: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """Each of ``fields`` (this rank's rows of a batch) joined over the ranks along dim 0.

    Two collectives; ranks in order, so contiguous shards come back in batch order.
    """
    if not distributed.world().distributed:
        return list(fields)
    return _joined(fields, lambda parts: [torch.cat(c) for c in zip(*parts, strict=True)], device)

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

if TYPE_CHECKING:  # trials imports the evaluation, which imports this module
    from metarl.rl.trials import TrialChunks

__all__ = [
    "gathered_rows",
    "local_rows",
    "masked_stats",
    "minibatch_steps",
    "normalized",
    "owned",
    "skip_noise",
    "sum_grads_",
    "trial_minibatches",
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


def local_rows(indices: Tensor, rows: range) -> Tensor:
    """Where this rank holds the items ``indices`` (global), as positions in its slice ``rows``.

    A minibatch drawn over the whole batch's indices is split this way: each rank computes the
    rows it holds (possibly none).
    """
    keep = (indices >= rows.start) & (indices < rows.stop)
    return indices[keep] - rows.start


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


def trial_minibatches(
    chunks: TrialChunks, rows: range, minibatches: Sequence[Tensor], normalize: bool
) -> list[tuple[TrialChunks | None, float]]:
    """This rank's part of each minibatch of trials drawn over the whole batch's trial indices.

    Args:
        chunks: This rank's trials ``[n, C, T, ...]``, the trials ``rows`` of the batch.
        rows: Their indices in the batch.
        minibatches: Global trial indices of each minibatch (every rank draws the same).
        normalize: Normalise the advantages with each minibatch's statistics over all ranks.

    Returns:
        Per minibatch: this rank's chunks of it (None if it holds none of its trials) and its
        weight, its valid steps over the minibatch's (a loss's mean times the weight is this
        rank's share of the minibatch mean).
    """
    parts = [chunks.select(local_rows(mb, rows)) for mb in minibatches]
    counts, mean, std = masked_stats([p.advantages for p in parts], [p.mask for p in parts])
    # the weights are plain floats for the loss scaling: one host sync for all minibatches
    mine_all = torch.stack([(p.mask != 0).sum().to(counts.dtype) for p in parts])
    weights = (mine_all.double() / counts.double().clamp_min(1.0)).tolist()
    out: list[tuple[TrialChunks | None, float]] = []
    for k, part in enumerate(parts):
        if part.mask.shape[0] == 0 or weights[k] == 0:
            out.append((None, 0.0))
            continue
        if normalize:
            adv = normalized(part.advantages, part.mask, mean[k], std[k])
            part = part._replace(advantages=adv)
        out.append((part, weights[k]))
    return out


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
    generator seeded alike) into ``count`` minibatches, as one process does; each rank computes
    the loss of its rows of a minibatch (advantages normalised with the whole minibatch's
    statistics when ``normalize``), weighted by its share of the minibatch's valid steps, and
    ``step`` sums the gradients over ranks before the update.

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
    rows, num, device = split[0], split[1], chunks.mask.device
    perms = [torch.randperm(num, generator=generator, device=device) for _ in range(epochs)]
    order = [mb for perm in perms for mb in perm.tensor_split(count)]
    values, weight = [torch.zeros(())] * len(names), 0.0
    for mb, weight in trial_minibatches(chunks, rows, order, normalize):
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


def gathered_rows(rows: list[Tensor], device: torch.device) -> list[Tensor]:
    """Every rank's rows (its contiguous chunks, in rank order: chunk order), on every rank."""
    if not distributed.world().distributed:
        return rows
    parts = distributed.gather_objects([r.cpu() for r in rows])
    joined = None if parts is None else distributed.concat_shards(parts)
    return [r.to(device) for r in distributed.broadcast_object(joined)]

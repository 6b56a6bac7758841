"""Siamese networks (Koch, Zemel & Salakhutdinov 2015) for one-shot classification.

Twin encoders with shared weights embed two images; the probability that they show the same
class is ``p(x1, x2) = σ(Σ_j α_j |f(x1)_j - f(x2)_j| + b)`` (Koch et al. §3.1, Eq. 1: a
weighted L1 distance), trained with binary cross-entropy on same/different pairs (§3.2). At test
time an N-way one-shot task is solved by the most similar support image (§4.2): the query takes
the class of the support image with the highest ``p``; with K > 1 shots, of the most similar
support image over all shots (nearest neighbour).

Pairs come from the same episodes as the other learners: every (query, support) pair of a
training task, labelled same when their classes match. A task has ``W - 1`` different pairs for
each same pair, so the two kinds are weighted to count equally, as the balanced pairs of Koch
et al. would. The paper's encoder (105x105 input, four larger convolutions, 4096-d sigmoid
features) is replaced by the suite's conv4 backbone, as for the other metric learners, and its
layer-wise learning rates, momentum and L2 penalties by the configured optimiser.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from envs.supervised import TaskBatch
from metarl.algorithms.metric_common import (
    check_embeddings,
    check_metric_learner_config,
    query_accuracy,
)
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    embed_tasks,
    task_metric,
)
from metarl.functional import Params

__all__ = ["SiameseLearner", "nearest_support_scores", "pair_logits", "pair_loss"]

_WEIGHT_STD = 0.2
"""Std of the initial L1 weights α (Koch et al. §3.2: fully connected weights from N(0, 0.2))."""
_BIAS_MEAN = 0.5
"""Mean of the initial bias b (Koch et al. §3.2: biases from N(0.5, 0.01))."""


def pair_logits(support_emb: Tensor, query_emb: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Same-class logits of every (query, support) pair: ``Σ_j α_j |q_j - s_j| + b``.

    Args:
        support_emb: ``[task, support, dim]``.
        query_emb: ``[task, query, dim]``.
        weight: ``[dim]`` L1 weights α.
        bias: Scalar bias b.

    Returns:
        ``[task, query, support]`` logits (σ of them is Koch et al.'s ``p``).

    Raises:
        ValueError: If the shapes do not match.
    """
    check_embeddings(support_emb, query_emb)
    if weight.shape != support_emb.shape[2:]:
        raise ValueError(
            f"weight must be [dim] = {tuple(support_emb.shape[2:])}, got {tuple(weight.shape)}"
        )
    distance = (query_emb.unsqueeze(2) - support_emb.unsqueeze(1)).abs()  # [T, Q, S, D]
    return distance @ weight + bias


def pair_loss(logits: Tensor, support_y: Tensor, query_y: Tensor) -> Tensor:
    """Binary cross-entropy of the pairs, same and different pairs weighted to count equally.

    Args:
        logits: ``[task, query, support]`` from :func:`pair_logits`.
        support_y: ``[task, support]`` int64 labels.
        query_y: ``[task, query]`` int64 labels.

    Returns:
        Scalar: ``½ mean BCE over same pairs + ½ mean BCE over different pairs``.

    Raises:
        ValueError: If the shapes do not match or there are no same or no different pairs.
    """
    if logits.shape != (*query_y.shape, support_y.shape[1]) or support_y.shape[0] != len(logits):
        raise ValueError(
            f"logits must be [task, query, support] = {(*query_y.shape, support_y.shape[1])}, "
            f"got {tuple(logits.shape)}"
        )
    same = query_y.unsqueeze(2) == support_y.unsqueeze(1)  # [T, Q, S]
    if bool(same.all()) or not bool(same.any()):
        raise ValueError("pair_loss needs both same-class and different-class pairs")
    bce = F.binary_cross_entropy_with_logits(logits, same.to(logits.dtype), reduction="none")
    return 0.5 * (bce[same].mean() + bce[~same].mean())


def nearest_support_scores(logits: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Each class's score for each query: its most similar support image's logit.

    Args:
        logits: ``[task, query, support]`` pair logits.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``, every class present.
        ways: Number of classes ``W``.

    Returns:
        ``[task, query, ways]``; the argmax is the class of the most similar support image.
    """
    if support_y.shape != (logits.shape[0], logits.shape[2]):
        raise ValueError(
            f"support_y must be [task, support] = {(logits.shape[0], logits.shape[2])}, got "
            f"{tuple(support_y.shape)}"
        )
    member = F.one_hot(support_y, ways).bool().transpose(1, 2)  # [T, W, S]
    masked = logits.unsqueeze(2).masked_fill(~member.unsqueeze(1), float("-inf"))  # [T,Q,W,S]
    return masked.amax(dim=-1)


class SiameseLearner(FixedStepSizes):
    """Siamese networks as a supervised learner: pairs from episodes, nearest-support test.

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_*``).
        device: Where the parameters live.
        generator: Initialises the encoder and the L1 weights.

    Raises:
        ValueError: If the task family or the network does not suit a metric learner.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_metric_learner_config(cfg, ("conv4_maxpool", "conv4_strided"))
        self.cfg = cfg
        self.model = build_model(cfg, generator, device, embedding=True)
        dim = int(self.model.embedding_dim)  # type: ignore[arg-type]  # an int attribute of Conv4
        self._head = {
            "head.weight": torch.randn(dim, generator=generator, device=generator.device)
            .mul_(_WEIGHT_STD)
            .to(device),
            "head.bias": torch.tensor(_BIAS_MEAN, device=device),
        }

    def init_params(self) -> Params:
        """The encoder's weights (``embedding.*``) and the L1 weights and bias (``head.*``)."""
        params = {
            f"embedding.{k}": v.detach().clone().requires_grad_()
            for k, v in self.model.named_parameters()
        }
        params.update({k: v.clone().requires_grad_() for k, v in self._head.items()})
        return params

    def pair_logits(self, params: Params, batch: TaskBatch) -> Tensor:
        """Embeds the whole batch; returns the ``[task, query, support]`` same-class logits."""
        encoder = {k[10:]: v for k, v in params.items() if k.startswith("embedding.")}
        support, query = embed_tasks(self.model, encoder, batch)
        return pair_logits(support, query, params["head.weight"], params["head.bias"])

    def query_scores(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """``[task, query, ways]``: each class's most similar support image's logit."""
        return nearest_support_scores(self.pair_logits(params, batch), batch.support_y, ways)

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Balanced pair cross-entropy; logs the nearest-support query accuracy."""
        ways = self.cfg.task.train_ways or self.cfg.task.ways
        logits = self.pair_logits(params, batch)
        loss = pair_loss(logits, batch.support_y, batch.query_y)
        scores = nearest_support_scores(logits.detach(), batch.support_y, ways)
        accuracy = task_metric(scores.flatten(0, 1), batch.query_y.flatten())
        return OuterLoss(loss, {"query_accuracy": accuracy})

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query accuracy of each ``task.ways``-way task, ``[task, 1]``; ``steps`` is unused."""
        with torch.no_grad():
            scores = self.query_scores(params, batch, self.cfg.task.ways)
            return query_accuracy(scores, batch.query_y, steps)

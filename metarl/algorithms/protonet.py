"""Prototypical Networks (Snell et al. 2017) for few-shot classification.

Each class is represented by a prototype, the mean embedding of its support examples (Eq. 1),
and a query is classified by a softmax over the negative squared Euclidean distances to the
prototypes (Eq. 2); training minimises the query cross-entropy of episodes sampled like the test
tasks (Alg. 1). There is no inner loop: "adaptation" is computing the prototypes.

The encoder is ``build_model(..., embedding=True)``: with ``model.network: conv4_maxpool`` it is
the paper's 4 x [conv 3x3 64, BN, ReLU, max-pool 2], 64-d for 28x28 Omniglot
(jakesnell/prototypical-networks ``protonets/models/few_shot.py``). Batch norm uses each task's
own statistics (:func:`metarl.algorithms.supervised.embed_tasks`), at training and at test time.

``protonet.distance: cosine`` replaces the distance by the cosine similarity (logit = cos), a
variant the paper compares against (§2.7: squared Euclidean works better).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from envs.supervised import TaskBatch
from metarl.algorithms.metric_common import QueryLogitsLearner, check_metric_learner_config
from metarl.algorithms.supervised import (
    SupervisedConfig,
    build_model,
    embed_tasks,
)
from metarl.config_sections import section
from metarl.functional import Params

__all__ = [
    "ProtoNetLearner",
    "class_prototypes",
    "prototype_logits",
]


def class_prototypes(support_emb: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Mean support embedding of each class (ProtoNets Eq. 1).

    Args:
        support_emb: ``[task, support, dim]`` support embeddings.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``, every class present (in
            any order).
        ways: Number of classes ``W``.

    Returns:
        ``[task, ways, dim]`` prototypes.

    Raises:
        ValueError: If the shapes do not match.
    """
    if support_emb.dim() != 3:
        raise ValueError(
            f"support_emb must be [task, support, dim], got shape {tuple(support_emb.shape)}"
        )
    if support_y.shape != support_emb.shape[:2]:
        raise ValueError(
            f"support_y must be {tuple(support_emb.shape[:2])} [task, support], got shape "
            f"{tuple(support_y.shape)}"
        )
    one_hot = F.one_hot(support_y, ways).to(support_emb.dtype)  # [T, S, W]
    sums = one_hot.transpose(1, 2) @ support_emb  # [T, W, D]
    return sums / one_hot.sum(dim=1).unsqueeze(-1)


def prototype_logits(
    support_emb: Tensor,
    support_y: Tensor,
    query_emb: Tensor,
    ways: int,
    distance: Literal["euclidean", "cosine"] = "euclidean",
) -> Tensor:
    """Class logits of each query: minus its squared Euclidean distance to each prototype.

    ``logits[t, q, w] = -||query_emb[t, q] - c_w||²`` with ``c_w`` the mean support embedding of
    class ``w`` in task ``t`` (ProtoNets Eq. 1-2), or ``cos(query_emb[t, q], c_w)`` for
    ``distance="cosine"``.

    Args:
        support_emb: ``[task, support, dim]`` support embeddings.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``, every class present.
        query_emb: ``[task, query, dim]`` query embeddings.
        ways: Number of classes ``W``.
        distance: ``"euclidean"`` (squared, the paper's) or ``"cosine"``.

    Returns:
        ``[task, query, ways]`` logits.

    Raises:
        ValueError: If the shapes do not match or ``distance`` is unknown.
    """
    if query_emb.dim() != 3 or query_emb.shape[::2] != support_emb.shape[::2]:
        raise ValueError(
            f"query_emb must be [task, query, dim] with task and dim of support_emb "
            f"{tuple(support_emb.shape)}, got shape {tuple(query_emb.shape)}"
        )
    prototypes = class_prototypes(support_emb, support_y, ways)  # [T, W, D]
    if distance == "euclidean":
        diff = query_emb.unsqueeze(2) - prototypes.unsqueeze(1)  # [T, Q, W, D]
        return -diff.square().sum(dim=-1)
    if distance == "cosine":
        return F.cosine_similarity(query_emb.unsqueeze(2), prototypes.unsqueeze(1), dim=-1)
    raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")


class ProtoNetLearner(QueryLogitsLearner):
    """Prototypical Networks as a :class:`~metarl.algorithms.supervised.SupervisedLearner`.

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_*``;
            ``protonet.distance`` picks the distance).
        device: Where the parameters live.
        generator: Initialises the encoder.

    Raises:
        ValueError: If the task family or the network does not suit a metric learner.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_metric_learner_config(cfg, ("conv4_maxpool", "conv4_strided"))
        self.cfg = cfg
        self.model = build_model(cfg, generator, device, embedding=True)

    def init_params(self) -> Params:
        """The encoder's weights, as fresh leaf tensors that require grad."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}

    def query_logits(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """Embeds the whole batch and returns ``[task, query, ways]`` prototype logits."""
        support, query = embed_tasks(self.model, params, batch)
        return prototype_logits(
            support, batch.support_y, query, ways, section(self.cfg.protonet, "protonet").distance
        )


# -- shared with the other metric learners (matching.py, relation.py) ---------------------------

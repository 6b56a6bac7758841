"""What the metric learners (Prototypical, Matching and Relation Networks) share.

They classify a task's query set directly from its support set, with no inner loop: one config
check and one accuracy "curve" with a single point serve all three.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from envs.supervised import TaskBatch
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    task_loss,
    task_metric,
)
from metarl.functional import Params

__all__ = [
    "QueryLogitsLearner",
    "check_embeddings",
    "check_metric_learner_config",
    "query_accuracy",
]


def check_embeddings(support_emb: Tensor, query_emb: Tensor) -> None:
    """Raises ``ValueError`` unless they are ``[task, support, dim]`` and ``[task, query, dim]``."""
    if support_emb.dim() != 3:
        raise ValueError(
            f"support_emb must be [task, support, dim], got shape {tuple(support_emb.shape)}"
        )
    if query_emb.dim() != 3 or query_emb.shape[::2] != support_emb.shape[::2]:
        raise ValueError(
            f"query_emb must be [task, query, dim] with task and dim of support_emb "
            f"{tuple(support_emb.shape)}, got shape {tuple(query_emb.shape)}"
        )


def check_metric_learner_config(cfg: SupervisedConfig, networks: tuple[str, ...]) -> None:
    """Raises ``ValueError`` unless ``cfg`` is a classification task on one of ``networks``."""
    if cfg.task.metric != "accuracy":
        raise ValueError(
            f"{cfg.algo.name} needs a classification task family, got task.family="
            f"{cfg.task.family!r}"
        )
    if cfg.model.network not in networks:
        raise ValueError(
            f"{cfg.algo.name} needs model.network in {networks}, got {cfg.model.network!r}"
        )


def query_accuracy(scores: Tensor, query_y: Tensor, steps: int) -> Tensor:
    """Per-task accuracy of the argmax of ``scores`` ``[task, query, ways]``: ``[task, 1]``.

    The adaptation curve of a learner without an inner loop, whatever ``steps`` (>= 0) is asked.

    Raises:
        ValueError: If ``steps`` is negative.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    return vmap(task_metric)(scores, query_y).unsqueeze(1)


class QueryLogitsLearner(FixedStepSizes):
    """A learner whose queries are classified by ``query_logits`` and trained by cross-entropy.

    Subclasses (ProtoNets, R2-D2, MetaOptNet) set ``cfg`` and define
    ``query_logits(params, batch, ways) -> [task, query, ways]``.
    """

    cfg: SupervisedConfig

    def query_logits(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """``[task, query, ways]`` logits of each query."""
        raise NotImplementedError

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query cross-entropy over the tasks of a training batch (``train_ways``-way)."""
        ways = self.cfg.task.train_ways or self.cfg.task.ways
        logits = self.query_logits(params, batch, ways).flatten(0, 1)
        labels = batch.query_y.flatten()
        # every task has the same number of queries: the mean over all is the mean over tasks
        loss = task_loss(logits, labels)
        return OuterLoss(loss, {"query_accuracy": task_metric(logits.detach(), labels)})

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query accuracy of each ``task.ways``-way task, ``[task, 1]``; ``steps`` is unused."""
        with torch.no_grad():
            logits = self.query_logits(params, batch, self.cfg.task.ways)
            return query_accuracy(logits, batch.query_y, steps)

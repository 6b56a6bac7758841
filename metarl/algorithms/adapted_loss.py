"""The outer objective of the learners that adapt by inner steps, and what they log beside it.

MAML, CAVIA, Meta-LSTM and alpha-MAML: the query loss after adaptation, the query metric and the
support loss before adapting.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from metarl.algorithms.supervised import OuterLoss, task_loss, task_metric

__all__ = ["adapted_outer_loss", "query_outer_loss"]


def adapted_outer_loss(
    loss: Tensor, metric: Tensor, inner_losses: Tensor, metric_name: str
) -> OuterLoss:
    """The outer objective of an adapting learner, with what every such learner logs.

    Args:
        loss: The mean query loss after adaptation (differentiable).
        metric: The mean query metric (detached).
        inner_losses: ``[task, steps]`` support losses, each before its inner step.
        metric_name: ``task.metric``; logged as ``query_<metric_name>``.

    Returns:
        ``loss`` with the query metric and ``support_loss_before``: the mean support loss before
        the first inner step (the query loss itself when there is no step).
    """
    before = inner_losses[:, 0].mean() if inner_losses.shape[1] else loss
    return OuterLoss(loss, {"query_" + metric_name: metric, "support_loss_before": before.detach()})


def query_outer_loss(
    pred: Tensor, query_y: Tensor, inner_losses: Tensor, metric_name: str
) -> OuterLoss:
    """`adapted_outer_loss` from per-task query predictions ``[task, query, ...]``."""
    loss = vmap(task_loss)(pred, query_y).mean()
    with torch.no_grad():
        metric = vmap(task_metric)(pred.detach(), query_y).mean()
    return adapted_outer_loss(loss, metric, inner_losses, metric_name)

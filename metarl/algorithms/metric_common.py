"""What the metric learners (Prototypical, Matching and Relation Networks) share.

They classify a task's query set directly from its support set, with no inner loop: one config
check and one accuracy "curve" with a single point serve all three.
"""

from __future__ import annotations

from torch import Tensor
from torch.func import vmap

from metarl.algorithms.supervised import SupervisedConfig, task_metric

__all__ = ["check_metric_learner_config", "query_accuracy"]


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

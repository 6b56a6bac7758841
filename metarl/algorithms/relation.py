"""Relation Networks (Sung et al. 2018, "Learning to Compare") for few-shot classification.

An embedding module f maps images to feature maps; a class is represented by the element-wise
sum of its support feature maps (§3.2, K-shot); a relation module g scores each (class, query)
pair from their depth-concatenated feature maps, ``r = g([f(x_class), f(x_query)]) ∈ (0, 1)``
(Eq. 1), and training regresses the scores onto the one-hot match with a mean squared error
(Eq. 2). The predicted class is the argmax of the scores.

Architecture (paper §3.3, Fig. 2; floodsung/LearningToCompare_FSL ``omniglot/*.py``), built from
:class:`metarl.nn.ConvBlock` with ``model.filters`` channels:

- embedding: 4 x [conv 3x3, BN, ReLU], max-pooling after the first two blocks only, so it
  returns a feature map, not a vector: ``[filters, 7, 7]`` for 28x28 Omniglot. ``Conv4`` pools
  after all four blocks (1x1 maps for 28x28), hence this encoder of its own. Our blocks pad every
  convolution by 1, while the authors' code leaves the first two unpadded (5x5 maps).
- relation: 2 x [conv 3x3, BN, ReLU, max-pool 2] on the ``2 * filters`` concatenated channels
  (7 -> 3 -> 1), flatten, FC 8, ReLU, FC 1, sigmoid.

Weights use the shared initialisations (Glorot-uniform convolutions, PyTorch-default linear
layers), not the authors' He-normal / N(0, 0.01) with bias 1. Batch norm, in both modules, uses
each task's own statistics (vmapped over tasks). Parameters: ``embedding.*`` and ``relation.*``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from envs.supervised import IMAGE_SIZE, TaskBatch
from metarl.algorithms.metric_common import check_metric_learner_config, query_accuracy
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    embed_tasks,
    task_metric,
)
from metarl.functional import Params
from metarl.nn import ConvBlock, init_linear_

__all__ = [
    "RelationEncoder",
    "RelationModule",
    "RelationNetLearner",
    "class_feature_sums",
    "relation_pairs",
]


class RelationEncoder(nn.Module):
    """The embedding module f: 4 x [conv 3x3, BN, ReLU], max-pool 2 after the first two.

    Args:
        filters: Channels of every convolution (64 in the paper).
        in_channels: Channels of the input images.
        generator: Source of randomness for the init.
        device: Device of the parameters.
    """

    def __init__(
        self,
        filters: int,
        *,
        in_channels: int = 1,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.body = nn.ModuleList(
            ConvBlock(
                in_channels if i == 0 else filters,
                filters,
                stride=1,
                max_pool=i < 2,
                generator=generator,
                device=device,
            )
            for i in range(4)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``[batch, in_channels, H, W]`` to ``[batch, filters, H // 4, W // 4]``."""
        for block in self.body:
            x = block(x)
        return x


class RelationModule(nn.Module):
    """The relation module g: 2 x [conv 3x3, BN, ReLU, max-pool 2], FC ``hidden``, FC 1, sigmoid.

    Args:
        filters: Channels of one feature map (the input has ``2 * filters``).
        feature_size: Height and width of the feature maps.
        hidden: Units of the hidden FC layer (8 in the paper).
        generator: Source of randomness for the init.
        device: Device of the parameters.

    Raises:
        ValueError: If ``feature_size`` is too small for two 2x2 max-pools.
    """

    def __init__(
        self,
        filters: int,
        feature_size: int,
        *,
        hidden: int = 8,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if feature_size < 4:
            raise ValueError(f"feature_size must be >= 4 for two max-pools, got {feature_size}")
        self.body = nn.ModuleList(
            ConvBlock(c, filters, stride=1, max_pool=True, generator=generator, device=device)
            for c in (2 * filters, filters)
        )
        flat = filters * (feature_size // 2 // 2) ** 2
        self.fc1 = nn.Linear(flat, hidden, device=device)
        self.fc2 = nn.Linear(hidden, 1, device=device)
        for layer in (self.fc1, self.fc2):
            init_linear_(layer, generator)

    def forward(self, pairs: Tensor) -> Tensor:
        """Maps pairs ``[batch, 2 * filters, H, W]`` to relation scores ``[batch]`` in (0, 1)."""
        x = pairs
        for block in self.body:
            x = block(x)
        x = F.relu(self.fc1(x.flatten(1)))
        return torch.sigmoid(self.fc2(x)).squeeze(-1)


def class_feature_sums(support_features: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Element-wise sum of each class's support feature maps (paper §3.2, K-shot).

    Args:
        support_features: ``[task, support, *feature]``.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        ways: Number of classes ``W``.

    Returns:
        ``[task, ways, *feature]``.

    Raises:
        ValueError: If the shapes do not match.
    """
    if support_features.dim() < 3 or support_y.shape != support_features.shape[:2]:
        raise ValueError(
            f"support_features must be [task, support, *feature] and support_y [task, support], "
            f"got shapes {tuple(support_features.shape)} and {tuple(support_y.shape)}"
        )
    one_hot = F.one_hot(support_y, ways).to(support_features.dtype)  # [T, S, W]
    sums = one_hot.transpose(1, 2) @ support_features.flatten(2)  # [T, W, prod(feature)]
    return sums.reshape(*sums.shape[:2], *support_features.shape[2:])


def relation_pairs(class_features: Tensor, query_features: Tensor) -> Tensor:
    """Every (query, class) pair of a task, class maps first, concatenated along channels.

    Args:
        class_features: ``[task, ways, channels, H, W]``.
        query_features: ``[task, query, channels, H, W]``.

    Returns:
        ``[task, query, ways, 2 * channels, H, W]``: ``out[t, q, w] = [class_w, query_q]``.

    Raises:
        ValueError: If the shapes do not match.
    """
    if class_features.dim() != 5 or query_features.shape[::2] != class_features.shape[::2]:
        raise ValueError(
            f"class_features must be [task, ways, C, H, W] and query_features [task, query, C, H, "
            f"W] with equal task, C, H, W; got shapes {tuple(class_features.shape)} and "
            f"{tuple(query_features.shape)}"
        )
    num_tasks, ways = class_features.shape[:2]
    num_query = query_features.shape[1]
    shape = (num_tasks, num_query, ways, *class_features.shape[2:])
    classes = class_features.unsqueeze(1).expand(shape)
    queries = query_features.unsqueeze(2).expand(shape)
    return torch.cat([classes, queries], dim=3)


def _sub(params: Params, prefix: str) -> Params:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class RelationNetLearner(FixedStepSizes):
    """Relation Networks as a :class:`~metarl.algorithms.supervised.SupervisedLearner`.

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_maxpool``,
            ``model.filters`` channels).
        device: Where the parameters live.
        generator: Initialises both modules.

    Raises:
        ValueError: If the config does not suit the learner.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_metric_learner_config(cfg, ("conv4_maxpool",))
        self.cfg = cfg
        filters = cfg.model.filters
        # miniImageNet: 3x84x84 inputs (Sung et al. §3.4: the same modules on bigger maps)
        channels, side = (3, 84) if cfg.task.family == "miniimagenet" else (1, IMAGE_SIZE)
        encoder = RelationEncoder(filters, in_channels=channels, generator=generator, device=device)
        relation = RelationModule(filters, side // 4, generator=generator, device=device)
        self.net = nn.ModuleDict({"embedding": encoder, "relation": relation})

    def init_params(self) -> Params:
        """``embedding.*`` and ``relation.*`` weights, as fresh leaf tensors requiring grad."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.net.named_parameters()}

    def relation_scores(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """Embeds the whole batch and returns ``[task, query, ways]`` relation scores in (0, 1)."""
        support, query = embed_tasks(self.net["embedding"], _sub(params, "embedding."), batch)
        pairs = relation_pairs(class_feature_sums(support, batch.support_y, ways), query)
        num_tasks, num_query = pairs.shape[:2]
        relation, relation_params = self.net["relation"], _sub(params, "relation.")

        def task_scores(task_pairs: Tensor) -> Tensor:  # [Q * W, 2C, H, W] -> [Q * W]
            return functional_call(relation, relation_params, (task_pairs,))

        scores = vmap(task_scores)(pairs.flatten(1, 2))  # batch norm per task
        return scores.reshape(num_tasks, num_query, ways)

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean squared error between relation scores and one-hot query labels (Eq. 2)."""
        ways = self.cfg.task.train_ways or self.cfg.task.ways
        scores = self.relation_scores(params, batch, ways)
        loss = F.mse_loss(scores, F.one_hot(batch.query_y, ways).to(scores.dtype))
        accuracy = task_metric(scores.detach().flatten(0, 1), batch.query_y.flatten())
        return OuterLoss(loss, {"query_accuracy": accuracy})

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query accuracy of each ``task.ways``-way task, ``[task, 1]``; ``steps`` is unused."""
        with torch.no_grad():
            scores = self.relation_scores(params, batch, self.cfg.task.ways)
            return query_accuracy(scores, batch.query_y, steps)

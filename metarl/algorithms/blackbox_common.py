"""What the black-box (model-based) learners, MANN and SNAIL, share.

Both read a task as a sequence: the support examples in a random order, then one query, each step
the image embedding concatenated with a one-hot label; the sequence model's output at the last
step classifies the query. There is no inner loop: "adaptation" is reading the sequence. Every
query of a task gets its own sequence (the same support, its own last step), so queries never see
each other.

The label of a step is either the label of the *previous* step (Santoro et al. 2016 §3, Fig. 1:
``(x_t, y_{t-1})``, zeros at the first step; the query step carries the last support label), used
by MANN, or the step's own label (Mishra et al. 2018 §4.1: labelled support, the query's label
zeros), used by SNAIL.

The support order is a fresh random permutation per task (the family returns it class-major, which
a sequence model could otherwise read the labels from): at training it is drawn from
``run.seed`` and the iteration (so a resumed run sees the same orders), at evaluation from a
counter of the learner's calls.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from envs.supervised import TaskBatch
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    embed_tasks,
    task_metric,
)
from metarl.functional import Params

__all__ = [
    "BlackBoxLearner",
    "check_blackbox_config",
    "episode_sequences",
    "init_uniform_",
    "support_orders",
]

_EVAL_SEED_OFFSET = 7_919


def check_blackbox_config(cfg: SupervisedConfig) -> None:
    """Raises ``ValueError`` unless ``cfg`` is a conv4 classification task with fixed ways."""
    name = cfg.algo.name
    if cfg.task.metric != "accuracy":
        raise ValueError(
            f"{name} needs a classification task family, got task.family={cfg.task.family!r}"
        )
    if cfg.model.network not in ("conv4_maxpool", "conv4_strided"):
        raise ValueError(
            f"{name} needs model.network conv4_maxpool or conv4_strided, got {cfg.model.network!r}"
        )
    if cfg.task.train_ways not in (None, cfg.task.ways):
        raise ValueError(
            f"{name} outputs task.ways={cfg.task.ways} classes: task.train_ways must be null or "
            f"equal, got {cfg.task.train_ways}"
        )


def support_orders(num_tasks: int, support: int, seed: int, device: torch.device) -> Tensor:
    """An independent random permutation of ``0..support-1`` per task, ``[task, support]``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(num_tasks, support, generator=gen).argsort(dim=1).to(device)


def episode_sequences(
    support_emb: Tensor,
    support_y: Tensor,
    query_emb: Tensor,
    ways: int,
    order: Tensor,
    label_offset: bool,
) -> Tensor:
    """One input sequence per (task, query): the ordered support, then that query.

    Args:
        support_emb: ``[task, support, dim]`` support embeddings.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        query_emb: ``[task, query, dim]`` query embeddings.
        ways: Number of classes (the one-hot width).
        order: ``[task, support]`` the support's position in the sequence (a permutation).
        label_offset: Each step carries the previous step's label (Santoro et al. 2016) instead
            of its own (Mishra et al. 2018; the query's is zeros).

    Returns:
        ``[task * query, support + 1, dim + ways]``, task-major (row ``t * query + q``).

    Raises:
        ValueError: If the shapes do not match or a label is outside ``0..ways-1``.
    """
    if support_emb.dim() != 3 or query_emb.dim() != 3:
        raise ValueError(
            f"support_emb and query_emb must be [task, n, dim], got shapes "
            f"{tuple(support_emb.shape)} and {tuple(query_emb.shape)}"
        )
    num_tasks, support, dim = support_emb.shape
    if query_emb.shape[0] != num_tasks or query_emb.shape[2] != dim:
        raise ValueError(
            f"query_emb must be [{num_tasks}, query, {dim}], got {tuple(query_emb.shape)}"
        )
    if support_y.shape != (num_tasks, support) or order.shape != (num_tasks, support):
        raise ValueError(
            f"support_y and order must be [{num_tasks}, {support}], got shapes "
            f"{tuple(support_y.shape)} and {tuple(order.shape)}"
        )
    if support_y.numel() and not 0 <= int(support_y.min()) <= int(support_y.max()) < ways:
        raise ValueError(f"support labels must be in 0..{ways - 1}")
    xs = support_emb.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    labels = F.one_hot(support_y.gather(1, order), ways).to(support_emb.dtype)  # [T, S, W]
    zeros = labels.new_zeros(num_tasks, 1, ways)
    if label_offset:
        step_labels = torch.cat([zeros, labels], dim=1)  # step i carries y_{i-1}
    else:
        step_labels = torch.cat([labels, zeros], dim=1)
    num_query = query_emb.shape[1]
    xs = xs.unsqueeze(1).expand(-1, num_query, -1, -1)  # [T, Q, S, D]
    x = torch.cat([xs, query_emb.unsqueeze(2)], dim=2)  # [T, Q, S + 1, D]
    seq = torch.cat([x, step_labels.unsqueeze(1).expand(-1, num_query, -1, -1)], dim=-1)
    return seq.flatten(0, 1)


def init_uniform_(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default init ``U(±1/sqrt(fan_in))`` (LSTM: ``±1/sqrt(hidden)``) from ``generator``.

    Every ``nn.Linear``, ``nn.Conv1d`` and ``nn.LSTMCell`` under ``module``; drawn in module order.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear | nn.Conv1d):
                bound = 1.0 / math.sqrt(sub.weight[0].numel())
            elif isinstance(sub, nn.LSTMCell):
                bound = 1.0 / math.sqrt(sub.hidden_size)
            else:
                continue
            for p in sub.parameters(recurse=False):
                p.uniform_(-bound, bound, generator=generator)


def _sub(params: Params, prefix: str) -> Params:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class BlackBoxLearner(FixedStepSizes):
    """A conv4 embedding plus a sequence model over the episode, as a supervised learner.

    Subclasses set ``label_offset`` and build ``core``: a module mapping ``[batch, steps, dim +
    ways]`` to ``[batch, steps, ways]`` logits in which step ``i`` depends on steps ``<= i`` only.

    Args:
        cfg: The experiment config.
        device: Where the parameters live.
        generator: Initialises the embedding, then the core.

    Raises:
        ValueError: If the config does not suit a black-box learner.
    """

    label_offset: bool = False

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_blackbox_config(cfg)
        self.cfg, self.device = cfg, device
        embedding = build_model(cfg, generator, device, embedding=True)
        embedding_dim = embedding.embedding_dim
        if not isinstance(embedding_dim, int):
            raise TypeError(f"the embedding's embedding_dim must be an int, got {embedding_dim!r}")
        in_dim = embedding_dim + cfg.task.ways
        core = self.build_core(in_dim, generator, device)
        self.net = nn.ModuleDict({"embedding": embedding, "core": core})
        self._eval_calls = 0

    def build_core(
        self, in_dim: int, generator: torch.Generator, device: torch.device
    ) -> nn.Module:
        """The sequence model (overridden by each learner)."""
        raise NotImplementedError

    def init_params(self) -> Params:
        """``embedding.*`` (conv4) and ``core.*`` (the sequence model), fresh leaf tensors."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.net.named_parameters()}

    def query_logits(self, params: Params, batch: TaskBatch, order: Tensor) -> Tensor:
        """``[task, query, ways]`` logits of each query, read at the last step of its sequence."""
        support, query = embed_tasks(self.net["embedding"], _sub(params, "embedding."), batch)
        ways = self.cfg.task.ways
        seq = episode_sequences(support, batch.support_y, query, ways, order, self.label_offset)
        out = functional_call(self.net["core"], _sub(params, "core."), (seq,))
        return out[:, -1].reshape(query.shape[0], query.shape[1], ways)

    def _orders(self, batch: TaskBatch, seed: int) -> Tensor:
        # task i's order is row first_task + i of the meta-batch's draw (the rows are drawn in
        # task order), so a rank's slice gets the orders its tasks get in one process
        num_tasks, support = batch.support_y.shape[:2]
        first = batch.first_task
        return support_orders(first + num_tasks, support, seed, batch.support_y.device)[first:]

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query cross-entropy over the tasks of a training batch."""
        order = self._orders(batch, self.cfg.run.seed * 1_000_003 + iteration)
        logits = self.query_logits(params, batch, order).flatten(0, 1)
        labels = batch.query_y.flatten()
        loss = F.cross_entropy(logits, labels)
        return OuterLoss(loss, {"query_accuracy": task_metric(logits.detach(), labels)})

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query accuracy of each task, ``[task, 1]`` (no inner loop: ``steps`` only checked)."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        seed = (self.cfg.run.seed + _EVAL_SEED_OFFSET) * 1_000_003 + self._eval_calls
        self._eval_calls += 1
        with torch.no_grad():
            logits = self.query_logits(params, batch, self._orders(batch, seed))
            correct = (logits.argmax(-1) == batch.query_y).to(logits.dtype)
            return correct.mean(dim=1, keepdim=True)

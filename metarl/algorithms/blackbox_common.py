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

MANN can also train on Santoro et al. 2016's episodes (``mann.train_loss: every_step``): every
drawing of a task, support and query together, in one random sequence of ``(x_t, y_{t-1})`` steps,
with the loss at every step. A class's first drawing cannot be told apart from a guess; from its
second on, the memory holds the answer. Evaluation is unchanged (the support, then each query).

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
    "instance_index",
    "support_orders",
    "whole_episodes",
]

_EVAL_SEED_OFFSET = 7_919


def check_blackbox_config(cfg: SupervisedConfig) -> None:
    """Raises ``ValueError`` unless ``cfg`` is a conv4 classification task with fixed ways."""
    name = cfg.algo.name
    if cfg.task.metric != "accuracy":
        raise ValueError(
            f"{name} needs a classification task family, got task.family={cfg.task.family!r}"
        )
    if cfg.model.network not in ("conv4_maxpool", "conv4_strided", "flat"):
        raise ValueError(
            f"{name} needs model.network conv4_maxpool, conv4_strided or flat, got "
            f"{cfg.model.network!r}"
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


def whole_episodes(
    support_emb: Tensor,
    support_y: Tensor,
    query_emb: Tensor,
    query_y: Tensor,
    ways: int,
    order: Tensor,
) -> tuple[Tensor, Tensor]:
    """Every example of each task in one sequence, each step carrying the previous step's label.

    Santoro et al. 2016's episodes (§4.1): the support and query examples of a task, in the order
    ``order``, step ``t`` reading ``(x_t, y_{t-1})`` (zeros at the first step).

    Args:
        support_emb: ``[task, support, dim]``.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        query_emb: ``[task, query, dim]``.
        query_y: ``[task, query]`` int64 labels in ``0..ways-1``.
        ways: Number of classes (the one-hot width).
        order: ``[task, support + query]`` a permutation: step ``t`` reads example ``order[t]``
            of the support followed by the query.

    Returns:
        The sequences ``[task, support + query, dim + ways]`` and each step's label
        ``[task, support + query]``.

    Raises:
        ValueError: If the shapes do not match or a label is outside ``0..ways-1``.
    """
    three_d = support_emb.dim() == query_emb.dim() == 3
    if not three_d or query_emb.shape[::2] != support_emb.shape[::2]:
        raise ValueError(
            f"support_emb and query_emb must be [task, n, dim] with the same task and dim, got "
            f"shapes {tuple(support_emb.shape)} and {tuple(query_emb.shape)}"
        )
    num_tasks, _, dim = support_emb.shape
    x = torch.cat([support_emb, query_emb], dim=1)
    y = torch.cat([support_y, query_y], dim=1) if support_y.dim() == query_y.dim() == 2 else None
    if y is None or y.shape != x.shape[:2] or order.shape != x.shape[:2]:
        raise ValueError(
            f"support_y, query_y must be [{num_tasks}, n] matching the embeddings and order "
            f"[{num_tasks}, {x.shape[1]}], got shapes {tuple(support_y.shape)}, "
            f"{tuple(query_y.shape)} and {tuple(order.shape)}"
        )
    if y.numel() and not 0 <= int(y.min()) <= int(y.max()) < ways:
        raise ValueError(f"labels must be in 0..{ways - 1}")
    x = x.gather(1, order.unsqueeze(-1).expand(-1, -1, dim))
    y = y.gather(1, order)
    previous = F.one_hot(y[:, :-1], ways).to(x.dtype)
    previous = torch.cat([previous.new_zeros(num_tasks, 1, ways), previous], dim=1)
    return torch.cat([x, previous], dim=-1), y


def instance_index(labels: Tensor, ways: int) -> Tensor:
    """How many earlier steps of its sequence share each step's label.

    0 at a class's first drawing, 1 at its second, ... (``labels`` ``[batch, steps]`` in
    ``0..ways-1``).
    """
    one_hot = F.one_hot(labels, ways)
    return (one_hot.cumsum(dim=1) - one_hot).gather(2, labels.unsqueeze(-1)).squeeze(-1)


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

    @property
    def every_step_loss(self) -> bool:
        """Train on whole episodes with the loss at every step (see :func:`whole_episodes`)."""
        return False

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
        """Mean query cross-entropy over the tasks of a training batch.

        With ``every_step_loss``, the mean cross-entropy over every step of the whole episodes;
        ``query_accuracy`` is then the accuracy at the steps whose class was drawn before and
        ``second_instance_accuracy`` at each class's second drawing (as Santoro et al. 2016 report).
        """
        seed = self.cfg.run.seed * 1_000_003 + iteration
        if self.every_step_loss:
            return self._every_step_loss(params, batch, seed)
        order = self._orders(batch, seed)
        logits = self.query_logits(params, batch, order).flatten(0, 1)
        labels = batch.query_y.flatten()
        loss = F.cross_entropy(logits, labels)
        return OuterLoss(loss, {"query_accuracy": task_metric(logits.detach(), labels)})

    def _whole_episodes(self, params: Params, batch: TaskBatch, seed: int) -> tuple[Tensor, Tensor]:
        """Logits ``[task, steps, ways]`` and labels ``[task, steps]`` of whole episodes."""
        support, query = embed_tasks(self.net["embedding"], _sub(params, "embedding."), batch)
        length = support.shape[1] + query.shape[1]
        first = batch.first_task
        order = support_orders(first + support.shape[0], length, seed, support.device)[first:]
        ways = self.cfg.task.ways
        seq, labels = whole_episodes(support, batch.support_y, query, batch.query_y, ways, order)
        return functional_call(self.net["core"], _sub(params, "core."), (seq,)), labels

    def _every_step_loss(self, params: Params, batch: TaskBatch, seed: int) -> OuterLoss:
        logits, labels = self._whole_episodes(params, batch, seed)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        correct = (logits.detach().argmax(-1) == labels).to(logits.dtype)
        instance = instance_index(labels, self.cfg.task.ways)
        # masked means, not boolean indexing: no host sync in the training step
        later, second = (instance > 0).to(correct.dtype), (instance == 1).to(correct.dtype)
        metrics = {
            "query_accuracy": (correct * later).sum() / later.sum(),
            "second_instance_accuracy": (correct * second).sum() / second.sum(),
        }
        return OuterLoss(loss, metrics)

    def instance_accuracy(self, params: Params, batch: TaskBatch, seed: int) -> Tensor:
        """Accuracy at each class's 1st, 2nd, ... drawing of whole episodes, ``[task, drawings]``.

        Santoro et al. 2016's evaluation (Table 1): every drawing of a task (support and query)
        in one random sequence, each step read with the previous step's label. Every class must
        have the same number of drawings.

        Raises:
            ValueError: If the learner does not read the previous step's label, or the classes
                have different numbers of drawings.
        """
        if not self.label_offset:
            raise ValueError(
                f"{self.cfg.algo.name} reads each step's own label: a whole episode would show "
                "it the answers"
            )
        ways = self.cfg.task.ways
        counts = torch.cat([batch.support_y, batch.query_y], dim=1)
        counts = F.one_hot(counts, ways).sum(dim=1)
        if not bool((counts == counts[:, :1]).all()):
            raise ValueError("every class of a task must have the same number of drawings")
        with torch.no_grad():
            logits, labels = self._whole_episodes(params, batch, seed)
            correct = (logits.argmax(-1) == labels).to(logits.dtype)
            drawings = int(counts[0, 0])
            which = F.one_hot(instance_index(labels, ways), drawings).to(logits.dtype)
            return (correct.unsqueeze(-1) * which).sum(dim=1) / which.sum(dim=1)

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

"""Matching Networks (Vinyals et al. 2016) for few-shot classification.

A query x̂ is labelled by attention over the support set S = {(x_i, y_i)} (Eq. 1-2)::

    P(y | x̂, S) = Σ_i a(x̂, x_i) y_i,    a(x̂, x_i) = softmax_i( cos(f(x̂), g(x_i)) )

with one-hot ``y_i``; training maximises log P of the query labels over episodes sampled like the
test tasks. f = g = the conv4 embedding (``build_model(..., embedding=True)``), batch norm on each
task's statistics (:func:`metarl.algorithms.supervised.embed_tasks`).

Full-context embeddings (``matching.full_context_embeddings``, paper §2.1.2 and Appendix A):

- g (support): a bidirectional LSTM reads the support set in order;
  ``g(x_i, S) = g'(x_i) + h_fwd_i + h_bwd_i``.
- f (query): an attention LSTM runs ``matching.fce_steps`` = K processing steps over the support
  set::

      ĥ_k, c_k = LSTM(f'(x̂), [h_{k-1}, r_{k-1}], c_{k-1})
      h_k = ĥ_k + f'(x̂)
      r_{k-1} = Σ_i softmax_i(h_{k-1}ᵀ g(x_i)) g(x_i)

  and ``f(x̂, S) = h_K``. Feeding the concatenation ``[h_{k-1}, r_{k-1}]`` as the recurrent
  input equals an ``nn.LSTMCell`` with input ``[f'(x̂), r_{k-1}]`` and state ``(h_{k-1}, c_{k-1})``
  (the weight matrix just splits by columns), which is how it is run here. The paper leaves the
  initial state open; we take ĥ_0 = c_0 = 0, so h_0 = f'(x̂).

Both LSTMs are ``nn`` modules run through ``functional_call``: every weight lives in the one
params dict (``embedding.*``, ``fce_support.*``, ``fce_query.*``).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call
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
from metarl.config_sections import section
from metarl.functional import Params
from metarl.nn import Conv4

__all__ = [
    "MatchingNetLearner",
    "attention_class_probs",
    "cosine_attention",
    "fce_query",
    "fce_support",
    "matching_log_probs",
]

_LOG_EPS = 1e-8
"""Added to the class probabilities before the log: a class with (numerically) no attention
would otherwise give -inf and a NaN gradient."""


def cosine_attention(support_emb: Tensor, query_emb: Tensor) -> Tensor:
    """Attention of each query over its task's support set (Matching Networks Eq. 2).

    ``a[t, q, i] = softmax_i cos(query_emb[t, q], support_emb[t, i])``.

    Args:
        support_emb: ``[task, support, dim]`` support embeddings g(x_i).
        query_emb: ``[task, query, dim]`` query embeddings f(x̂).

    Returns:
        ``[task, query, support]`` attention weights, summing to 1 over the support axis.

    Raises:
        ValueError: If the shapes do not match.
    """
    check_embeddings(support_emb, query_emb)
    cosine = F.cosine_similarity(query_emb.unsqueeze(2), support_emb.unsqueeze(1), dim=-1)
    return cosine.softmax(dim=-1)


def attention_class_probs(attention: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Attention-weighted one-hot support labels: ``P(y = w | x̂, S) = Σ_i a_i [y_i = w]`` (Eq. 1).

    Args:
        attention: ``[task, query, support]`` attention weights.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        ways: Number of classes ``W``.

    Returns:
        ``[task, query, ways]`` class probabilities.

    Raises:
        ValueError: If the shapes do not match.
    """
    if attention.dim() != 3 or support_y.shape != attention.shape[::2]:
        raise ValueError(
            f"attention must be [task, query, support] and support_y [task, support], got "
            f"shapes {tuple(attention.shape)} and {tuple(support_y.shape)}"
        )
    return attention @ F.one_hot(support_y, ways).to(attention.dtype)


def matching_log_probs(
    support_emb: Tensor, support_y: Tensor, query_emb: Tensor, ways: int
) -> Tensor:
    """Log class probabilities of each query under cosine attention (Eq. 1-2).

    Args:
        support_emb: ``[task, support, dim]`` support embeddings g(x_i).
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        query_emb: ``[task, query, dim]`` query embeddings f(x̂).
        ways: Number of classes ``W``.

    Returns:
        ``[task, query, ways]`` ``log(P + 1e-8)``.
    """
    probs = attention_class_probs(cosine_attention(support_emb, query_emb), support_y, ways)
    return torch.log(probs + _LOG_EPS)


def fce_support(lstm: nn.LSTM, params: Params, support_emb: Tensor) -> Tensor:
    """Full-context support embeddings ``g = g' + h_fwd + h_bwd`` (Appendix A.2).

    Args:
        lstm: A bidirectional, batch-first ``nn.LSTM(dim, dim)``.
        params: ``lstm``'s parameters.
        support_emb: ``[task, support, dim]`` support embeddings g'(x_i), read in this order.

    Returns:
        ``[task, support, dim]``.
    """
    if support_emb.dim() != 3:
        raise ValueError(
            f"support_emb must be [task, support, dim], got shape {tuple(support_emb.shape)}"
        )
    out, _ = functional_call(lstm, params, (support_emb,))  # [T, S, 2 * dim]
    forward, backward = out.chunk(2, dim=-1)
    return support_emb + forward + backward


def fce_query(
    cell: nn.LSTMCell, params: Params, query_emb: Tensor, support_emb: Tensor, steps: int
) -> Tensor:
    """Full-context query embeddings: ``steps`` attention-LSTM reads over the support (App. A.1).

    Args:
        cell: ``nn.LSTMCell(2 * dim, dim)``; its input is ``[f'(x̂), r_{k-1}]``.
        params: ``cell``'s parameters.
        query_emb: ``[task, query, dim]`` query embeddings f'(x̂).
        support_emb: ``[task, support, dim]`` full-context support embeddings g(x_i).
        steps: Processing steps K (0 returns ``query_emb``).

    Returns:
        ``[task, query, dim]`` f(x̂, S) = h_K.
    """
    check_embeddings(support_emb, query_emb)
    num_tasks, num_query, dim = query_emb.shape
    flat_query = query_emb.reshape(num_tasks * num_query, dim)
    h = query_emb  # h_0 = ĥ_0 + f'(x̂) with ĥ_0 = 0
    c = torch.zeros_like(flat_query)
    for _ in range(steps):
        read_attention = (h @ support_emb.transpose(1, 2)).softmax(dim=-1)  # [T, Q, S]
        r = (read_attention @ support_emb).reshape(num_tasks * num_query, dim)
        state = (h.reshape(num_tasks * num_query, dim), c)
        h_hat, c = functional_call(cell, params, (torch.cat([flat_query, r], dim=-1), state))
        h = h_hat.reshape(num_tasks, num_query, dim) + query_emb
    return h


def _init_lstm_(module: nn.Module, hidden: int, generator: torch.Generator) -> None:
    """PyTorch's LSTM init, ``U(-1/sqrt(hidden), 1/sqrt(hidden))``, drawn from ``generator``."""
    bound = 1.0 / math.sqrt(hidden)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound, generator=generator)


def _sub(params: Params, prefix: str) -> Params:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class MatchingNetLearner(FixedStepSizes):
    """Matching Networks (optionally with FCE) as a supervised learner.

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_*``;
            ``matching.full_context_embeddings`` and ``matching.fce_steps`` configure FCE).
        device: Where the parameters live.
        generator: Initialises the encoder and the FCE LSTMs.

    Raises:
        ValueError: If the config does not suit the learner or ``matching.fce_steps < 1`` with FCE.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_metric_learner_config(cfg, ("conv4_maxpool", "conv4_strided"))
        algo = section(cfg.matching, "matching")
        if algo.full_context_embeddings and algo.fce_steps < 1:
            raise ValueError(f"matching.fce_steps must be >= 1 with FCE, got {algo.fce_steps}")
        self.cfg = cfg
        self.fce = algo.full_context_embeddings
        embedding = build_model(cfg, generator, device, embedding=True)
        self.net = nn.ModuleDict({"embedding": embedding})
        if self.fce:
            # check_metric_learner_config admits only the conv4 networks, built as a Conv4
            dim = cast(Conv4, embedding).embedding_dim
            lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True, device=device)
            cell = nn.LSTMCell(2 * dim, dim, device=device)
            for module in (lstm, cell):
                _init_lstm_(module, dim, generator)
            self.net.update({"fce_support": lstm, "fce_query": cell})

    def init_params(self) -> Params:
        """``embedding.*`` (conv4) and, with FCE, ``fce_support.*`` and ``fce_query.*``."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.net.named_parameters()}

    def query_log_probs(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """Embeds the whole batch and returns ``[task, query, ways]`` log class probabilities."""
        support, query = embed_tasks(self.net["embedding"], _sub(params, "embedding."), batch)
        if self.fce:
            # __init__ put an nn.LSTM and an nn.LSTMCell under these names when self.fce
            lstm, cell = (
                cast(nn.LSTM, self.net["fce_support"]),
                cast(nn.LSTMCell, self.net["fce_query"]),
            )
            support = fce_support(lstm, _sub(params, "fce_support."), support)
            query = fce_query(
                cell,
                _sub(params, "fce_query."),
                query,
                support,
                section(self.cfg.matching, "matching").fce_steps,
            )
        return matching_log_probs(support, batch.support_y, query, ways)

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query negative log-likelihood over the tasks of a training batch."""
        ways = self.cfg.task.train_ways or self.cfg.task.ways
        log_probs = self.query_log_probs(params, batch, ways).flatten(0, 1)
        labels = batch.query_y.flatten()
        # every task has the same number of queries: the mean over all is the mean over tasks
        loss = F.nll_loss(log_probs, labels)
        return OuterLoss(loss, {"query_accuracy": task_metric(log_probs.detach(), labels)})

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query accuracy of each ``task.ways``-way task, ``[task, 1]``; ``steps`` is unused."""
        with torch.no_grad():
            log_probs = self.query_log_probs(params, batch, self.cfg.task.ways)
            return query_accuracy(log_probs, batch.query_y, steps)

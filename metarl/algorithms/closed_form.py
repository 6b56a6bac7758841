"""Differentiable closed-form heads on learned features: R2-D2 and MetaOptNet.

Both fit a linear classifier to each task's support embeddings with a convex solver, classify
the queries with it, and meta-train the encoder through the solver on the query cross-entropy.

- **R2-D2** (Bertinetto et al. 2019, "Meta-learning with differentiable closed-form solvers",
  §3.2, Eq. 6-8): ridge regression onto the one-hot labels, solved through the Woodbury identity
  ``W = Xᵀ (X Xᵀ + λI)⁻¹ Y`` so that the linear system is ``[support, support]`` rather than
  ``[dim, dim]``; the support matrix gets a column of ones (a bias); the query scores are
  ``α X_q W + β`` with the scale ``α``, offset ``β`` and the regulariser ``λ`` meta-learned.
- **MetaOptNet** (Lee et al. 2019, "Meta-Learning with Differentiable Convex Optimization",
  §3.3, Eq. 9-10): a Crammer-Singer multi-class linear SVM. Its dual, with ``A = C(Y - P)`` and
  each row of ``P`` on the probability simplex (a change of variables of the paper's dual
  constraints ``α_n^k <= C δ(y_n, k)``, ``Σ_k α_n^k = 0``), is
  ``min_P ½ tr(Aᵀ G A) - tr(Yᵀ A)`` with ``G = X Xᵀ``; then ``w_k = Σ_n A_nk x_n`` and a query
  scores ``scale · x_q W``. The paper solves the QP with qpth's differentiable interior-point
  solver; here a fixed number of accelerated projected-gradient (FISTA) steps run in batched
  torch and the meta-gradient flows through the unrolled steps. ``metaoptnet.head: ridge`` is
  MetaOptNet-RR, which is the R2-D2 head with a scale only.
"""

from __future__ import annotations

from typing import TypeVar

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
from metarl.functional import Params

__all__ = [
    "MetaOptNetLearner",
    "R2D2Learner",
    "ridge_logits",
    "ridge_weights",
    "svm_dual",
    "svm_logits",
    "svm_weights",
]


def _check(support_emb: Tensor, support_y: Tensor, ways: int, query_emb: Tensor | None) -> None:
    if support_emb.dim() != 3:
        raise ValueError(
            f"support_emb must be [task, support, dim], got shape {tuple(support_emb.shape)}"
        )
    if support_y.shape != support_emb.shape[:2] or support_y.dtype != torch.int64:
        raise ValueError(
            f"support_y must be int64 {tuple(support_emb.shape[:2])} [task, support], got "
            f"{support_y.dtype} {tuple(support_y.shape)}"
        )
    if ways < 1:
        raise ValueError(f"ways must be >= 1, got {ways}")
    if query_emb is not None and (
        query_emb.dim() != 3 or query_emb.shape[::2] != support_emb.shape[::2]
    ):
        raise ValueError(
            f"query_emb must be [task, query, dim] with task and dim of support_emb "
            f"{tuple(support_emb.shape)}, got shape {tuple(query_emb.shape)}"
        )


def _with_ones(x: Tensor) -> Tensor:
    """Appends a column of ones (the bias feature): ``[..., n, d]`` -> ``[..., n, d + 1]``."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)


# -- R2-D2: ridge regression through the Woodbury identity ---------------------------------------


def ridge_weights(support_emb: Tensor, support_y: Tensor, ways: int, lam: Tensor | float) -> Tensor:
    """Ridge regression of the one-hot labels on ``[support_emb, 1]`` (R2-D2 Eq. 6-7).

    ``W = Xᵀ (X Xᵀ + λI)⁻¹ Y``, which equals ``(XᵀX + λI)⁻¹ XᵀY`` (the Woodbury identity) but
    solves a ``[support, support]`` system.

    Args:
        support_emb: ``[task, support, dim]`` support embeddings.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        ways: Number of classes ``W``.
        lam: The regulariser ``λ > 0`` (a scalar tensor may carry a gradient).

    Returns:
        ``[task, dim + 1, ways]`` weights; the last row is the bias.

    Raises:
        ValueError: If the shapes do not match or ``λ <= 0``.
    """
    _check(support_emb, support_y, ways, None)
    if not isinstance(lam, Tensor) and not lam > 0:  # a learned λ is exp(log λ) > 0
        raise ValueError(f"lam must be > 0, got {lam}")
    x = _with_ones(support_emb)
    y = F.one_hot(support_y, ways).to(x.dtype)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    alpha = torch.linalg.solve(x @ x.transpose(1, 2) + lam * eye, y)  # [T, S, W]
    return x.transpose(1, 2) @ alpha


def ridge_logits(
    support_emb: Tensor,
    support_y: Tensor,
    query_emb: Tensor,
    ways: int,
    lam: Tensor | float,
) -> Tensor:
    """Ridge-regression scores of the queries, ``[query_emb, 1] @ W`` (before R2-D2's α, β).

    Args:
        support_emb: ``[task, support, dim]``.
        support_y: ``[task, support]`` int64 labels.
        query_emb: ``[task, query, dim]``.
        ways: Number of classes ``W``.
        lam: The regulariser ``λ > 0``.

    Returns:
        ``[task, query, ways]``.
    """
    _check(support_emb, support_y, ways, query_emb)
    return _with_ones(query_emb) @ ridge_weights(support_emb, support_y, ways, lam)


# -- MetaOptNet: the Crammer-Singer SVM dual, unrolled FISTA ------------------------------------


def _project_rows_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row (last axis) onto the probability simplex.

    The sort-based algorithm of Duchi et al. (2008), Fig. 1; piecewise linear, so autograd
    differentiates it almost everywhere.
    """
    u = v.sort(dim=-1, descending=True).values
    cumulative = u.cumsum(dim=-1) - 1
    index = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = ((u - cumulative / index) > 0).sum(dim=-1, keepdim=True)  # >= 1 always
    theta = cumulative.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp_min(0)


def svm_dual(support_emb: Tensor, support_y: Tensor, ways: int, c: float, steps: int) -> Tensor:
    """The Crammer-Singer dual coefficients ``A`` after ``steps`` FISTA steps.

    Minimises ``½ tr(Aᵀ G A) - tr(Yᵀ A)`` over ``A = C(Y - P)``, each row of ``P`` on the
    simplex, ``G = X Xᵀ`` (Lee et al. 2019 Eq. 10, linear kernel). The step is ``1 / (C² ‖G‖_F)``
    (``‖G‖_F`` bounds the Lipschitz constant ``C² λ_max(G)``), differentiable in the embeddings.
    Starts from ``P = Y`` (``A = 0``, ``W = 0``).

    Args:
        support_emb: ``[task, support, dim]``.
        support_y: ``[task, support]`` int64 labels in ``0..ways-1``.
        ways: Number of classes ``W``.
        c: The SVM's ``C > 0``.
        steps: FISTA steps (>= 1).

    Returns:
        ``[task, support, ways]`` dual coefficients; ``Xᵀ A`` are the class weights.

    Raises:
        ValueError: If the shapes do not match, ``c <= 0`` or ``steps < 1``.
    """
    _check(support_emb, support_y, ways, None)
    if not c > 0:
        raise ValueError(f"c must be > 0, got {c}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    gram = support_emb @ support_emb.transpose(1, 2)  # [T, S, S]
    y = F.one_hot(support_y, ways).to(support_emb.dtype)
    # +tiny: an all-zero task would otherwise divide by zero
    step = 1.0 / (c * c * (torch.linalg.matrix_norm(gram) + 1e-12))  # [T]
    step = step.view(-1, 1, 1)
    p = y
    z, t = y, 1.0
    for _ in range(steps):
        grad = -c * (gram @ (c * (y - z)) - y)  # d/dP of the dual objective, at z
        p_next = _project_rows_to_simplex(z - step * grad)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = p_next + ((t - 1) / t_next) * (p_next - p)
        p, t = p_next, t_next
    return c * (y - p)


def svm_weights(support_emb: Tensor, support_y: Tensor, ways: int, c: float, steps: int) -> Tensor:
    """The SVM's class weights ``W = Xᵀ A``, ``[task, dim, ways]`` (see :func:`svm_dual`)."""
    return support_emb.transpose(1, 2) @ svm_dual(support_emb, support_y, ways, c, steps)


def svm_logits(
    support_emb: Tensor,
    support_y: Tensor,
    query_emb: Tensor,
    ways: int,
    c: float,
    steps: int,
) -> Tensor:
    """SVM scores of the queries, ``query_emb @ W`` (before MetaOptNet's scale).

    Args:
        support_emb: ``[task, support, dim]``.
        support_y: ``[task, support]`` int64 labels.
        query_emb: ``[task, query, dim]``.
        ways: Number of classes ``W``.
        c: The SVM's ``C > 0``.
        steps: FISTA steps.

    Returns:
        ``[task, query, ways]``.
    """
    _check(support_emb, support_y, ways, query_emb)
    return query_emb @ svm_weights(support_emb, support_y, ways, c, steps)


# -- the learners --------------------------------------------------------------------------------


_Section = TypeVar("_Section")


def _section(value: _Section | None, name: str) -> _Section:
    """The learner's config section (``SupervisedConfig`` fills it in when left out)."""
    if value is None:
        raise ValueError(f"the {name} section is missing")
    return value


class _ClosedFormLearner(QueryLogitsLearner):
    """The shared shell: a conv4 encoder, learned head scalars, the query cross-entropy."""

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        check_metric_learner_config(cfg, ("conv4_maxpool", "conv4_strided"))
        self.cfg = cfg
        self.device = device
        self.model = build_model(cfg, generator, device, embedding=True)

    def _scalars(self) -> dict[str, float]:
        raise NotImplementedError

    def _head(
        self, params: Params, support: Tensor, support_y: Tensor, query: Tensor, ways: int
    ) -> Tensor:
        raise NotImplementedError

    def init_params(self) -> Params:
        """The encoder's weights and the head's learned scalars (``head.*``), fresh leaves."""
        params = {
            f"embedding.{k}": v.detach().clone().requires_grad_()
            for k, v in self.model.named_parameters()
        }
        for name, value in self._scalars().items():
            params[f"head.{name}"] = torch.tensor(value, device=self.device, requires_grad=True)
        return params

    def query_logits(self, params: Params, batch: TaskBatch, ways: int) -> Tensor:
        """Embeds the whole batch, fits each task's head, returns ``[task, query, ways]``."""
        encoder = {k[len("embedding.") :]: v for k, v in params.items() if k[:10] == "embedding."}
        support, query = embed_tasks(self.model, encoder, batch)
        return self._head(params, support, batch.support_y, query, ways)


class R2D2Learner(_ClosedFormLearner):
    """R2-D2 (Bertinetto et al. 2019): ridge-regression head, learned ``λ``, ``α``, ``β``.

    ``λ`` is learned as ``log λ`` so that it stays positive. Settings in ``r2d2``.
    """

    def _scalars(self) -> dict[str, float]:
        r2d2 = _section(self.cfg.r2d2, "r2d2")
        return {"log_lam": float(torch.tensor(r2d2.lam).log()), "scale": r2d2.scale, "bias": 0.0}

    def _head(
        self, params: Params, support: Tensor, support_y: Tensor, query: Tensor, ways: int
    ) -> Tensor:
        lam = params["head.log_lam"].exp()
        logits = ridge_logits(support, support_y, query, ways, lam)
        return params["head.scale"] * logits + params["head.bias"]


class MetaOptNetLearner(_ClosedFormLearner):
    """MetaOptNet (Lee et al. 2019): SVM head (or ridge, MetaOptNet-RR), learned scale.

    Settings in ``metaoptnet``.
    """

    def _scalars(self) -> dict[str, float]:
        return {"scale": _section(self.cfg.metaoptnet, "metaoptnet").scale}

    def _head(
        self, params: Params, support: Tensor, support_y: Tensor, query: Tensor, ways: int
    ) -> Tensor:
        cfg = _section(self.cfg.metaoptnet, "metaoptnet")
        if cfg.head == "ridge":
            logits = ridge_logits(support, support_y, query, ways, cfg.lam)
        else:
            logits = svm_logits(support, support_y, query, ways, cfg.c, cfg.solver_steps)
        return params["head.scale"] * logits

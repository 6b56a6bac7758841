"""CAVIA: fast context adaptation (Zintgraf et al. 2019).

The network θ is shared by all tasks; each task adapts only a context vector φ, reset to 0 for
every task and fed to the network with its input (Alg. 1)::

    φ_i = 0 - α ∇_φ L_support,i(θ, φ = 0)      (one or more steps)
    θ  <- θ - β ∇_θ Σ_i L_query,i(θ, φ_i)      (second order, through the inner steps)

The inner loop is :func:`metarl.functional.adapt` with ``adapt_keys=["context"]``: only the
context adapts, and the outer gradient reaches θ through the context's inner gradients.

Where the context enters: for the sinusoid MLP it is concatenated to the input (the paper's §5.1
and lmzintgraf/cavia regression/cavia_model.py); for conv4 it is appended to the image as constant
channels, which is the same input concatenation for images. The paper's miniImageNet network
instead conditions a conv layer through FiLM; this module does not implement FiLM.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from envs.supervised import TaskBatch
from metarl.algorithms.adapted_loss import query_outer_loss
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    task_loss,
    task_metric,
)
from metarl.functional import AdaptResult, Params, adapt

__all__ = ["CONTEXT", "CAVIALearner", "with_context"]

CONTEXT = "context"
"""The name of the adapted context vector in the inner loop's parameter dict."""


def with_context(x: Tensor, context: Tensor) -> Tensor:
    """Concatenates ``context`` to every input: features ``[n, d]`` or images ``[n, c, h, w]``.

    Args:
        x: One task's inputs, ``[n, d]`` or ``[n, c, h, w]``.
        context: ``[context_size]``.

    Returns:
        ``[n, d + context_size]``, or ``[n, c + context_size, h, w]`` (constant channels).

    Raises:
        ValueError: If ``context`` is not a vector or ``x`` is neither 2-d nor 4-d.
    """
    if context.dim() != 1:
        raise ValueError(f"context must be a vector [context_size], got {tuple(context.shape)}")
    if x.dim() == 2:
        return torch.cat([x, context.expand(x.shape[0], -1)], dim=-1)
    if x.dim() == 4:
        n, _, h, w = x.shape
        planes = context.view(1, -1, 1, 1).expand(n, -1, h, w)
        return torch.cat([x, planes], dim=1)
    raise ValueError(f"x must be [n, features] or [n, channels, h, w], got {tuple(x.shape)}")


class CAVIALearner(FixedStepSizes):
    """CAVIA for supervised few-shot learning (see the module docstring).

    Args:
        cfg: The experiment config (``inner`` for the context's steps, ``cavia`` for its size).
        device: Where the parameters live.
        generator: Initialises the network.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        assert cfg.inner is not None and cfg.cavia is not None  # filled by the config
        self.cfg, self.inner = cfg, cfg.inner
        self.context_size = cfg.cavia.context_size
        self.model = build_model(
            cfg, generator, device, embedding=False, extra_inputs=self.context_size
        )

    def init_params(self) -> Params:
        """The shared network θ (the context is not a meta-parameter: it restarts at 0)."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        net = {k: v for k, v in params.items() if k != CONTEXT}
        return functional_call(self.model, net, (with_context(x, params[CONTEXT]),))

    def _support_loss(self, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        return task_loss(self._forward(params, data[0]), data[1])

    def _adapt(
        self, params: Params, batch: TaskBatch, steps: int, first_order: bool
    ) -> AdaptResult:
        if CONTEXT in params:
            raise ValueError(f"params must not hold {CONTEXT!r}: the context restarts at 0")
        first = next(iter(params.values()))
        context = torch.zeros(self.context_size, dtype=first.dtype, device=first.device)
        return adapt(
            {**params, CONTEXT: context},
            self._support_loss,
            (batch.support_x, batch.support_y),
            steps=steps,
            lr=self.inner.lr,
            first_order=first_order,
            adapt_keys=[CONTEXT],
        )

    def _predict(self, adapted: Params, batch: TaskBatch) -> Tensor:
        return vmap(self._forward)(adapted, batch.query_x)

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query loss after the context's inner steps, differentiated through them."""
        steps = self.inner.steps
        result = self._adapt(params, batch, steps, self.inner.first_order)
        pred = self._predict(result.params, batch)
        return query_outer_loss(pred, batch.query_y, result.losses, self.cfg.task.metric)

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps context steps, ``[task, steps + 1]``."""
        result = self._adapt(params, batch, steps, first_order=True)
        with torch.no_grad():
            curve = [
                vmap(task_metric)(
                    self._predict({k: v.detach() for k, v in p.items()}, batch), batch.query_y
                )
                for p in result.trajectory
            ]
        return torch.stack(curve, dim=1)

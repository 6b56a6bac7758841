"""AlphaMAML: MAML with its inner and outer step sizes adapted online (Behl et al. 2019).

Both step sizes follow hypergradient descent (Baydin et al. 2018), one update per meta-iteration,
from the meta-gradient the iteration computes anyway:

- the inner step size α is a scalar in θ; its meta-gradient ``dL/dα`` (exact, by autograd
  through the inner steps: ``-∇L_query(θ')·∇L_support(θ)`` for one step) drives
  ``α <- α - η_α dL/dα`` (plain gradient descent with its own hypergradient rate; the outer
  optimiser never touches α);
- the outer step size β is Adam's learning rate, updated before each Adam step as in Adam-HD
  (Baydin et al. 2018, Alg. 4): ``β <- β + η_β ∇L(θ_t)·u_{t-1}``, with
  ``u_{t-1} = m̂/(sqrt(v̂) + ε)`` the previous Adam step's direction, read from Adam's state.

α lives in θ and β in the optimiser and schedule state, so both are checkpointed and resumed.
"""

from __future__ import annotations

from typing import Any

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

__all__ = ["INNER_LR", "AlphaMAMLLearner", "adam_direction"]

INNER_LR = "alpha"  # not "inner_lr.*": checkpoint migration moves those out of θ
"""The name of the scalar inner step size α in θ."""


def adam_direction(opt: torch.optim.Adam, params: list[Tensor]) -> list[Tensor] | None:
    """The direction ``m̂ / (sqrt(v̂) + ε)`` of the last step Adam took on ``params``.

    Args:
        opt: A ``torch.optim.Adam`` (no AMSGrad, no weight decay).
        params: Tensors of its first parameter group.

    Returns:
        One tensor per parameter, or None before Adam's first step.
    """
    group = opt.param_groups[0]
    beta1, beta2 = group["betas"]
    out = []
    for p in params:
        state = opt.state.get(p)
        if not state:
            return None
        step = float(state["step"])
        m_hat = state["exp_avg"] / (1 - beta1**step)
        v_hat = state["exp_avg_sq"] / (1 - beta2**step)
        out.append(m_hat / (v_hat.sqrt() + group["eps"]))
    return out


class AlphaMAMLLearner(FixedStepSizes):
    """MAML with a hypergradient-adapted inner step size α and Adam-HD outer step size β.

    Args:
        cfg: The experiment config (``inner.lr`` is α's initial value, ``optim.lr`` β's;
            ``alphamaml`` holds the hypergradient rates).
        device: Where the parameters live.
        generator: Initialises the network.

    Raises:
        ValueError: If the outer optimiser is not Adam with a constant schedule (Adam-HD adapts
            the rate itself), or ``inner.first_order`` is set (α's hypergradient needs the inner
            step in the graph).
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        assert cfg.inner is not None and cfg.alphamaml is not None  # filled by the config
        if cfg.optim.optimizer != "adam" or cfg.optim.schedule != "constant":
            raise ValueError(
                "alphamaml adapts Adam's learning rate itself (Adam-HD): it needs "
                f"optim.optimizer=adam and optim.schedule=constant, got {cfg.optim.optimizer!r} "
                f"and {cfg.optim.schedule!r}"
            )
        if cfg.inner.first_order:
            raise ValueError("inner.first_order does not apply to alphamaml (α's hypergradient)")
        self.cfg, self.inner, self.hd = cfg, cfg.inner, cfg.alphamaml
        self.model = build_model(cfg, generator, device, embedding=False)

    def init_params(self) -> Params:
        """The network weights θ and the inner step size α (0-d)."""
        params = {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}
        first = next(iter(params.values()))
        alpha = torch.tensor(self.inner.lr, dtype=first.dtype, device=first.device)
        return {**params, INNER_LR: alpha.requires_grad_()}

    def _forward(self, net: Params, x: Tensor) -> Tensor:
        return functional_call(self.model, net, (x,))

    def _support_loss(self, net: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        return task_loss(self._forward(net, data[0]), data[1])

    def _adapt(
        self, params: Params, batch: TaskBatch, steps: int, first_order: bool
    ) -> AdaptResult:
        # an older checkpoint's "inner_lr.alpha" is put back into θ when it is loaded
        # (metarl.config_renames.keep_lrs_in_params), for training and evaluation alike
        if INNER_LR not in params:
            raise KeyError(f"alphamaml's params hold no inner step size {INNER_LR!r}")
        net = {k: v for k, v in params.items() if k != INNER_LR}
        return adapt(
            net,
            self._support_loss,
            (batch.support_x, batch.support_y),
            steps=steps,
            lr=params[INNER_LR],
            first_order=first_order,
        )

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query loss after the inner steps at step size α (second order, as MAML)."""
        steps = self.inner.steps
        result = self._adapt(params, batch, steps, first_order=False)
        pred = vmap(self._forward)(result.params, batch.query_x)
        return query_outer_loss(pred, batch.query_y, result.losses, self.cfg.task.metric)

    def before_outer_step(
        self, params: Params, opt: torch.optim.Optimizer, sched: Any
    ) -> dict[str, Tensor | float]:
        """Hypergradient steps on α and on Adam's β, from this iteration's meta-gradient.

        Called by the supervised driver after ``backward`` and before ``opt.step()``. Updates α
        in place and clears its gradient (so Adam leaves it alone), then sets β in the optimiser
        and in the schedule's base rate (which the schedule would otherwise restore).

        Returns:
            ``inner_lr`` (α after the step), ``inner_lr_hypergrad`` (dL/dα), ``outer_lr`` (β).
        """
        alpha = params[INNER_LR]
        hypergrad = (
            alpha.grad.detach().clone() if alpha.grad is not None else torch.zeros_like(alpha)
        )
        with torch.no_grad():
            alpha.sub_(self.hd.inner_hyper_lr * hypergrad)
        alpha.grad = None
        group = opt.param_groups[0]
        net = [p for p in group["params"] if p is not alpha and p.grad is not None]
        assert isinstance(opt, torch.optim.Adam)
        direction = adam_direction(opt, net)
        if direction is not None:
            h = sum((p.grad * u).sum() for p, u in zip(net, direction, strict=True))
            group["lr"] = group["lr"] + self.hd.outer_hyper_lr * float(h)
            sched.base_lrs[0] = group["lr"]
        return {
            "inner_lr": alpha.detach().clone(),
            "inner_lr_hypergrad": hypergrad,
            "outer_lr": group["lr"],
        }

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps inner steps at the learned α, ``[task, steps + 1]``."""
        result = self._adapt(params, batch, steps, first_order=True)
        with torch.no_grad():
            curve = [
                vmap(task_metric)(
                    vmap(self._forward)({k: v.detach() for k, v in p.items()}, batch.query_x),
                    batch.query_y,
                )
                for p in result.trajectory
            ]
        return torch.stack(curve, dim=1)

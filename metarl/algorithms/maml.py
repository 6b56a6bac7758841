"""MAML and its gradient-based relatives for supervised few-shot learning.

One learner covers the family, since they differ only in how the shared inner loop
(:func:`metarl.functional.adapt`) is called:

- MAML (Finn et al. 2017, Alg. 2): θ'_i = θ − α ∇L_support(θ); the outer loss is the query loss at
  θ'_i, differentiated through the inner step (second order).
- first-order MAML (``fomaml``): the same with the inner gradients detached.
- Meta-SGD (Li et al. 2017): θ' = θ − α ∘ ∇L with α a learned tensor per parameter.
- ANIL (Raghu et al. 2020): only the head (``head.*``) adapts in the inner loop.
- MAML++ (``mamlpp``, Antoniou et al. 2019): multi-step loss with annealed weights (MSL), learned
  per-layer per-step learning rates (LSLR) and per-step batch-norm weights and biases (BNWB); pair
  it with ``optim.schedule: cosine`` (CA). Batch norm always uses the current batch's statistics
  (transductive, as MAML), so its statistics are per step by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from envs.supervised import TaskBatch
from metarl.algorithms.adapted_loss import adapted_outer_loss
from metarl.algorithms.supervised import (
    OuterLoss,
    SupervisedConfig,
    build_model,
    task_loss,
    task_metric,
)
from metarl.config_sections import section
from metarl.functional import AdaptResult, InnerLR, Params, adapt, adapt_and_evaluate
from metarl.nn import MLP

__all__ = ["MAMLLearner", "multi_step_loss_weights"]


def multi_step_loss_weights(
    steps: int, iteration: int, anneal_iterations: int, device: torch.device | None = None
) -> Tensor:
    """MAML++'s per-step query-loss weights (HowToTrainYourMAML, per-step importance vector).

    Weights start uniform (1/steps) and move linearly, over ``anneal_iterations``, towards the
    last step; earlier steps keep at least 0.03/steps.

    Args:
        steps: Inner steps, one weight each.
        iteration: The current outer iteration.
        anneal_iterations: Outer iterations over which the weights move to the last step.
        device: Where to create the weights (default: torch's default device); the learner
            passes its batch's, so that no copy to the device is made every iteration.

    Returns:
        ``[steps]`` weights summing to 1 (up to the floor on non-final steps).
    """
    weights = torch.full((steps,), 1.0 / steps, device=device)
    if steps == 1 or anneal_iterations <= 0:
        return weights
    decay = 1.0 / steps / anneal_iterations
    floor = 0.03 / steps
    weights[:-1] = torch.clamp(weights[:-1] - iteration * decay, min=floor)
    weights[-1] = min(1.0 / steps + iteration * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return weights


class MAMLLearner:
    """MAML, FOMAML, Meta-SGD, ANIL and MAML++ (see the module docstring).

    Args:
        cfg: the experiment config (``algo.name`` picks the variant; ``mamlpp`` adds MAML++
            options).
        device: where the parameters live.
        generator: initialises the network and Meta-SGD's learning rates.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        algo, inner, mamlpp = cfg.algo, section(cfg.inner, "inner"), section(cfg.mamlpp, "mamlpp")
        self.cfg, self.inner, self.mamlpp_options = cfg, inner, mamlpp
        self.model = build_model(cfg, generator, device, embedding=False)
        self.generator = generator
        self.mamlpp = algo.name == "mamlpp"
        self.first_order = inner.first_order or algo.name == "fomaml"
        self.meta_sgd = algo.name == "metasgd"
        self.per_step_lr = mamlpp.per_step_lr or self.mamlpp
        self.msl = mamlpp.multi_step_loss or self.mamlpp
        names = [k for k, _ in self.model.named_parameters()]
        self.adapt_keys = (
            [k for k in names if k.startswith("head.")] if algo.name == "anil" else None
        )
        self._lr_keys = self.adapt_keys or names

    # -- parameters ------------------------------------------------------------------------------

    def init_params(self) -> Params:
        """The network's initial weights as leaf tensors that require grad."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}

    def init_lrs(self) -> Params:
        """Learned inner step sizes: Meta-SGD's per weight, MAML++ LSLR's per layer and step.

        Call it after :meth:`init_params` (Meta-SGD draws them from the learner's generator).

        Returns:
            ``{name: Tensor[*shape]}`` (Meta-SGD, drawn from ``metasgd.lr_range``) or
            ``{name: Tensor[inner.steps]}`` (LSLR, all ``inner.lr``) for each adapted parameter;
            ``{}`` for the variants with a fixed step size.
        """
        shapes = dict(self.model.named_parameters())
        lrs: Params = {}
        inner = self.inner
        for k in self._lr_keys if self.meta_sgd or self.per_step_lr else ():
            p = shapes[k]
            if self.meta_sgd:
                low, high = section(self.cfg.metasgd, "metasgd").lr_range
                init = torch.rand(p.shape, generator=self.generator, device=p.device)
                lrs[k] = (low + (high - low) * init).requires_grad_()
            else:
                lrs[k] = torch.full((inner.steps,), inner.lr, device=p.device).requires_grad_()
        return lrs

    def _inner_lr(self, lrs: Params | None, steps: int) -> InnerLR:
        if not (self.meta_sgd or self.per_step_lr):
            return self.inner.lr
        if not lrs:
            raise ValueError(
                f"{self.cfg.algo.name} learns its inner step sizes: pass lrs=learner.init_lrs() "
                "(or the trained ones)"
            )
        if self.meta_sgd:
            return {k: lrs[k] for k in self._lr_keys}
        trained = self.inner.steps
        # evaluation beyond the trained steps reuses the last learned rate
        return [{k: lrs[k][min(s, trained - 1)] for k in self._lr_keys} for s in range(steps)]

    # -- the model as a function of its parameters -----------------------------------------------

    def _forward(self, net: Params, x: Tensor, step: int) -> Tensor:
        if isinstance(self.model, MLP):  # functional_call's ops without its bookkeeping
            return self.model.functional_forward(net, x)
        # build_model's networks share no parameter between two names: functional_call need
        # not look for tied weights on every call (tie_weights=False skips that search)
        bn_steps = self.inner.steps if self.mamlpp_options.per_step_bn_weights else 0
        kwargs = {"step": min(step, bn_steps)}
        return functional_call(self.model, net, (x,), kwargs, tie_weights=False)

    def _support_loss(self, net: Params, data: tuple[Tensor, Tensor], step: int) -> Tensor:
        return task_loss(self._forward(net, data[0], step), data[1])

    def _adapt(
        self,
        params: Params,
        batch: TaskBatch,
        steps: int,
        first_order: bool,
        lrs: Params | None = None,
    ) -> AdaptResult:
        return adapt(
            params,
            self._support_loss,
            (batch.support_x, batch.support_y),
            steps=steps,
            lr=self._inner_lr(lrs, steps),
            first_order=first_order,
            adapt_keys=self.adapt_keys,
            step_arg=True,
        )

    def _query(
        self, fn: Callable[[Tensor, Tensor], Tensor], adapted: Params, batch: TaskBatch, step: int
    ) -> Tensor:
        """``fn(prediction, target)`` per task at adapted params ``[task, ...]``: ``[task]``."""

        def one(p: Params, x: Tensor, y: Tensor) -> Tensor:
            return fn(self._forward(p, x, step), y)

        return vmap(one)(adapted, batch.query_x, batch.query_y)

    def _predict(self, adapted: Params, batch: TaskBatch, step: int) -> Tensor:
        """Query predictions at adapted params ``[task, ...]``: ``[task, query, out]``."""
        return vmap(lambda p, x: self._forward(p, x, step))(adapted, batch.query_x)

    # -- the learner interface -------------------------------------------------------------------

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query loss after the inner loop (MSL: weighted over every inner step)."""
        steps = self.inner.steps
        if not (self.msl and steps > 0):
            return self._outer_loss_last_step(params, batch, steps, lrs)
        result = self._adapt(params, batch, steps, self.first_order, lrs)
        weights = multi_step_loss_weights(
            steps,
            iteration,
            self.mamlpp_options.multi_step_loss_iterations,
            batch.query_x.device,
        )
        preds = [self._predict(result.trajectory[s], batch, s) for s in range(1, steps + 1)]
        losses = torch.stack([vmap(task_loss)(p, batch.query_y).mean() for p in preds])
        loss = (weights * losses).sum()
        with torch.no_grad():  # from the same predictions: one query forward, not two
            metric = vmap(task_metric)(preds[-1].detach(), batch.query_y).mean()
        return self._outer(loss, metric, result.losses)

    def _outer_loss_last_step(
        self, params: Params, batch: TaskBatch, steps: int, lrs: Params | None
    ) -> OuterLoss:
        """The query loss after the last inner step: inner loop and query in one ``vmap``."""
        regression = batch.query_y.dtype != torch.int64

        def query(adapted: Params, data: tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
            pred = self._forward(adapted, data[0], steps)
            loss = task_loss(pred, data[1])
            if regression:  # the metric (MSE) is the loss itself
                return (loss,)
            with torch.no_grad():  # from the same predictions: one query forward, not two
                return loss, task_metric(pred, data[1])

        inner_losses, query_out = adapt_and_evaluate(
            params,
            self._support_loss,
            (batch.support_x, batch.support_y),
            query,
            (batch.query_x, batch.query_y),
            steps=steps,
            lr=self._inner_lr(lrs, steps),
            first_order=self.first_order,
            adapt_keys=self.adapt_keys,
            step_arg=True,
        )
        loss = query_out[0].mean()
        metric = loss.detach() if regression else query_out[1].mean()
        return self._outer(loss, metric, inner_losses)

    def _outer(self, loss: Tensor, metric: Tensor, inner_losses: Tensor) -> OuterLoss:
        return adapted_outer_loss(loss, metric, inner_losses, self.cfg.task.metric)

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps inner steps, ``[task, steps + 1]``."""
        result = self._adapt(params, batch, steps, True, lrs)
        with torch.no_grad():
            return torch.stack(
                [
                    self._query(task_metric, {k: v.detach() for k, v in p.items()}, batch, s)
                    for s, p in enumerate(result.trajectory)
                ],
                dim=1,
            )

"""iMAML: implicit meta-gradients through a proximal inner problem (Rajeswaran et al. 2019).

Each task's inner problem is regularised towards the meta-parameters θ (Eq. 4)::

    φ_i(θ) = argmin_φ  L_support,i(φ) + λ/2 ||φ - θ||²

solved approximately by a few gradient-descent steps from φ = θ (:func:`proximal_path`), with no
autograd graph kept. At the solution, the implicit function theorem gives (Lemma 1)::

    dφ_i/dθ = (I + H_i/λ)^{-1},   H_i = ∇²L_support,i(φ_i)

so the meta-gradient of the query loss is ``x_i = (I + H_i/λ)^{-1} ∇L_query,i(φ_i)``, solved by a
few conjugate-gradient steps with Hessian-vector products (:func:`implicit_meta_gradient`, Alg. 2
and 3 of the paper). Its memory is that of one Hessian-vector product, whatever the number of inner
steps (MAML keeps every inner step's graph). Both run once for the whole meta-batch, vmapped over
the task axis like :func:`metarl.functional.adapt`.

By default this module solves the paper's Eq. 4 and Eq. 7 as written. The released code
(aravindr93/imaml_dev, ``examples/omniglot_implicit_maml.py``), which produced the paper's Omniglot
numbers, differs in two details, both available here: its inner loop is plain gradient descent on
L with one "pull-back" step of the inner learning rate on λ/2 ||φ - θ||² at the end
(``imaml.proximal: pull_back``), and its CG matrix is ``2 I + H / (λ + 10)``, which is
``I + H / 24`` up to a scale Adam does not see (``imaml.cg_lam: 24`` with λ = 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call, grad, grad_and_value, vjp, vmap

from envs.supervised import TaskBatch
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    task_loss,
    task_metric,
)
from metarl.functional import LossFn, Params, adapt, check_params

__all__ = [
    "IMAMLLearner",
    "ImplicitGradient",
    "conjugate_gradient",
    "implicit_meta_gradient",
    "proximal_path",
]


def _check_lam(lam: float) -> None:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam > 0:
        raise ValueError(f"lam must be a number > 0 (the proximal strength λ), got {lam!r}")


def _first_tensor(data: Any) -> Tensor:
    while not isinstance(data, Tensor):
        data = next(iter(data.values())) if isinstance(data, Mapping) else data[0]
    return data


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[k] * b[k]).sum() for k in a)  # type: ignore[return-value]  # sum of Tensors


def _div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, 0 where ``den == 0`` (an exact CG solution); vmap-safe, no host sync."""
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(num), num / safe)


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, steps: int) -> Params:
    """``steps`` conjugate-gradient iterations on ``A x = b`` from ``x = 0``, for SPD ``A``.

    Nocedal & Wright, Alg. 5.2, on parameter dicts, with a fixed number of iterations and no
    data-dependent branch, so that it runs under ``torch.func.vmap`` (one solve per task). ``n``
    iterations solve an ``n``-dimensional system exactly (in exact arithmetic); 0 returns ``b``
    itself (iMAML's first-order approximation ``A = I``).

    Args:
        matvec: ``v -> A v`` on dicts shaped like ``b``.
        b: Right-hand side ``{name: Tensor[*shape]}``.
        steps: Iterations, >= 0.

    Returns:
        ``x`` shaped like ``b``.

    Raises:
        ValueError: If ``steps`` is not an int >= 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"cg steps must be an int >= 0, got {steps!r}")
    if steps == 0:
        return dict(b)
    x = {k: torch.zeros_like(v) for k, v in b.items()}
    r, p = dict(b), dict(b)
    rr = _dot(r, r)
    for _ in range(steps):
        ap = matvec(p)
        alpha = _div(rr, _dot(p, ap))
        x = {k: x[k] + alpha * p[k] for k in x}
        r = {k: r[k] - alpha * ap[k] for k in r}
        new_rr = _dot(r, r)
        beta = _div(new_rr, rr)
        p = {k: r[k] + beta * p[k] for k in p}
        rr = new_rr
    return x


def proximal_path(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    lam: float,
    lr: float,
    steps: int,
    pull_back: bool = False,
) -> Iterator[Params]:
    """Gradient descent on each task's proximal objective ``L(φ) + λ/2 ||φ - θ||²`` from φ = θ.

    Yields the detached per-task parameters after 0, 1, ..., ``steps`` steps (``[task, *shape]``
    each); a consumer that keeps only the last holds one copy, whatever ``steps`` is. Each step is
    one call of :func:`metarl.functional.adapt` (vmapped over the tasks, first order).

    With ``pull_back`` the steps descend ``L`` alone and each yielded point is followed by one
    step of ``lr`` on the proximal term, ``φ - lr·λ (φ - θ)``, as aravindr93/imaml_dev does after
    its inner loop (the path itself continues from the point before the pull-back).

    Args:
        params: θ ``{name: Tensor[*shape]}`` (detached here; the anchor of the proximal term).
        loss_fn: ``loss_fn(params, task_data) -> Tensor[]``, the inner (support) loss.
        data: Tensors ``[task, ...]`` as for :func:`metarl.functional.adapt`.
        lam: λ > 0.
        lr: Inner step size > 0.
        steps: Inner steps >= 0.
        pull_back: Descend ``L`` alone and pull each yielded point back towards θ once.

    Raises:
        ValueError: If ``lam`` or ``lr`` is not positive, or ``steps`` is negative.
    """
    check_params(params)
    _check_lam(lam)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    anchor = {k: v.detach() for k, v in params.items()}

    def prox_loss(phi: Params, task_data: Any) -> Tensor:
        shift = sum(((phi[k] - anchor[k]) ** 2).sum() for k in anchor)
        return loss_fn(phi, task_data) + 0.5 * lam * shift

    def pulled(phi: Params) -> Params:
        return {k: v - (lr * lam) * (v - anchor[k]) for k, v in phi.items()}

    step_loss = loss_fn if pull_back else prox_loss
    tasks = _first_tensor(data).shape[0]
    phi = {k: v.expand(tasks, *v.shape) for k, v in anchor.items()}
    yield phi  # at θ the pull-back changes nothing
    for _ in range(steps):
        result = adapt(phi, step_loss, data, steps=1, lr=lr, per_task=True, first_order=True)
        phi = {k: v.detach() for k, v in result.params.items()}
        yield pulled(phi) if pull_back else phi


class ImplicitGradient(NamedTuple):
    """The implicit meta-gradient of a meta-batch.

    Attributes:
        grads: ``x_i = (I + H_i/λ)^{-1} ∇L_query,i(φ_i)`` per task, ``{name: [task, *shape]}``.
        query_loss: ``L_query,i(φ_i)`` per task, ``[task]`` (detached).
    """

    grads: Params
    query_loss: Tensor


def implicit_meta_gradient(
    phi: Params,
    inner_loss: LossFn,
    outer_loss: LossFn,
    support: Any,
    query: Any,
    *,
    lam: float,
    cg_steps: int,
) -> ImplicitGradient:
    """Computes iMAML's meta-gradient of each task at its adapted parameters (Alg. 2, Eq. 7).

    Solves ``(I + H_i/λ) x_i = ∇L_query,i(φ_i)`` with ``cg_steps`` conjugate-gradient steps,
    ``H_i v`` a reverse-over-reverse Hessian-vector product of the inner loss at ``φ_i``.

    Args:
        phi: Adapted parameters ``{name: Tensor[task, *shape]}`` (treated as constants).
        inner_loss: ``inner_loss(params, task_support) -> Tensor[]`` (without the proximal term).
        outer_loss: ``outer_loss(params, task_query) -> Tensor[]``.
        support: Support data ``[task, ...]``.
        query: Query data ``[task, ...]``.
        lam: λ > 0 of the proximal term.
        cg_steps: CG iterations, >= 0 (0: the first-order approximation ``x_i = ∇L_query``).

    Returns:
        :class:`ImplicitGradient`.

    Raises:
        ValueError: If ``lam`` <= 0 or ``cg_steps`` < 0.
    """
    check_params(phi)
    _check_lam(lam)
    if isinstance(cg_steps, bool) or not isinstance(cg_steps, int) or cg_steps < 0:
        raise ValueError(f"cg_steps must be an int >= 0, got {cg_steps!r}")

    def one(phi_t: Params, s: Any, q: Any) -> tuple[Params, Tensor]:
        g, loss = grad_and_value(outer_loss)(phi_t, q)
        hvp = vjp(lambda p: grad(inner_loss)(p, s), phi_t)[1]

        def matvec(v: Params) -> Params:
            hv = hvp(v)[0]
            return {k: v[k] + hv[k] / lam for k in v}

        return conjugate_gradient(matvec, g, cg_steps), loss

    constants = {k: v.detach() for k, v in phi.items()}
    with torch.enable_grad():
        grads, losses = vmap(one)(constants, support, query)
    return ImplicitGradient({k: v.detach() for k, v in grads.items()}, losses.detach())


class IMAMLLearner(FixedStepSizes):
    """iMAML with a gradient-descent inner solver (the paper's "iMAML, GD").

    Args:
        cfg: The experiment config (``inner.lr``/``inner.steps`` for the inner solver, ``imaml``
            for λ, the CG steps, where the proximal term acts and the CG matrix's λ).
        device: Where the parameters live.
        generator: Initialises the network.

    Raises:
        ValueError: If ``inner.first_order`` is set (iMAML's meta-gradient is implicit; use
            ``imaml.cg_steps: 0`` for its first-order approximation).
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        assert cfg.inner is not None and cfg.imaml is not None  # filled by the config
        if cfg.inner.first_order:
            raise ValueError(
                "inner.first_order does not apply to imaml (its meta-gradient is implicit); "
                "set imaml.cg_steps: 0 for the first-order approximation"
            )
        self.cfg = cfg
        self.inner, self.imaml = cfg.inner, cfg.imaml
        self.model = build_model(cfg, generator, device, embedding=False)

    def init_params(self) -> Params:
        """The network weights θ (leaf tensors that require grad)."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}

    def _loss(self, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        return task_loss(functional_call(self.model, params, (data[0],)), data[1])

    def _metric(self, phi: Params, batch: TaskBatch) -> Tensor:
        def one(p: Params, x: Tensor, y: Tensor) -> Tensor:
            return task_metric(functional_call(self.model, p, (x,)), y)

        with torch.no_grad():
            return vmap(one)(phi, batch.query_x, batch.query_y)

    def _path(self, params: Params, batch: TaskBatch, steps: int) -> Iterator[Params]:
        return proximal_path(
            params,
            self._loss,
            (batch.support_x, batch.support_y),
            lam=self.imaml.lam,
            lr=self.inner.lr,
            steps=steps,
            pull_back=self.imaml.proximal == "pull_back",
        )

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """The mean query loss, as a surrogate whose gradient is the implicit meta-gradient.

        Its value is the mean query loss at the adapted parameters; its gradient with respect to
        θ is the task mean of :func:`implicit_meta_gradient`.
        """
        support = (batch.support_x, batch.support_y)
        with torch.no_grad():
            before = vmap(self._loss, in_dims=(None, 0))(params, support).mean()
        phi = params
        for step in self._path(params, batch, self.inner.steps):
            phi = step  # only the last is kept: memory does not grow with the steps
        implicit = implicit_meta_gradient(
            phi,
            self._loss,
            self._loss,
            support,
            (batch.query_x, batch.query_y),
            lam=self.imaml.lam if self.imaml.cg_lam is None else self.imaml.cg_lam,
            cg_steps=self.imaml.cg_steps,
        )
        linear = sum((params[k] * implicit.grads[k].mean(0)).sum() for k in params)
        assert isinstance(linear, Tensor)
        loss = implicit.query_loss.mean() + linear - linear.detach()
        key = "query_" + self.cfg.task.metric
        return OuterLoss(
            loss, {key: self._metric(phi, batch).mean(), "support_loss_before": before}
        )

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps proximal inner steps, ``[task, steps + 1]``."""
        path = self._path(params, batch, steps)
        return torch.stack([self._metric(phi, batch) for phi in path], dim=1)

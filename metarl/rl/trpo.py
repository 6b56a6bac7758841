"""Trust region policy optimisation step (Schulman et al. 2015, App. C) on a dict of parameters.

The outer optimiser of MAML-TRPO (Finn et al. 2017 and cbfinn/maml_rl: max KL 0.01, CG 10
iterations, damping 1e-5, backtracking 0.8 x 15). One step:

1. ``g = grad L(theta)`` of the surrogate loss, and ``H v`` = exact Hessian-vector products of the
   mean KL at ``theta`` (double backward, or the caller's ``fvp`` such as the Gauss-Newton form
   ``J^T F J v`` of :func:`gauss_newton_fvp`; ``H`` is the Fisher matrix there), plus
   ``damping * v``.
2. ``s = CG(H, -g)``, approximately ``-H^{-1} g``, by :func:`conjugate_gradient`.
3. The full step ``beta * s`` with ``beta = sqrt(2 max_kl / s^T H s)``, which puts the quadratic
   KL model exactly on the trust-region boundary (``s^T H s`` from one more product, or from
   CG's residual with ``step_curvature="cg"``).
4. Backtracking line search over ``theta + frac * beta * s``, ``frac = 1, r, r**2, ...``: the first
   candidate whose loss went down and whose KL is at most ``max_kl`` is accepted (rllab's
   ``ConjugateGradientOptimizer``; pytorch-maml-rl's ``MAMLTRPO.step``). If none is, the old
   parameters are kept.

The loss and KL are closures over the parameters, so MAML-TRPO can recompute them *through* the
inner adaptation for every candidate: nothing here assumes the KL is a simple function of a policy
output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeAlias, cast

import torch
from torch import Tensor

from metarl.functional import check_params
from metarl.rl.gauss_newton import FisherFn, OutputsFn, gauss_newton_fvp

__all__ = [
    "FVPFactory",
    "FisherFn",
    "KLFn",
    "LossFn",
    "OutputsFn",
    "Params",
    "STEP_CURVATURES",
    "ReduceFn",
    "TRPOResult",
    "conjugate_gradient",
    "flat_grad",
    "flatten_params",
    "gauss_newton_fvp",
    "hessian_vector_product",
    "make_hvp_fn",
    "trpo_step",
    "unflatten_like",
]

Params: TypeAlias = dict[str, Tensor]
"""Named parameters, e.g. ``dict(module.named_parameters())``."""

LossFn: TypeAlias = Callable[[Params], Tensor | tuple[Tensor, Tensor]]
"""``loss_fn(params) -> Tensor[]`` (surrogate loss to minimise), or ``(loss, kl)`` when no
separate ``kl_fn`` is given."""

KLFn: TypeAlias = Callable[[Params], Tensor]
"""``kl_fn(params) -> Tensor[]``: mean KL between the fixed old policy and the one at ``params``."""


FVPFactory: TypeAlias = Callable[[Params], Callable[[Tensor], Tensor]]
"""``fvp(params) -> (v -> F v)``: the KL's curvature products at ``params`` without damping
(e.g. :func:`gauss_newton_fvp`); :func:`trpo_step` adds the damping."""

STEP_CURVATURES = ("product", "cg")
"""The values of :func:`trpo_step`'s ``step_curvature``."""

ReduceFn: TypeAlias = Callable[[Sequence[Tensor]], None]
"""``reduce(tensors)`` sums tensors over the ranks in place
(:func:`metarl.distributed.all_reduce_sum_`), for a loss and KL that are each rank's share of a
sum over ranks."""


class TRPOResult(NamedTuple):
    """Outcome of :func:`trpo_step`.

    All values describe the returned parameters: on rejection they are the old parameters, with
    ``step_frac = 0``, ``improvement = 0``, ``kl = 0`` and ``loss_after = loss_before``.

    Attributes:
        new_params: A new dict with the same names, shapes, dtypes and devices, detached.
        step_frac: Accepted fraction of the full step (``ls_backtrack ** k``), 0.0 on rejection.
        improvement: ``loss_after - loss_before`` (negative when the loss went down), 0-d.
        kl: ``kl_fn(new_params)``, 0-d.
        accepted: Whether a candidate passed the line search.
        loss_before: Surrogate loss at the old parameters, 0-d, detached.
        loss_after: Surrogate loss at ``new_params``, 0-d, detached.
    """

    new_params: Params
    step_frac: float
    improvement: Tensor
    kl: Tensor
    accepted: bool
    loss_before: Tensor
    loss_after: Tensor


# ----------------------------------------------------------------------------------------------
# Flat-vector helpers
# ----------------------------------------------------------------------------------------------


def flatten_params(params: Mapping[str, Tensor]) -> Tensor:
    """Concatenates the flattened tensors of ``params`` in iteration order.

    Args:
        params: Named tensors.

    Returns:
        A vector of length ``sum(p.numel())``.

    Raises:
        TypeError: If ``params`` is not a non-empty mapping of str to Tensor.
    """
    check_params(params)
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten_like(flat: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Splits a vector into a new dict shaped like ``like`` (inverse of :func:`flatten_params`).

    Args:
        flat: Vector of length ``sum(p.numel() for p in like.values())``.
        like: Named tensors giving names, order and shapes.

    Returns:
        A new dict with one tensor per name of ``like``, in its shape and dtype (views into
        ``flat`` where the dtypes agree).

    Raises:
        ValueError: If ``flat`` is not a vector of the right length.
    """
    check_params(like)
    total = sum(p.numel() for p in like.values())
    if not isinstance(flat, Tensor) or flat.dim() != 1 or flat.numel() != total:
        got = list(flat.shape) if isinstance(flat, Tensor) else type(flat).__name__
        raise ValueError(f"flat must be a vector of length {total} (all of like), got {got}")
    out: Params = {}
    offset = 0
    for name, ref in like.items():
        out[name] = flat[offset : offset + ref.numel()].reshape(ref.shape).to(ref.dtype)
        offset += ref.numel()
    return out


def flat_grad(
    output: Tensor,
    params: Mapping[str, Tensor],
    *,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> Tensor:
    """Gradient of a scalar with respect to ``params``, as one flat vector.

    Parameters that ``output`` does not depend on get zero gradients.

    Args:
        output: A 0-d tensor.
        params: Named tensors that require grad.
        retain_graph: Passed to ``torch.autograd.grad``.
        create_graph: Keep the graph of the gradient (for double backward).

    Returns:
        Vector of length ``sum(p.numel())``, ordered like :func:`flatten_params`.

    Raises:
        ValueError: If ``output`` is not 0-d.
    """
    check_params(params)
    if not isinstance(output, Tensor) or output.dim() != 0:
        got = list(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"output must be a 0-d tensor, got {got}")
    tensors = list(params.values())
    grads = torch.autograd.grad(
        output, tensors, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return _cat_grads(grads, tensors)


def _cat_grads(grads: tuple[Tensor | None, ...], tensors: list[Tensor]) -> Tensor:
    """Flattens gradients into one vector, zeros for tensors the output did not depend on."""
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, tensors, strict=True)
        ]
    )


# ----------------------------------------------------------------------------------------------
# Hessian-vector products and conjugate gradient
# ----------------------------------------------------------------------------------------------


def make_hvp_fn(
    kl: Tensor, params: Mapping[str, Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """Returns ``v -> (H + damping I) v`` with ``H`` the exact Hessian of ``kl`` at ``params``.

    The gradient of ``kl`` is taken once, with its graph kept; each product then differentiates
    ``grad(kl) . v`` again (Pearlmutter's trick), which is exact, unlike rllab's finite-difference
    products. The returned function keeps the graph of ``kl`` alive while it is referenced.

    Args:
        kl: 0-d tensor computed from ``params`` (the mean KL for TRPO).
        params: Named tensors that require grad.
        damping: Added multiple of the identity (Tikhonov damping), >= 0.

    Returns:
        A function from a vector of length ``sum(p.numel())`` to a vector of the same length,
        detached.

    Raises:
        ValueError: If ``kl`` is not 0-d or ``damping`` is negative.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    grad_kl = flat_grad(kl, params, retain_graph=True, create_graph=True)
    tensors = list(params.values())

    def hvp(vector: Tensor) -> Tensor:
        if not isinstance(vector, Tensor) or tuple(vector.shape) != tuple(grad_kl.shape):
            got = list(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
            raise ValueError(f"vector must have shape {list(grad_kl.shape)}, got {got}")
        grad_dot_v = torch.dot(grad_kl, vector.detach().to(grad_kl.dtype))
        if not grad_dot_v.requires_grad:  # kl is at most linear in params: H = 0.
            return damping * vector.detach()
        second = torch.autograd.grad(grad_dot_v, tensors, retain_graph=True, allow_unused=True)
        return _cat_grads(second, tensors).detach() + damping * vector.detach()

    return hvp


def hessian_vector_product(
    kl: Tensor, params: Mapping[str, Tensor], vector: Tensor, damping: float = 0.0
) -> Tensor:
    """One exact product ``(H + damping I) v`` with ``H`` the Hessian of ``kl`` at ``params``.

    For several products with the same ``kl`` use :func:`make_hvp_fn`, which differentiates
    ``kl`` only once.

    Args:
        kl: 0-d tensor computed from ``params``.
        params: Named tensors that require grad.
        vector: Vector of length ``sum(p.numel())``.
        damping: Added multiple of the identity, >= 0.

    Returns:
        The product, a detached vector like ``vector``.

    Raises:
        ValueError: If ``kl`` is not 0-d, ``vector`` has the wrong length or ``damping`` < 0.
    """
    return make_hvp_fn(kl, params, damping)(vector)


def conjugate_gradient(
    hvp_fn: Callable[[Tensor], Tensor],
    b: Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> Tensor:
    """Approximately solves ``A x = b`` for symmetric positive-definite ``A`` given as ``hvp_fn``.

    Standard CG from ``x = 0`` (Nocedal & Wright, Alg. 5.2), stopping after ``iters`` products or
    once ``|r|^2 <= residual_tol``. The stopping test reads one number per iteration from the
    device; this is the outer update, not an inner loop.

    Args:
        hvp_fn: ``v -> A v`` on vectors shaped like ``b``.
        b: Right-hand side, a vector ``[n]``.
        iters: Maximum number of products with ``A`` (>= 1).
        residual_tol: Stop when the squared residual norm falls to this.

    Returns:
        ``x``, a detached vector ``[n]`` (zero when ``b`` is zero).

    Raises:
        ValueError: If ``b`` is not a vector, ``iters`` < 1, or ``hvp_fn`` returns a wrong shape.
    """
    return _solve(hvp_fn, b, iters, residual_tol)[0]


def _solve(
    hvp_fn: Callable[[Tensor], Tensor], b: Tensor, iters: int, residual_tol: float
) -> tuple[Tensor, Tensor]:
    """:func:`conjugate_gradient`'s ``x`` and ``x^T A x``, read from the recurrence.

    ``x^T A x = x^T (b - r)`` with ``r`` the recurrence's residual (``b - A x`` up to rounding),
    so the quadratic form of the solution costs no product with ``A``.
    """
    if not isinstance(b, Tensor) or b.dim() != 1:
        got = list(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"b must be a vector [n], got {got}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    b = b.detach()
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rdotr = torch.dot(r, r)
    for _ in range(iters):
        if bool(rdotr <= residual_tol):
            break
        z = hvp_fn(p)
        if not isinstance(z, Tensor) or z.shape != b.shape:
            got = list(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"hvp_fn must return a vector of shape {list(b.shape)}, got {got}")
        z = z.detach()
        alpha = rdotr / torch.dot(p, z)
        x = x + alpha * p
        r = r - alpha * z
        new_rdotr = torch.dot(r, r)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
    return x, torch.dot(x, b - r)


# ----------------------------------------------------------------------------------------------
# The TRPO step
# ----------------------------------------------------------------------------------------------


def _leaves(params: Mapping[str, Tensor]) -> Params:
    """Fresh leaf tensors that require grad, so closures may differentiate through them."""
    return {k: v.detach().requires_grad_(True) for k, v in params.items()}


def _evaluate(loss_fn: LossFn, kl_fn: KLFn | None, params: Params) -> tuple[Tensor, Tensor]:
    if kl_fn is None:
        out = loss_fn(params)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                f"with kl_fn=None, loss_fn must return a (loss, kl) pair, got {type(out).__name__}"
            )
        loss, kl = out
    else:
        # a Tensor when kl_fn is given; checked to be a 0-d tensor below
        loss, kl = cast(Tensor, loss_fn(params)), kl_fn(params)
    for name, value in (("loss_fn", loss), ("kl_fn", kl)):
        if not isinstance(value, Tensor) or value.dim() != 0:
            got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must return a 0-d tensor, got {got}")
    return loss, kl


def _summed(reduce: ReduceFn, *tensors: Tensor) -> list[Tensor]:
    """The tensors summed over the ranks with one ``reduce`` call (new tensors)."""
    flat = torch.cat([t.detach().reshape(-1).to(tensors[0].dtype) for t in tensors])
    reduce([flat])
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].reshape(t.shape).to(t.dtype))
        offset += t.numel()
    return out


def _summed_hvp(
    local: Callable[[Tensor], Tensor], reduce: ReduceFn, damping: float
) -> Callable[[Tensor], Tensor]:
    """``v -> sum over ranks of local(v), + damping * v`` (the damping added once)."""

    def hvp(vector: Tensor) -> Tensor:
        product = local(vector).clone()
        reduce([product])
        return product + damping * vector.detach()

    return hvp


def _damped(local: Callable[[Tensor], Tensor], damping: float) -> Callable[[Tensor], Tensor]:
    """``v -> local(v) + damping * v``."""

    def hvp(vector: Tensor) -> Tensor:
        return local(vector) + damping * vector.detach()

    return hvp


def _check_step_args(
    max_kl: float,
    cg_iters: int,
    cg_damping: float,
    ls_backtrack: float,
    ls_steps: int,
    step_curvature: str,
) -> None:
    if step_curvature not in STEP_CURVATURES:
        raise ValueError(f"step_curvature must be one of {STEP_CURVATURES}, got {step_curvature!r}")
    if not max_kl > 0:
        raise ValueError(f"max_kl must be positive, got {max_kl}")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
        raise ValueError(f"cg_iters must be an int >= 1, got {cg_iters!r}")
    if cg_damping < 0:
        raise ValueError(f"cg_damping must be >= 0, got {cg_damping}")
    if not 0 < ls_backtrack < 1:
        raise ValueError(f"ls_backtrack must be in (0, 1), got {ls_backtrack}")
    if isinstance(ls_steps, bool) or not isinstance(ls_steps, int) or ls_steps < 1:
        raise ValueError(f"ls_steps must be an int >= 1, got {ls_steps!r}")


def trpo_step(
    loss_fn: LossFn,
    kl_fn: KLFn | None,
    params: Mapping[str, Tensor],
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    ls_backtrack: float = 0.8,
    ls_steps: int = 15,
    reduce: ReduceFn | None = None,
    fvp: FVPFactory | None = None,
    step_curvature: str = "product",
) -> TRPOResult:
    """One TRPO update of ``params`` (see the module docstring for the algorithm).

    ``loss_fn`` and ``kl_fn`` are called with fresh leaf tensors that require grad, outside
    ``torch.no_grad``, so they may differentiate internally (MAML's inner step). ``kl_fn(params)``
    must be the mean KL between the *fixed* old policy (captured, detached, in the closure) and
    the policy at ``params``; it is ~0 at the old parameters and its Hessian there is the Fisher
    matrix. The arguments are never modified.

    Args:
        loss_fn: ``params -> loss`` (0-d surrogate loss to minimise), or ``params -> (loss, kl)``
            when ``kl_fn`` is None, so one forward pass (e.g. through the inner adaptation)
            serves both.
        kl_fn: ``params -> kl`` (0-d), or None (see ``loss_fn``).
        params: Current parameters (names to tensors).
        max_kl: Trust-region radius on the mean KL (0.01 in MAML-TRPO).
        cg_iters: Conjugate-gradient iterations.
        cg_damping: Damping added to the KL Hessian in CG (1e-5 in MAML-TRPO).
        ls_backtrack: Step shrink factor of the line search.
        ls_steps: Number of line-search candidates.
        reduce: Data parallelism: ``loss_fn`` and ``kl_fn`` return this rank's share of a sum
            over ranks, and ``reduce`` sums in place over the ranks the gradient with the loss
            (one call), every Hessian-vector product of CG (one call each, the damping added
            after) and each line-search candidate's loss and KL (one call), so every rank takes
            the same step. None: one process.
        fvp: ``params -> (v -> H v)``, the KL's Hessian-vector products at the old parameters
            without damping, e.g. :func:`gauss_newton_fvp` (exact there, and much cheaper than
            differentiating twice through an inner loop). None: exact double backward of the KL
            returned by the closures (:func:`make_hvp_fn`).
        step_curvature: How ``s^T H s`` of step 3 is found. ``"product"``: one more product
            with ``H`` after CG (rllab, pytorch-maml-rl). ``"cg"``: from CG's own recurrence,
            ``s^T (H + damping) s = s^T (b - r)`` with ``r`` its residual, which is exact
            without rounding and saves that product (one of ``cg_iters + 1``); in float32 the
            two differ by rounding (about 1e-8 relative on MAML-TRPO HalfCheetahVel).

    Returns:
        :class:`TRPOResult`; ``new_params`` is a new dict, the old tensors (detached) when no
        candidate was accepted or the step direction was degenerate (zero gradient).

    Raises:
        ValueError: On invalid hyperparameters or closures returning non-scalars.
        TypeError: If ``params`` is not a non-empty dict of tensors.
    """
    check_params(params)
    _check_step_args(max_kl, cg_iters, cg_damping, ls_backtrack, ls_steps, step_curvature)
    leaves = _leaves(params)
    loss_before, kl_before = _evaluate(loss_fn, kl_fn, leaves)
    # retain_graph: with kl_fn=None the loss and the KL share one graph.
    grad = flat_grad(loss_before, leaves, retain_graph=True)
    loss_before = loss_before.detach()
    if fvp is not None:
        del kl_before  # the products come from fvp: the KL's graph is not needed
        local = fvp(leaves)
        if reduce is None:
            hvp = _damped(local, cg_damping)
    elif reduce is None:
        hvp = make_hvp_fn(kl_before, leaves, cg_damping)
    else:
        local = make_hvp_fn(kl_before, leaves)
    if reduce is not None:
        grad, loss_before = _summed(reduce, grad, loss_before)
        hvp = _summed_hvp(local, reduce, cg_damping)
    direction, shs = _solve(hvp, -grad, cg_iters, 1e-10)
    if step_curvature == "product":
        shs = torch.dot(direction, hvp(direction))
    del hvp  # release the KL graph before the line search.
    old = {k: v.detach() for k, v in params.items()}
    rejected = TRPOResult(
        new_params=old,
        step_frac=0.0,
        improvement=torch.zeros_like(loss_before),
        kl=torch.zeros_like(loss_before),
        accepted=False,
        loss_before=loss_before,
        loss_after=loss_before,
    )
    shs_value = float(shs)
    if not (math.isfinite(shs_value) and shs_value > 0.0):
        return rejected
    full_step = direction * math.sqrt(2.0 * max_kl / shs_value)
    old_flat = flatten_params(old)
    frac = 1.0
    for _ in range(ls_steps):
        candidate = unflatten_like(old_flat + frac * full_step.to(old_flat.dtype), old)
        loss, kl = _evaluate(loss_fn, kl_fn, _leaves(candidate))
        loss, kl = loss.detach(), kl.detach()
        if reduce is not None:
            loss, kl = _summed(reduce, loss, kl)
        improvement = loss - loss_before
        # Strictly better loss, KL inside the trust region (rllab's test; NaN fails both).
        if bool(improvement < 0) and bool(kl <= max_kl):
            new_params = {k: v.detach().clone() for k, v in candidate.items()}
            return TRPOResult(
                new_params=new_params,
                step_frac=frac,
                improvement=improvement,
                kl=kl,
                accepted=True,
                loss_before=loss_before,
                loss_after=loss,
            )
        frac *= ls_backtrack
    return rejected

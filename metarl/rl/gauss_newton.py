"""The Gauss-Newton form ``J^T F J`` of a KL's Hessian, as products from graphs saved once.

TRPO's conjugate gradient multiplies by the Hessian of the mean KL at the old parameters, where
it equals ``J^T F J`` (``J`` the Jacobian of the distribution parameters, ``F`` their Fisher
matrix). :func:`gauss_newton_fvp` builds those products for :func:`metarl.rl.trpo.trpo_step`'s
``fvp`` without a forward pass per product; MAML-TRPO's ``trpo.fvp: gauss_newton`` uses it
through the inner step (:func:`metarl.algorithms.maml_rl_inner.gauss_newton_fvp_fn`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias, cast

import torch
from torch import Tensor

from metarl.functional import check_params

__all__ = ["FisherFn", "OutputsFn", "gauss_newton_fvp"]

OutputsFn: TypeAlias = Callable[[dict[str, Tensor]], tuple[Tensor, ...]]
"""``outputs_fn(params) -> outputs``: the distribution parameters the KL is a function of."""

FisherFn: TypeAlias = Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, ...]]
"""``fisher(outputs, tangents) -> products``: the KL's Hessian in output space times tangents."""


def gauss_newton_fvp(
    outputs_fn: OutputsFn,
    params: Mapping[str, Tensor],
    fisher: FisherFn,
    compile: bool = False,
) -> Callable[[Tensor], Tensor]:
    """Returns ``v -> J^T F J v``, the Gauss-Newton form of the KL's Hessian at ``params``.

    With ``f = outputs_fn`` the distribution parameters (e.g. a policy's mean and log-std,
    through any differentiable computation such as MAML's inner step) and the KL between a fixed
    old distribution and ``f(params)``, the KL's Hessian is ``J^T F J + sum_k dKL/df_k H_k``
    (``J = df/dparams``, ``F`` the KL's Hessian in output space, ``H_k`` the Hessians of the
    outputs). Where the old distribution equals ``f(params)`` (TRPO's KL at the old parameters)
    the KL is minimal, ``dKL/df = 0``, and the Hessian is exactly ``J^T F J`` with ``F`` the
    Fisher matrix of the output distribution (Martens 2014, "New insights and perspectives on
    the natural gradient method"; Schulman et al. 2015, App. C.1).

    ``f`` runs once; its reverse-mode product (:func:`torch.func.vjp`) gives ``J^T u`` and is
    applied once, with its graph, to a probe ``u`` that requires grad: ``u -> J^T u`` is linear,
    so its gradient in ``u`` along ``v`` is ``J v``, from saved activations (no forward pass per
    product, unlike :func:`torch.func.jvp`). With ``compile`` both graphs are :func:`torch.compile`
    graphs run once under autograd, so a product's two backward passes are compiled (AOTAutograd)
    and fused; it compiles on the first call for a batch's shapes (tens of seconds; inductor needs
    a C++ compiler on CPU) and rounds differently (float32 sums reordered): off by default.

    Args:
        outputs_fn: ``params -> outputs``, a tuple of tensors, composable with ``torch.func``.
        params: Named tensors at which ``J`` is taken.
        fisher: ``(outputs, tangents) -> F tangents`` in output space (outputs detached).
        compile: Read both products from compiled, cached graphs (see above).

    Returns:
        A function from a vector of length ``sum(p.numel())`` to a detached vector like it.
    """
    check_params(params)
    names, values = list(params), tuple(v.detach() for v in params.values())

    def flat_outputs(*tensors: Tensor) -> tuple[Tensor, ...]:
        return tuple(outputs_fn(dict(zip(names, tensors, strict=True))))

    sizes = [v.numel() for v in values]
    pull: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]  # u -> J^T u, from saved graphs
    if compile:
        leaves = tuple(v.detach().requires_grad_(True) for v in values)

        def transposed(values: tuple[Tensor, ...], cotangents: tuple[Tensor, ...]) -> Tensor:
            return cast(Tensor, torch.func.vjp(flat_outputs, *values)[1](cotangents))

        with torch.enable_grad():
            graph = torch.compile(flat_outputs, dynamic=False)(*leaves)
            outputs = tuple(o.detach() for o in graph)
            probes = tuple(torch.zeros_like(o, requires_grad=True) for o in outputs)
            pulled = tuple(torch.compile(transposed, dynamic=False)(values, probes))

        used = [i for i, o in enumerate(graph) if o.requires_grad]  # some, where J != 0

        def pull(cotangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return torch.autograd.grad(
                [graph[i] for i in used],
                leaves,
                [cotangents[i].contiguous() for i in used],
                retain_graph=True,
                materialize_grads=True,
            )

    else:
        # torch.func.vjp's stubs allow a third (aux) item, absent without has_aux
        primal, vjp_fn = torch.func.vjp(flat_outputs, *values)[:2]
        outputs = tuple(o.detach() for o in primal)
        probes = tuple(torch.zeros_like(o, requires_grad=True) for o in outputs)
        with torch.enable_grad():
            pulled = tuple(vjp_fn(probes))
        pull = vjp_fn
    linked = [i for i, p in enumerate(pulled) if p.requires_grad]  # the rest: J^T u = 0

    def apply(tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if not linked:  # J = 0
            return tuple(torch.zeros_like(v) for v in values)
        jv = torch.autograd.grad(  # J v: the gradient in u of u -> J^T u along v
            [pulled[i] for i in linked],
            probes,
            [tangents[i] for i in linked],
            retain_graph=True,
            materialize_grads=True,
        )
        return tuple(pull(tuple(fisher(outputs, jv))))

    def product(vector: Tensor) -> Tensor:
        if not isinstance(vector, Tensor) or tuple(vector.shape) != (sum(sizes),):
            got = list(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
            raise ValueError(f"vector must have shape {[sum(sizes)]}, got {got}")
        pieces = vector.detach().split(sizes)
        tangents = tuple(
            t.reshape(v.shape).to(v.dtype) for t, v in zip(pieces, values, strict=True)
        )
        grads = apply(tangents)
        return torch.cat([g.reshape(-1) for g in grads]).to(vector.dtype)

    return product

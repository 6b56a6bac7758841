"""Functional inner loop shared by every gradient-based meta-learner.

Parameters are ``dict[str, Tensor]``; a model runs through ``torch.func.functional_call``. Every
function here is pure: it returns new dicts and never mutates its arguments.

One inner SGD step (MAML, Finn et al. 2017, Eq. 1; Meta-SGD, Li et al. 2017, Eq. 3)::

    theta' = theta - alpha * grad_theta L_support(theta)

``alpha`` is a float (MAML), a dict of learned per-parameter tensors (Meta-SGD), or one such value
per inner step (MAML++ LSLR, Antoniou et al. 2019). ``adapt_keys`` restricts adaptation to a subset
of parameters (ANIL, Raghu et al. 2020). ``first_order=True`` drops second derivatives (FOMAML).

Two equivalent implementations:

- :func:`adapt` / :func:`adapt_trajectory`: one task, ``torch.autograd.grad`` with
  ``create_graph=True`` for second order.
- :func:`batched_adapt` / :func:`batched_adapt_trajectory`: a meta-batch of tasks as one
  ``torch.func.vmap`` over ``torch.func.grad_and_value``; the outer ``torch.autograd`` pass
  differentiates through it (second order), or the inner gradients are detached (first order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import Tensor

__all__ = [
    "AdaptResult",
    "InnerLR",
    "LearningRate",
    "LossFn",
    "Params",
    "adapt",
    "adapt_trajectory",
    "check_params",
    "batched_adapt",
    "batched_adapt_trajectory",
    "inner_step",
]

Params: TypeAlias = dict[str, Tensor]
"""Named parameters, e.g. ``dict(module.named_parameters())``."""

LossFn: TypeAlias = Callable[..., Tensor]
"""``loss_fn(params, data) -> Tensor[]``, or ``loss_fn(params, data, step)`` with ``step_arg``."""

LearningRate: TypeAlias = float | Tensor | Mapping[str, Tensor]
"""One step's learning rate: a float, a 0-d tensor, or per-parameter tensors (Meta-SGD)."""

InnerLR: TypeAlias = LearningRate | Sequence[LearningRate]
"""A learning rate used at every inner step, or one per inner step (MAML++ LSLR)."""


class AdaptResult(NamedTuple):
    """Outcome of an inner loop.

    Attributes:
        params: Adapted parameters after all inner steps. In the batched functions each adapted
            tensor has a leading task axis ``[task, *shape]``.
        losses: Inner (support) loss at each step, evaluated before that step's update, still
            attached to the autograd graph. Shape ``[steps]``, or ``[task, steps]`` when batched.
        trajectory: ``steps + 1`` parameter dicts: ``trajectory[i]`` holds the parameters after
            ``i`` inner steps (``trajectory[0]`` is the initialisation, ``trajectory[-1]`` equals
            ``params``). Use it for MAML++'s multi-step loss and for adaptation curves.
    """

    params: Params
    losses: Tensor
    trajectory: tuple[Params, ...]


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_params(params: Any) -> None:
    """Checks that ``params`` is a non-empty ``dict[str, Tensor]``.

    Raises:
        TypeError: naming what was received instead.
    """
    if not isinstance(params, Mapping) or not params:
        raise TypeError(
            f"params must be a non-empty dict[str, Tensor], got {type(params).__name__}"
        )
    for name, value in params.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise TypeError(f"params must map str to Tensor, got {name!r}: {type(value).__name__}")


def _check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def _resolve_adapt_keys(params: Params, adapt_keys: Sequence[str] | None) -> tuple[str, ...]:
    if adapt_keys is None:
        return tuple(params)
    if isinstance(adapt_keys, str):
        raise TypeError(f"adapt_keys must be a sequence of names, not a str: {adapt_keys!r}")
    unknown = [k for k in adapt_keys if k not in params]
    if unknown:
        raise ValueError(f"adapt_keys names unknown parameters {unknown}; known: {sorted(params)}")
    if len(set(adapt_keys)) != len(adapt_keys):
        raise ValueError(f"adapt_keys has duplicate names: {list(adapt_keys)}")
    return tuple(adapt_keys)


def _check_one_lr(lr: Any, params: Params, keys: Sequence[str], where: str) -> None:
    if isinstance(lr, bool):
        raise TypeError(f"{where} must be a float, a 0-d Tensor or a dict of Tensors, got bool")
    if isinstance(lr, (int, float)):
        return
    if isinstance(lr, Tensor):
        if lr.dim() != 0:
            raise ValueError(f"{where} as a Tensor must be 0-d, got shape {tuple(lr.shape)}")
        return
    if not isinstance(lr, Mapping):
        raise TypeError(
            f"{where} must be a float, a 0-d Tensor or a dict of Tensors, got {type(lr).__name__}"
        )
    missing = [k for k in keys if k not in lr]
    if missing:
        raise ValueError(f"{where} is missing learning rates for adapted parameters {missing}")
    unknown = [k for k in lr if k not in params]
    if unknown:
        raise ValueError(f"{where} names unknown parameters {unknown}")
    for k in keys:
        value = lr[k]
        if not isinstance(value, Tensor):
            raise TypeError(f"{where}[{k!r}] must be a Tensor, got {type(value).__name__}")
        shape = tuple(params[k].shape)
        try:
            ok = torch.broadcast_shapes(value.shape, shape) == shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{where}[{k!r}] has shape {tuple(value.shape)}, which does not broadcast to the "
                f"parameter shape {shape}"
            )


def _lr_schedule(
    inner_lr: Any, steps: int, params: Params, keys: Sequence[str]
) -> list[LearningRate]:
    """Validates ``inner_lr`` and returns one learning rate per inner step."""
    per_step = isinstance(inner_lr, Sequence) and not isinstance(inner_lr, (str, bytes))
    if not per_step:
        _check_one_lr(inner_lr, params, keys, "inner_lr")
        return [inner_lr] * steps
    if len(inner_lr) != steps:
        raise ValueError(
            f"inner_lr as a per-step sequence must have one entry per step: got {len(inner_lr)} "
            f"entries for steps={steps}"
        )
    for i, lr in enumerate(inner_lr):
        _check_one_lr(lr, params, keys, f"inner_lr[{i}]")
    return list(inner_lr)


def _leaves(data: Any) -> list[Any]:
    if isinstance(data, Mapping):
        return [leaf for v in data.values() for leaf in _leaves(v)]
    if isinstance(data, (tuple, list)):
        return [leaf for v in data for leaf in _leaves(v)]
    return [data]


def _task_count(data: Any) -> int:
    """Returns the size of the shared leading task axis of every tensor in ``data``."""
    leaves = _leaves(data)
    if not leaves or not all(isinstance(leaf, Tensor) for leaf in leaves):
        kinds = sorted({type(leaf).__name__ for leaf in leaves})
        raise TypeError(
            "data must hold only tensors shaped [task, shot, ...] (a Tensor, or a tuple/list/dict "
            f"of them); found {kinds}. Close over constants in loss_fn instead."
        )
    if any(leaf.dim() == 0 for leaf in leaves):
        raise ValueError("data tensors must have a leading task axis, got a 0-d tensor")
    sizes = sorted({leaf.shape[0] for leaf in leaves})
    if len(sizes) != 1:
        raise ValueError(
            f"data tensors must share the leading task axis, got task sizes {sizes} "
            f"for shapes {[tuple(leaf.shape) for leaf in leaves]}"
        )
    return sizes[0]


# ----------------------------------------------------------------------------------------------
# One step
# ----------------------------------------------------------------------------------------------


def inner_step(params: Params, grads: Mapping[str, Tensor], inner_lr: LearningRate) -> Params:
    """Takes one inner SGD step ``theta' = theta - alpha * g`` on the parameters in ``grads``.

    Args:
        params: Parameters ``{name: Tensor[*shape]}``.
        grads: Gradients ``{name: Tensor[*shape]}`` for the parameters to update, a subset of
            ``params``; parameters not in ``grads`` pass through unchanged.
        inner_lr: A float, a 0-d tensor, or ``{name: Tensor}`` broadcastable to each updated
            parameter's shape (Meta-SGD's elementwise ``alpha``, or one scalar per layer).

    Returns:
        A new dict with the same keys as ``params``.

    Raises:
        TypeError: If ``params``, ``grads`` or ``inner_lr`` have the wrong type.
        ValueError: If ``grads`` names unknown parameters or has the wrong shapes, or
            ``inner_lr`` misses an updated parameter or has a shape that does not broadcast.
    """
    check_params(params)
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict[str, Tensor], got {type(grads).__name__}")
    keys = _resolve_adapt_keys(params, list(grads))
    for k in keys:
        if not isinstance(grads[k], Tensor) or grads[k].shape != params[k].shape:
            got = tuple(grads[k].shape) if isinstance(grads[k], Tensor) else type(grads[k])
            raise ValueError(f"grads[{k!r}] must match shape {tuple(params[k].shape)}, got {got}")
    _check_one_lr(inner_lr, params, keys, "inner_lr")
    return _sgd_update(params, grads, inner_lr)


def _sgd_update(params: Params, grads: Mapping[str, Tensor], lr: LearningRate) -> Params:
    new = dict(params)
    for k, g in grads.items():
        alpha = lr[k] if isinstance(lr, Mapping) else lr
        new[k] = params[k] - alpha * g
    return new


# ----------------------------------------------------------------------------------------------
# Inner loop
# ----------------------------------------------------------------------------------------------

_GradFn = Callable[[Params, Params, Any, int], tuple[dict[str, Tensor], Tensor]]


def _call_loss(loss_fn: LossFn, params: Params, data: Any, step: int, step_arg: bool) -> Tensor:
    loss = loss_fn(params, data, step) if step_arg else loss_fn(params, data)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (0-d) Tensor per task, got {got}")
    return loss


def _run_inner_loop(
    params: Params,
    keys: Sequence[str],
    lrs: Sequence[LearningRate],
    first_order: bool,
    grad_fn: _GradFn,
) -> AdaptResult:
    """The inner loop itself, written once for both gradient back ends."""
    fixed = {k: v for k, v in params.items() if k not in keys}
    fast = {k: params[k] for k in keys}
    trajectory = [dict(params)]
    losses = []
    for step, lr in enumerate(lrs):
        grads, loss = grad_fn(fast, fixed, step)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        fast = _sgd_update(fast, grads, lr)
        losses.append(loss)
        trajectory.append({k: fast.get(k, v) for k, v in params.items()})
    if losses:
        loss_tensor = torch.stack(losses)
    else:
        first = next(iter(params.values()))
        loss_tensor = first.new_zeros(0)
    return AdaptResult(trajectory[-1], loss_tensor, tuple(trajectory))


def adapt_trajectory(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    step_arg: bool = False,
) -> AdaptResult:
    """Adapts ``params`` to one task with ``steps`` inner SGD steps and keeps the trajectory.

    Second order (default) builds the inner gradients with ``create_graph=True`` so the outer
    loss differentiates through them; ``first_order=True`` detaches them (FOMAML). Works inside
    ``torch.no_grad()`` (gradients are enabled locally) and with parameters that do not require
    grad (e.g. at evaluation), in which case the result carries no outer graph to them.

    Args:
        params: Meta-parameters ``{name: Tensor[*shape]}``; they are not modified.
        loss_fn: ``loss_fn(params, data) -> Tensor[]`` (or ``loss_fn(params, data, step)`` with
            ``step_arg=True``, ``step`` the inner step index ``0..steps-1``, e.g. for MAML++
            per-step batch-norm weights).
        data: The task's support data, passed to ``loss_fn`` unchanged (e.g. ``(x, y)`` with
            ``x: [shot, ...]``).
        steps: Number of inner steps, ``>= 0``.
        inner_lr: A float or 0-d tensor; ``{name: Tensor}`` broadcastable to each adapted
            parameter (Meta-SGD, per-layer); or a sequence of ``steps`` such values (MAML++ LSLR).
            Tensors that require grad receive meta-gradients.
        first_order: Detach the inner gradients (no second derivatives).
        adapt_keys: Names of the parameters to adapt (ANIL: the head). ``None`` adapts all; the
            others pass through unchanged and stay differentiable for the outer loop.
        step_arg: Pass the inner step index to ``loss_fn`` as a third argument.

    Returns:
        :class:`AdaptResult` with ``params``, ``losses: [steps]`` and ``trajectory``.

    Raises:
        TypeError: If ``params``, ``steps`` or ``inner_lr`` have the wrong type.
        ValueError: If ``steps < 0``, ``adapt_keys`` or ``inner_lr`` name unknown parameters,
            ``inner_lr`` misses an adapted parameter, or ``loss_fn`` does not return a scalar.
    """
    check_params(params)
    _check_steps(steps)
    keys = _resolve_adapt_keys(params, adapt_keys)
    lrs = _lr_schedule(inner_lr, steps, params, keys)
    params = {
        k: v.detach().requires_grad_() if k in keys and not v.requires_grad else v
        for k, v in params.items()
    }

    def grad_fn(fast: Params, fixed: Params, step: int) -> tuple[dict[str, Tensor], Tensor]:
        loss = _call_loss(loss_fn, {**fixed, **fast}, data, step, step_arg)
        grads = torch.autograd.grad(
            loss,
            list(fast.values()),
            create_graph=not first_order,
            allow_unused=True,
            materialize_grads=True,
        )
        return dict(zip(fast, grads, strict=True)), loss

    with torch.enable_grad():
        return _run_inner_loop(params, keys, lrs, first_order, grad_fn)


def adapt(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    step_arg: bool = False,
) -> Params:
    """Adapts ``params`` to one task; :func:`adapt_trajectory` without the trajectory.

    Args:
        params: Meta-parameters ``{name: Tensor[*shape]}``.
        loss_fn: ``loss_fn(params, data) -> Tensor[]``.
        data: The task's support data.
        steps: Number of inner steps, ``>= 0``.
        inner_lr: Float, per-parameter dict, or per-step sequence (see :func:`adapt_trajectory`).
        first_order: Detach the inner gradients (FOMAML).
        adapt_keys: Names of the parameters to adapt; ``None`` adapts all.
        step_arg: Pass the inner step index to ``loss_fn`` as a third argument.

    Returns:
        The adapted parameters, a new dict with the keys of ``params``.

    Example:
        >>> w = {"w": torch.tensor([1.0])}
        >>> loss = lambda p, x: (p["w"] * x).pow(2).sum()
        >>> adapt(w, loss, torch.tensor([1.0]), steps=1, inner_lr=0.25)["w"]
        tensor([0.5000], grad_fn=<SubBackward0>)
    """
    return adapt_trajectory(
        params,
        loss_fn,
        data,
        steps=steps,
        inner_lr=inner_lr,
        first_order=first_order,
        adapt_keys=adapt_keys,
        step_arg=step_arg,
    ).params


def batched_adapt_trajectory(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    step_arg: bool = False,
    expand_shared: bool = True,
    chunk_size: int | None = None,
) -> AdaptResult:
    """Adapts shared ``params`` to every task of a meta-batch in one vmapped computation.

    Equals :func:`adapt_trajectory` run in a Python loop over tasks and stacked, for the adapted
    parameters and for the outer meta-gradients (``params`` and learned ``inner_lr`` receive the
    sum over tasks of what the loop would give). Implemented as ``torch.func.vmap`` over the task
    axis of ``data`` with ``torch.func.grad_and_value`` inside; ``loss_fn`` sees one task's data
    (``[shot, ...]``) and must return a 0-d tensor.

    Args:
        params: Shared meta-parameters ``{name: Tensor[*shape]}`` (no task axis).
        loss_fn: ``loss_fn(params, task_data) -> Tensor[]`` (``step`` third with ``step_arg``).
        data: Tensors shaped ``[task, shot, ...]`` (a Tensor or a tuple/list/dict of them), all
            with the same ``task`` size.
        steps: Number of inner steps, ``>= 0``.
        inner_lr: As in :func:`adapt_trajectory`, shared by all tasks.
        first_order: Detach the inner gradients (FOMAML).
        adapt_keys: Names of the parameters to adapt; ``None`` adapts all.
        step_arg: Pass the inner step index to ``loss_fn`` as a third argument.
        expand_shared: If True, parameters that are not adapted are returned as expanded views
            ``[task, *shape]`` like the adapted ones, so the result can go straight into
            ``torch.func.vmap(loss_fn)(result.params, query)``. If False they are returned as the
            shared tensors ``[*shape]`` (cheaper for ANIL's frozen body: vmap them with
            ``in_dims=None``).
        chunk_size: Passed to ``torch.func.vmap``: adapt this many tasks at a time (None: all at
            once). Smaller chunks bound memory and keep activations in cache on CPU; the result
            is the same.

    Returns:
        :class:`AdaptResult`: adapted tensors ``[task, *shape]``, ``losses: [task, steps]`` and a
        ``trajectory`` of ``steps + 1`` dicts shaped like ``params``.

    Raises:
        TypeError: If ``params``, ``steps``, ``inner_lr`` or ``data`` have the wrong type.
        ValueError: As :func:`adapt_trajectory`, or if the tensors in ``data`` disagree on the
            size of the task axis.
    """
    check_params(params)
    _check_steps(steps)
    keys = _resolve_adapt_keys(params, adapt_keys)
    lrs = _lr_schedule(inner_lr, steps, params, keys)
    tasks = _task_count(data)
    fixed = {k: v for k, v in params.items() if k not in keys}
    fast0 = {k: params[k] for k in keys}

    def loss_of_fast(fast: Params, task_data: Any, step: int) -> Tensor:
        return _call_loss(loss_fn, {**fixed, **fast}, task_data, step, step_arg)

    grad_and_loss = torch.func.grad_and_value(loss_of_fast)

    def one_task(task_data: Any) -> tuple[list[Params], Tensor]:
        def grad_fn(fast: Params, _: Params, step: int) -> tuple[dict[str, Tensor], Tensor]:
            return grad_and_loss(fast, task_data, step)

        result = _run_inner_loop(fast0, keys, lrs, first_order, grad_fn)
        return list(result.trajectory[1:]), result.losses

    with torch.enable_grad():
        batched_path, losses = torch.func.vmap(one_task, chunk_size=chunk_size)(data)

    def assemble(fast: Params) -> Params:
        shared = {k: v.expand(tasks, *v.shape) if expand_shared else v for k, v in fixed.items()}
        return {k: fast[k] if k in fast else shared[k] for k in params}

    trajectory = [assemble({k: v.expand(tasks, *v.shape) for k, v in fast0.items()})]
    trajectory += [assemble(fast) for fast in batched_path]
    return AdaptResult(trajectory[-1], losses, tuple(trajectory))


def batched_adapt(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    step_arg: bool = False,
    expand_shared: bool = True,
    chunk_size: int | None = None,
) -> Params:
    """Adapts shared ``params`` to a meta-batch; :func:`batched_adapt_trajectory`'s ``params``.

    Args:
        params: Shared meta-parameters ``{name: Tensor[*shape]}``.
        loss_fn: ``loss_fn(params, task_data) -> Tensor[]``.
        data: Tensors shaped ``[task, shot, ...]``.
        steps: Number of inner steps, ``>= 0``.
        inner_lr: Float, per-parameter dict, or per-step sequence, shared by all tasks.
        first_order: Detach the inner gradients (FOMAML).
        adapt_keys: Names of the parameters to adapt; ``None`` adapts all.
        step_arg: Pass the inner step index to ``loss_fn`` as a third argument.
        expand_shared: Return non-adapted parameters expanded to ``[task, *shape]``.
        chunk_size: Adapt this many tasks at a time inside ``vmap`` (None: all at once).

    Returns:
        Adapted parameters ``{name: Tensor[task, *shape]}``.
    """
    return batched_adapt_trajectory(
        params,
        loss_fn,
        data,
        steps=steps,
        inner_lr=inner_lr,
        first_order=first_order,
        adapt_keys=adapt_keys,
        step_arg=step_arg,
        expand_shared=expand_shared,
        chunk_size=chunk_size,
    ).params

"""The one inner loop of every gradient-based meta-learner, vmapped over the tasks of a meta-batch.

Parameters are ``dict[str, Tensor]``; a model runs through ``torch.func.functional_call``. Every
function here is pure: it returns new dicts and never mutates its arguments.

One inner SGD step (MAML, Finn et al. 2017, Eq. 1; Meta-SGD, Li et al. 2017, Eq. 3)::

    theta' = theta - alpha * grad_theta L_support(theta)

``alpha`` is a float (MAML), a dict of learned per-parameter tensors (Meta-SGD), or one such value
per inner step (MAML++ LSLR, Antoniou et al. 2019). ``adapt_keys`` restricts adaptation to a subset
of parameters (ANIL, Raghu et al. 2020). ``first_order=True`` drops second derivatives (FOMAML).
Other inner optimisers plug into the same loop as a pure init/update pair (:class:`InnerUpdate`,
shaped like torchopt's ``GradientTransformation``): :func:`sgd` (the default) and :func:`adam`
(Reptile's inner Adam, Nichol et al. 2018).

:func:`adapt` is one ``torch.func.vmap`` over the task axis of the data with
``torch.func.grad_and_value`` inside; the outer ``torch.autograd`` pass differentiates through it
(second order), or the inner gradients are detached (first order). :func:`adapt_and_evaluate` runs
the same loop and a query evaluation at the adapted parameters in that one ``vmap`` (an outer loss
without the trajectory).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import Tensor

__all__ = [
    "AdamState",
    "AdaptResult",
    "InnerLR",
    "InnerUpdate",
    "LearningRate",
    "LossFn",
    "Params",
    "adam",
    "adapt",
    "adapt_and_evaluate",
    "check_params",
    "sgd",
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
    """Outcome of an inner loop over a meta-batch.

    Attributes:
        params: Adapted parameters after all inner steps, each ``[task, *shape]``.
        losses: Inner (support) loss of each task at each step, evaluated before that step's
            update, still attached to the autograd graph: ``[task, steps]``.
        trajectory: ``steps + 1`` parameter dicts shaped like ``params``: ``trajectory[i]`` holds
            the parameters after ``i`` inner steps (``trajectory[0]`` is the initialisation,
            ``trajectory[-1]`` equals ``params``). Use it for MAML++'s multi-step loss and for
            adaptation curves.
    """

    params: Params
    losses: Tensor
    trajectory: tuple[Params, ...]


# ----------------------------------------------------------------------------------------------
# Inner optimisers: pure init/update pairs
# ----------------------------------------------------------------------------------------------


class InnerUpdate(NamedTuple):
    """A pure inner-loop optimiser, an init/update pair in the style of torchopt's.

    Attributes:
        init: ``init(params) -> state`` for the adapted parameters ``{name: Tensor[*shape]}``.
        update: ``update(params, grads, state, lr) -> (params, state)``: one step with this
            step's learning rate (see :data:`LearningRate`); returns new dicts. Both run under
            ``torch.func.vmap`` (one task's parameters).
    """

    init: Callable[[Params], Any]
    update: Callable[[Params, Mapping[str, Tensor], Any, LearningRate], tuple[Params, Any]]


def _sgd_update(
    params: Params, grads: Mapping[str, Tensor], state: Any, lr: LearningRate
) -> tuple[Params, Any]:
    new = dict(params)
    for k, g in grads.items():
        alpha = lr[k] if isinstance(lr, Mapping) else lr
        new[k] = params[k] - alpha * g
    return new, state


def sgd() -> InnerUpdate:
    """Plain gradient descent ``theta' = theta - lr * g`` (MAML, Meta-SGD, MAML++); no state."""
    return InnerUpdate(lambda params: None, _sgd_update)


class AdamState(NamedTuple):
    """Adam's moment estimates and step count.

    Attributes:
        exp_avg: First moments ``{name: Tensor[*shape]}``.
        exp_avg_sq: Second moments ``{name: Tensor[*shape]}``.
        step: Number of updates taken so far.
    """

    exp_avg: Params
    exp_avg_sq: Params
    step: int


def adam(betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> InnerUpdate:
    """Adam (Kingma and Ba 2015, Alg. 1) as a pure init/update pair on parameter dicts.

    One update computes what one ``torch.optim.Adam(params, lr, betas, eps).step()`` computes,
    ``eps`` added to ``sqrt(v_hat)`` (TensorFlow adds it to ``sqrt(v)`` before the bias
    correction)::

        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        theta = theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The state starts at zero moments and step 0 (:class:`AdamState`); the learning rate is a
    float (or one per step through :func:`adapt`'s ``lr``).

    Args:
        betas: ``(beta1, beta2)``; Reptile uses ``beta1 = 0``.
        eps: Added to the denominator for numerical stability.

    Returns:
        :class:`InnerUpdate`.
    """

    def init(params: Params) -> AdamState:
        zeros = {k: torch.zeros_like(v) for k, v in params.items()}
        return AdamState(zeros, dict(zeros), 0)

    def update(
        params: Params, grads: Mapping[str, Tensor], state: AdamState, lr: LearningRate
    ) -> tuple[Params, AdamState]:
        if grads.keys() != params.keys():
            raise ValueError(f"grads must have the keys {sorted(params)}, got {sorted(grads)}")
        beta1, beta2 = betas
        step = state.step + 1
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sqrt = (1.0 - beta2**step) ** 0.5
        new_params, exp_avg, exp_avg_sq = {}, {}, {}
        for k, g in grads.items():
            exp_avg[k] = torch.lerp(state.exp_avg[k], g, 1.0 - beta1)
            exp_avg_sq[k] = beta2 * state.exp_avg_sq[k] + (1.0 - beta2) * g * g
            denom = exp_avg_sq[k].sqrt() / bias_correction2_sqrt + eps
            step_size = (lr[k] if isinstance(lr, Mapping) else lr) / bias_correction1
            new_params[k] = params[k] - step_size * exp_avg[k] / denom
        return new_params, AdamState(exp_avg, exp_avg_sq, step)

    return InnerUpdate(init, update)


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


def _check_one_lr(
    lr: Any, shapes: Mapping[str, torch.Size], keys: Sequence[str], where: str
) -> None:
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
    unknown = [k for k in lr if k not in shapes]
    if unknown:
        raise ValueError(f"{where} names unknown parameters {unknown}")
    for k in keys:
        value = lr[k]
        if not isinstance(value, Tensor):
            raise TypeError(f"{where}[{k!r}] must be a Tensor, got {type(value).__name__}")
        shape = tuple(shapes[k])
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
    lr: Any, steps: int, shapes: Mapping[str, torch.Size], keys: Sequence[str]
) -> list[LearningRate]:
    """Validates ``lr`` and returns one learning rate per inner step."""
    per_step = isinstance(lr, Sequence) and not isinstance(lr, (str, bytes))
    if not per_step:
        _check_one_lr(lr, shapes, keys, "lr")
        return [lr] * steps
    if len(lr) != steps:
        raise ValueError(
            f"lr as a per-step sequence must have one entry per step: got {len(lr)} "
            f"entries for steps={steps}"
        )
    for i, one in enumerate(lr):
        _check_one_lr(one, shapes, keys, f"lr[{i}]")
    return list(lr)


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
# The inner loop
# ----------------------------------------------------------------------------------------------


def _call_loss(loss_fn: LossFn, params: Params, data: Any, step: int, step_arg: bool) -> Tensor:
    loss = loss_fn(params, data, step) if step_arg else loss_fn(params, data)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (0-d) Tensor per task, got {got}")
    return loss


def _check_task_axis(params: Params, tasks: int) -> None:
    for k, v in params.items():
        if v.dim() == 0 or v.shape[0] != tasks:
            raise ValueError(
                f"with per_task=True every parameter needs the task axis of data ({tasks}) first, "
                f"got {k!r} of shape {tuple(v.shape)}"
            )


def adapt(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    *,
    steps: int,
    lr: InnerLR,
    update: InnerUpdate | None = None,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    per_task: bool = False,
    step_arg: bool = False,
) -> AdaptResult:
    """Adapts ``params`` to every task of a meta-batch: ``steps`` inner steps, one ``vmap``.

    Equals a Python loop over tasks of ``steps`` plain ``torch.autograd`` steps, stacked, for the
    adapted parameters and for the outer meta-gradients (``params`` and learned ``lr`` receive the
    sum over tasks of what the loop would give). ``loss_fn`` sees one task's data (``[shot, ...]``)
    and must return a 0-d tensor. Second order (default): the outer ``torch.autograd`` pass
    differentiates through the inner gradients; ``first_order=True`` detaches them (FOMAML).
    Works inside ``torch.no_grad()`` and with parameters that do not require grad.

    Args:
        params: Meta-parameters ``{name: Tensor[*shape]}`` shared by the tasks, or with
            ``per_task`` already one per task ``{name: Tensor[task, *shape]}``; not modified.
        loss_fn: ``loss_fn(params, task_data) -> Tensor[]`` (``step`` third with ``step_arg``).
        data: Tensors shaped ``[task, ...]`` (a Tensor or a tuple/list/dict of them, e.g. ``(x,
            y)`` with ``x: [task, shot, ...]``), all with the same ``task`` size.
        steps: Number of inner steps, ``>= 0``.
        lr: A float or 0-d tensor; ``{name: Tensor}`` broadcastable to each adapted parameter
            (Meta-SGD, per-layer); or a sequence of ``steps`` such values (MAML++ LSLR). Shared by
            the tasks; tensors that require grad receive meta-gradients.
        update: The inner optimiser, :func:`sgd` (default) or e.g. :func:`adam`.
        first_order: Detach the inner gradients (no second derivatives).
        adapt_keys: Names of the parameters to adapt (ANIL: the head). ``None`` adapts all; the
            others pass through unchanged and stay differentiable for the outer loop.
        per_task: ``params`` carry the task axis (continuing an adaptation, e.g. MAML-RL's
            later inner steps).
        step_arg: Pass the inner step index ``0..steps-1`` to ``loss_fn`` as a third argument
            (MAML++ per-step batch norm; a different batch per step).

    Returns:
        :class:`AdaptResult`: adapted tensors ``[task, *shape]`` (non-adapted parameters as
        expanded views), ``losses: [task, steps]`` and a ``trajectory`` of ``steps + 1`` dicts.

    Raises:
        TypeError: If ``params``, ``steps``, ``lr``, ``adapt_keys`` or ``data`` have the wrong
            type.
        ValueError: If ``steps < 0``, ``adapt_keys`` or ``lr`` name unknown parameters, ``lr``
            misses an adapted parameter or does not broadcast, the tensors in ``data`` (or
            per-task ``params``) disagree on the task axis, or ``loss_fn`` returns a non-scalar.

    Example:
        >>> w = {"w": torch.tensor([1.0])}
        >>> loss = lambda p, x: (p["w"] * x).pow(2).sum()
        >>> adapt(w, loss, torch.tensor([[1.0]]), steps=1, lr=0.25).params["w"]
        tensor([[0.5000]])
    """
    loop = _InnerLoop(
        params, loss_fn, data, steps, lr, update, first_order, adapt_keys, step_arg, per_task
    )
    tasks = loop.tasks
    in_dims = (0 if per_task else None, 0 if per_task else None, 0)
    with torch.enable_grad():
        batched_path, step_losses = torch.func.vmap(loop.one_task, in_dims=in_dims)(
            loop.fast0, loop.fixed, data
        )
    losses = loop.stack_losses(step_losses)

    def assemble(fast: Params) -> Params:
        return {k: fast[k] if k in fast else _expand(params[k], tasks, per_task) for k in params}

    start = {k: _expand(v, tasks, per_task) for k, v in loop.fast0.items()}
    trajectory = (assemble(start), *(assemble(fast) for fast in batched_path))
    return AdaptResult(trajectory[-1], losses, trajectory)


def adapt_and_evaluate(
    params: Params,
    loss_fn: LossFn,
    data: Any,
    eval_fn: Callable[[Params, Any], Any],
    eval_data: Any,
    *,
    steps: int,
    lr: InnerLR,
    update: InnerUpdate | None = None,
    first_order: bool = False,
    adapt_keys: Sequence[str] | None = None,
    step_arg: bool = False,
) -> tuple[Tensor, Any]:
    """:func:`adapt`, then ``eval_fn`` at each task's adapted parameters, in the same ``vmap``.

    The outer loss of MAML and its relatives in one batched pass: the inner loop and the query
    evaluation of a task run in one vmapped function, so the adapted parameters are neither
    stacked into a trajectory nor unbatched and rebatched for a second ``vmap``. The values and
    (outer) gradients equal those of :func:`adapt` followed by ``vmap(eval_fn)`` on its
    ``params`` (to the last bit for adapted parameters; parameters outside ``adapt_keys`` reach
    ``eval_fn`` shared by the tasks rather than expanded per task, which may change the last
    bits of what is computed from them).

    Args:
        params: Meta-parameters ``{name: Tensor[*shape]}`` shared by the tasks; not modified.
        loss_fn: As for :func:`adapt`.
        data: Inner-loop data, tensors ``[task, ...]``, as for :func:`adapt`.
        eval_fn: ``eval_fn(adapted, task_eval_data)``: one task's outputs at its adapted
            parameters (every parameter, adapted or not), a tensor or a tuple/list/dict of them.
        eval_data: Tensors ``[task, ...]`` for ``eval_fn`` (e.g. the query set), with the task
            axis of ``data``.
        steps: Number of inner steps, ``>= 0``.
        lr: As for :func:`adapt`.
        update: As for :func:`adapt`.
        first_order: As for :func:`adapt`.
        adapt_keys: As for :func:`adapt`.
        step_arg: As for :func:`adapt`.

    Returns:
        ``(losses, outputs)``: the inner losses ``[task, steps]`` as in :class:`AdaptResult`, and
        ``eval_fn``'s outputs stacked over the tasks (``[task, ...]`` each).

    Raises:
        TypeError: As for :func:`adapt`, and if ``eval_data`` holds anything but tensors.
        ValueError: As for :func:`adapt`, and if ``eval_data``'s task axis differs from
            ``data``'s.
    """
    loop = _InnerLoop(
        params, loss_fn, data, steps, lr, update, first_order, adapt_keys, step_arg, False
    )
    eval_tasks = _task_count(eval_data)
    if eval_tasks != loop.tasks:
        raise ValueError(
            f"eval_data has {eval_tasks} tasks on its leading axis but data has {loop.tasks}"
        )

    def one_task(
        fast: Params, fixed: Params, task_data: Any, task_eval: Any
    ) -> tuple[Any, tuple[Tensor, ...]]:
        path, losses = loop.one_task(fast, fixed, task_data)
        adapted = {**fixed, **path[-1]} if path else {**fixed, **fast}
        return eval_fn(adapted, task_eval), losses

    with torch.enable_grad():
        outputs, step_losses = torch.func.vmap(one_task, in_dims=(None, None, 0, 0))(
            loop.fast0, loop.fixed, data, eval_data
        )
    return loop.stack_losses(step_losses), outputs


class _InnerLoop:
    """The validated arguments of an inner loop and its per-task body (run under ``vmap``)."""

    def __init__(
        self,
        params: Params,
        loss_fn: LossFn,
        data: Any,
        steps: int,
        lr: InnerLR,
        update: InnerUpdate | None,
        first_order: bool,
        adapt_keys: Sequence[str] | None,
        step_arg: bool,
        per_task: bool,
    ) -> None:
        check_params(params)
        _check_steps(steps)
        keys = _resolve_adapt_keys(params, adapt_keys)
        self.tasks = _task_count(data)
        if per_task:
            _check_task_axis(params, self.tasks)
        shapes = {k: v.shape[1:] if per_task else v.shape for k, v in params.items()}
        self.lrs = _lr_schedule(lr, steps, shapes, keys)
        self.update = sgd() if update is None else update
        self.fixed = {k: v for k, v in params.items() if k not in keys}
        self.fast0 = {k: params[k] for k in keys}
        self.loss_fn, self.first_order, self.step_arg = loss_fn, first_order, step_arg
        self.grad_and_loss = torch.func.grad_and_value(self._loss_of_fast)
        self.any_param = next(iter(params.values()))

    def _loss_of_fast(self, fast: Params, task_fixed: Params, task_data: Any, step: int) -> Tensor:
        return _call_loss(self.loss_fn, {**task_fixed, **fast}, task_data, step, self.step_arg)

    def one_task(
        self, fast: Params, task_fixed: Params, task_data: Any
    ) -> tuple[list[Params], tuple[Tensor, ...]]:
        """One task's inner steps: the fast weights after each step, and each step's loss.

        The losses leave the ``vmap`` one tensor ``[task]`` per step and are stacked outside it
        (:meth:`stack_losses`): a stack inside would be one more batched op per task function.
        """
        state, path, losses = self.update.init(fast), [], []
        for step, step_lr in enumerate(self.lrs):
            grads, loss = self.grad_and_loss(fast, task_fixed, task_data, step)
            if self.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            fast, state = self.update.update(fast, grads, state, step_lr)
            path.append(fast)
            losses.append(loss)
        return path, tuple(losses)

    def stack_losses(self, step_losses: tuple[Tensor, ...]) -> Tensor:
        """The per-step losses ``[task]`` of :meth:`one_task`, vmapped, as ``[task, steps]``."""
        if not step_losses:
            return self.any_param.new_zeros(self.tasks, 0)
        return torch.stack(step_losses, dim=1)


def _expand(value: Tensor, tasks: int, per_task: bool) -> Tensor:
    return value if per_task else value.expand(tasks, *value.shape)

"""PPO-clip losses (Schulman et al. 2017) and ProMP's outer objective (Rothfuss et al. 2019).

All losses are *to be minimised* and reduce with a masked mean over valid steps. Two reductions:

- ``per_task=False``: one mean over every valid entry of the batch (cleanrl, stable-baselines3;
  the natural choice for RL²-PPO minibatches).
- ``per_task=True``: the masked mean of each task (leading axis) over its other axes, then the
  plain mean over tasks, so every task weighs the same whatever its number of valid steps (ProMP's
  ``meta_objective``, pytorch-maml-rl's per-task surrogate). Both agree when all tasks have the
  same number of valid steps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from metarl.rl.returns import _check_float_tensor, _check_min_dim, _check_shape, masked_mean

__all__ = [
    "PPOLoss",
    "ProMPLoss",
    "mean_entropy",
    "ppo_clip_loss",
    "promp_loss",
    "value_loss",
]


class PPOLoss(NamedTuple):
    """Clipped surrogate loss and its diagnostics.

    Attributes:
        loss: ``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]``, 0-d, differentiable.
        approx_kl: Estimate of ``KL(pi_old || pi_new)``, ``E[(r - 1) - log r]`` (Schulman's
            low-variance unbiased estimator, as in cleanrl), 0-d, detached.
        clip_fraction: Fraction of valid steps with ``|r - 1| > eps``, 0-d, detached.
    """

    loss: Tensor
    approx_kl: Tensor
    clip_fraction: Tensor


class ProMPLoss(NamedTuple):
    """ProMP's outer loss and its parts.

    Attributes:
        loss: ``clip.loss + inner_kl_penalty``, 0-d, differentiable.
        clip: The clipped surrogate of the adapted policy, with its diagnostics.
        inner_kl_penalty: ``mean(inner_kl_coeff * inner_kl)``, 0-d, differentiable.
    """

    loss: Tensor
    clip: PPOLoss
    inner_kl_penalty: Tensor


def _reduce(x: Tensor, mask: Tensor, per_task: bool) -> Tensor:
    if per_task:
        return masked_mean(x, mask, tuple(range(1, x.dim()))).mean()
    return masked_mean(x, mask)


def _check_samples(name: str, value: Tensor, per_task: bool) -> tuple[int, ...]:
    if per_task:
        _check_min_dim(name, value, 2, "[task, ...] (per_task=True)")
    else:
        _check_min_dim(name, value, 1, "[...]")
    _check_float_tensor(name, value)
    return tuple(value.shape)


def _check_clip_eps(clip_eps: float) -> None:
    if isinstance(clip_eps, bool) or not isinstance(clip_eps, (int, float)) or not clip_eps > 0:
        raise ValueError(f"clip_eps must be a positive float, got {clip_eps!r}")


def ppo_clip_loss(
    logp_new: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    *,
    per_task: bool = False,
) -> PPOLoss:
    """PPO's clipped surrogate loss (Schulman et al. 2017, Eq. 7), negated for minimisation.

    ``r = exp(logp_new - logp_old)`` and the loss is ``-mean(min(r A, clip(r, 1-eps, 1+eps) A))``
    over valid steps. ``logp_old`` and ``advantages`` are treated as constants (detached).

    Args:
        logp_new: ``log pi_theta(a_t | s_t)``, shape ``[...]`` (e.g. ``[task, episode, time]``).
        logp_old: ``log pi_old(a_t | s_t)`` from collection, shape of ``logp_new``.
        advantages: ``A_t``, shape of ``logp_new``.
        mask: Validity, shape of ``logp_new``.
        clip_eps: Clip range ``eps`` > 0 (0.2 in PPO, 0.3 in ProMP).
        per_task: Average per task, then over tasks (see the module docstring).

    Returns:
        :class:`PPOLoss`.

    Raises:
        ValueError: If a shape differs from ``logp_new``'s or ``clip_eps`` is not positive.
    """
    shape = _check_samples("logp_new", logp_new, per_task)
    _check_shape("logp_old", logp_old, shape, "logp_new.shape")
    _check_shape("advantages", advantages, shape, "logp_new.shape")
    _check_shape("mask", mask, shape, "logp_new.shape")
    _check_clip_eps(clip_eps)
    log_ratio = logp_new - logp_old.detach()
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    with torch.no_grad():
        approx_kl = _reduce((ratio - 1.0) - log_ratio, mask, per_task)
        clipped = ((ratio - 1.0).abs() > clip_eps).to(ratio.dtype)
        clip_fraction = _reduce(clipped, mask, per_task)
    return PPOLoss(
        loss=-_reduce(surrogate, mask, per_task),
        approx_kl=approx_kl,
        clip_fraction=clip_fraction,
    )


def value_loss(
    value: Tensor,
    returns: Tensor,
    mask: Tensor,
    old_value: Tensor | None = None,
    clip_eps: float | None = None,
    *,
    per_task: bool = False,
) -> Tensor:
    """Squared-error value loss ``0.5 * mean((value - returns)**2)``, optionally clipped.

    With ``old_value`` and ``clip_eps`` (PPO2's value clipping, as in cleanrl's ``clip_vloss``):
    ``0.5 * mean(max((v - R)**2, (v_old + clip(v - v_old, -eps, eps) - R)**2))``.

    Args:
        value: Predicted ``value_t``, shape ``[...]``.
        returns: Targets (e.g. ``GAEResult.returns``), shape of ``value``; treated as constants.
        mask: Validity, shape of ``value``.
        old_value: Values at collection time, shape of ``value``; give with ``clip_eps``.
        clip_eps: Clip range for the value change; give with ``old_value``.
        per_task: Average per task, then over tasks.

    Returns:
        0-d loss.

    Raises:
        ValueError: On shape mismatches, or if only one of ``old_value``/``clip_eps`` is given.
    """
    shape = _check_samples("value", value, per_task)
    _check_shape("returns", returns, shape, "value.shape")
    _check_shape("mask", mask, shape, "value.shape")
    target = returns.detach()
    error = (value - target) ** 2
    if (old_value is None) != (clip_eps is None):
        raise ValueError("old_value and clip_eps must be given together (value clipping)")
    if old_value is not None and clip_eps is not None:
        _check_shape("old_value", old_value, shape, "value.shape")
        _check_clip_eps(clip_eps)
        old = old_value.detach()
        clipped = old + (value - old).clamp(-clip_eps, clip_eps)
        error = torch.maximum(error, (clipped - target) ** 2)
    return 0.5 * _reduce(error, mask, per_task)


def mean_entropy(entropy: Tensor, mask: Tensor, *, per_task: bool = False) -> Tensor:
    """Masked mean of per-step policy entropies (subtract ``coef * mean_entropy`` from a loss).

    Args:
        entropy: Entropy of ``pi(. | s_t)`` per step, shape ``[...]`` (see
            :mod:`metarl.rl.distributions`).
        mask: Validity, shape of ``entropy``.
        per_task: Average per task, then over tasks.

    Returns:
        0-d mean entropy, differentiable.

    Raises:
        ValueError: If ``mask`` does not match ``entropy``.
    """
    shape = _check_samples("entropy", entropy, per_task)
    _check_shape("mask", mask, shape, "entropy.shape")
    return _reduce(entropy, mask, per_task)


def promp_loss(
    logp_new: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    inner_kl: Tensor,
    *,
    clip_eps: float = 0.3,
    inner_kl_coeff: float | Tensor = 5e-4,
    per_task: bool = True,
) -> ProMPLoss:
    """ProMP's outer loss: the clipped surrogate plus a fixed inner-KL penalty.

    ``L = ppo_clip_loss(...) + mean(inner_kl_coeff * inner_kl)`` (Rothfuss et al. 2019, Eq. 13
    with a fixed penalty, arXiv 1810.06784 App. D: ``eps = 0.3``, ``eta = 5e-4``). The
    log-probabilities are
    those of the *adapted* policy on post-adaptation samples; ``inner_kl`` is the mean KL between
    the pre-update policy at the old and at the current meta-parameters on pre-adaptation samples,
    one value per inner step. ProMP's code uses ``KL(pi_old || pi_theta)``; computing it is the
    caller's job (see :mod:`metarl.rl.distributions`).

    Args:
        logp_new: Adapted-policy log-probabilities, ``[task, ...]``.
        logp_old: Log-probabilities at collection time, shape of ``logp_new``.
        advantages: Advantages, shape of ``logp_new``.
        mask: Validity, shape of ``logp_new``.
        inner_kl: Mean inner KL, 0-d or ``[inner_steps]``, differentiable.
        clip_eps: Clip range of the outer objective.
        inner_kl_coeff: Penalty ``eta``, a float or a tensor broadcastable to ``inner_kl``
            (ProMP keeps one per inner step).
        per_task: Average per task, then over tasks (ProMP's reduction).

    Returns:
        :class:`ProMPLoss`.

    Raises:
        ValueError: On shape mismatches, ``inner_kl`` with more than one axis, or a non-positive
            ``clip_eps``.
    """
    if not isinstance(inner_kl, Tensor) or inner_kl.dim() > 1:
        got = list(inner_kl.shape) if isinstance(inner_kl, Tensor) else type(inner_kl).__name__
        raise ValueError(f"inner_kl must be 0-d or [inner_steps], got {got}")
    clip = ppo_clip_loss(logp_new, logp_old, advantages, mask, clip_eps, per_task=per_task)
    penalty = (inner_kl_coeff * inner_kl).mean()
    return ProMPLoss(loss=clip.loss + penalty, clip=clip, inner_kl_penalty=penalty)

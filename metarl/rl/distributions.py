"""Closed-form log-probabilities, KL divergences and entropies of policy distributions.

Pure functions on tensors rather than ``torch.distributions`` objects, so they compose with
``torch.func.vmap`` over per-task parameters and with double backward (TRPO's Fisher-vector
products). The action axis is the last one; every function reduces over it.

- Diagonal Gaussian, parameterised by ``mean`` ``[..., act_dim]`` and ``log_std`` broadcastable to
  it (a state-independent ``[act_dim]`` vector, as in MAML's policy, or per-state).
- Categorical, parameterised by unnormalised ``logits`` ``[..., n]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metarl.rl.returns import _check_float_tensor, _check_shape, _check_tensor

__all__ = [
    "categorical_entropy",
    "categorical_kl",
    "categorical_log_prob",
    "diag_gaussian_entropy",
    "diag_gaussian_kl",
    "diag_gaussian_log_prob",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _check_broadcasts_to(name: str, value: object, shape: tuple[int, ...], what: str) -> None:
    _check_tensor(name, value)
    assert isinstance(value, Tensor)
    _check_float_tensor(name, value)
    try:
        ok = value.dim() >= 1 and tuple(torch.broadcast_shapes(value.shape, shape)) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must broadcast to {what} = {list(shape)} (at least the last axis), got "
            f"{list(value.shape)}"
        )


def _check_mean(name: str, mean: object) -> tuple[int, ...]:
    _check_tensor(name, mean)
    assert isinstance(mean, Tensor)
    _check_float_tensor(name, mean)
    if mean.dim() < 1:
        raise ValueError(f"{name} must have shape [..., act_dim], got {list(mean.shape)}")
    return tuple(mean.shape)


def diag_gaussian_log_prob(mean: Tensor, log_std: Tensor, action: Tensor) -> Tensor:
    """``log N(action; mean, diag(exp(log_std)**2))``, summed over the action axis.

    Args:
        mean: Means, shape ``[..., act_dim]``.
        log_std: Log standard deviations, broadcastable to ``mean`` (e.g. ``[act_dim]``).
        action: Actions, shape ``[..., act_dim]`` (same as ``mean``).

    Returns:
        Log-densities, shape ``[...]``.

    Raises:
        ValueError: If the shapes do not match.
    """
    shape = _check_mean("mean", mean)
    _check_broadcasts_to("log_std", log_std, shape, "mean.shape")
    _check_shape("action", action, shape, "mean.shape [..., act_dim]")
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * _LOG_2PI).sum(dim=-1)


def diag_gaussian_kl(mean0: Tensor, log_std0: Tensor, mean1: Tensor, log_std1: Tensor) -> Tensor:
    """``KL(N0 || N1)`` between diagonal Gaussians, summed over the action axis.

    Per dimension: ``log(s1/s0) + (s0**2 + (m0 - m1)**2) / (2 s1**2) - 1/2``.

    Args:
        mean0: Means of the first distribution, shape ``[..., act_dim]``.
        log_std0: Its log standard deviations, broadcastable to ``mean0``.
        mean1: Means of the second distribution, shape ``[..., act_dim]`` (same as ``mean0``).
        log_std1: Its log standard deviations, broadcastable to ``mean0``.

    Returns:
        KL divergences, shape ``[...]``.

    Raises:
        ValueError: If the shapes do not match.
    """
    shape = _check_mean("mean0", mean0)
    _check_broadcasts_to("log_std0", log_std0, shape, "mean0.shape")
    _check_shape("mean1", mean1, shape, "mean0.shape [..., act_dim]")
    _check_broadcasts_to("log_std1", log_std1, shape, "mean0.shape")
    var_ratio = torch.exp(2.0 * (log_std0 - log_std1))
    mahalanobis = ((mean0 - mean1) * torch.exp(-log_std1)) ** 2
    per_dim = (log_std1 - log_std0) + 0.5 * (var_ratio + mahalanobis) - 0.5
    return torch.broadcast_to(per_dim, shape).sum(dim=-1)


def diag_gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian, ``sum(log_std + (1 + log(2 pi)) / 2)``.

    Args:
        log_std: Log standard deviations, shape ``[..., act_dim]`` (the mean does not matter).

    Returns:
        Entropies, shape ``[...]`` (a 0-d tensor for a state-independent ``[act_dim]``).

    Raises:
        ValueError: If ``log_std`` is 0-d.
    """
    _check_mean("log_std", log_std)
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(dim=-1)


def _check_logits(name: str, logits: object) -> tuple[int, ...]:
    shape = _check_mean(name, logits)
    if shape[-1] < 1:
        raise ValueError(f"{name} must have at least one category, got shape {list(shape)}")
    return shape


def categorical_log_prob(logits: Tensor, action: Tensor) -> Tensor:
    """``log softmax(logits)[action]``.

    Args:
        logits: Unnormalised log-probabilities, shape ``[..., n]``.
        action: Integer actions in ``[0, n)``, shape ``[...]``.

    Returns:
        Log-probabilities, shape ``[...]``.

    Raises:
        ValueError: If ``action`` does not have shape ``logits.shape[:-1]``.
        TypeError: If ``action`` is not an integer tensor.
    """
    shape = _check_logits("logits", logits)
    _check_shape("action", action, shape[:-1], "logits.shape[:-1] [...]")
    if action.is_floating_point() or action.is_complex() or action.dtype == torch.bool:
        raise TypeError(f"action must be an integer tensor, got dtype {action.dtype}")
    log_p = torch.log_softmax(logits, dim=-1)
    return log_p.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)


def _xlogy_ratio(log_p0: Tensor, log_p1: Tensor) -> Tensor:
    """``p0 * (log p0 - log p1)`` with the convention ``0 * anything = 0``."""
    p0 = log_p0.exp()
    term = p0 * (log_p0 - log_p1)
    return torch.where(p0 > 0, term, torch.zeros((), dtype=term.dtype, device=term.device))


def categorical_kl(logits0: Tensor, logits1: Tensor) -> Tensor:
    """``KL(Cat(softmax(logits0)) || Cat(softmax(logits1)))``.

    Args:
        logits0: Logits of the first distribution, shape ``[..., n]``.
        logits1: Logits of the second distribution, shape ``[..., n]``.

    Returns:
        KL divergences, shape ``[...]``.

    Raises:
        ValueError: If the shapes differ.
    """
    shape = _check_logits("logits0", logits0)
    _check_shape("logits1", logits1, shape, "logits0.shape [..., n]")
    _check_float_tensor("logits1", logits1)
    log_p0 = torch.log_softmax(logits0, dim=-1)
    log_p1 = torch.log_softmax(logits1, dim=-1)
    return _xlogy_ratio(log_p0, log_p1).sum(dim=-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """Entropy ``-sum(p log p)`` of ``Cat(softmax(logits))``.

    Args:
        logits: Unnormalised log-probabilities, shape ``[..., n]``.

    Returns:
        Entropies, shape ``[...]``.

    Raises:
        ValueError: If ``logits`` is 0-d.
    """
    _check_logits("logits", logits)
    log_p = torch.log_softmax(logits, dim=-1)
    return -_xlogy_ratio(log_p, torch.zeros_like(log_p)).sum(dim=-1)

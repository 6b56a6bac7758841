"""Discounted returns, generalised advantage estimation and advantage normalisation.

Every function works on a whole batch at once: the time axis is the last one and any number of
leading axes are carried along, so the same code serves MAML's fixed-horizon episode batches
``[task, episode, time]`` and RL²'s trials ``[task, time]``.

Validity and boundaries
-----------------------
``mask[..., t]`` is nonzero while step ``t`` is a real transition and zero for padding after the
episode (or trial) ended. The recursion of a row ends at its last valid step; a step whose
successor is padding does not bootstrap (a terminal state), except at the last time index, where
``last_value`` (the value of the state after the final step) is used when given. So:

- **MAML, fixed horizon** ``[task, episode, time]``: one episode per row. An episode cut by the
  horizon bootstraps from ``last_value``; one that terminated early is followed by padding and gets
  no bootstrap. An episode that terminated exactly at the last index must not bootstrap: pass
  ``done`` (or a zero ``last_value`` for that row). rllab and pytorch-maml-rl never bootstrap
  at the horizon; leave ``last_value`` as None to match them.
- **RL² trials** ``[task, time]``: one trial per row, its episodes concatenated along time. Do NOT
  pass the episode-end flags as ``done``: within a trial the return and the value bootstrap run
  across episode boundaries (the last step of episode 1 bootstraps from the value of the first
  state of episode 2), because the RL² objective is the discounted return of the whole trial
  (Duan et al. 2016, §2.2). Rows never exchange information, so nothing crosses a trial boundary.
  If one row holds several trials back to back, pass ``done`` = the trial-end flags.

``done[..., t]`` nonzero therefore means "the sequence that bootstraps ends after step ``t``": no
bootstrap from ``t + 1`` and the GAE recursion is cut there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "GAEResult",
    "discounted_returns",
    "gae",
    "masked_mean",
    "normalize_advantages",
]


class GAEResult(NamedTuple):
    """Advantages and value targets from :func:`gae`.

    Attributes:
        advantages: ``A_t``, shape ``[..., time]``, zero on padding.
        returns: ``A_t + value_t``, the lambda-return used as a value target, shape
            ``[..., time]``, zero on padding.
    """

    advantages: Tensor
    returns: Tensor


# ----------------------------------------------------------------------------------------------
# Validation (shared by the other modules of metarl.rl)
# ----------------------------------------------------------------------------------------------


def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(value).__name__}")


def _check_shape(name: str, value: object, shape: tuple[int, ...], what: str) -> None:
    """Raises unless ``value`` is a Tensor of exactly ``shape`` (``what`` names the layout)."""
    _check_tensor(name, value)
    assert isinstance(value, Tensor)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {what} = {list(shape)}, got {list(value.shape)}")


def _check_min_dim(name: str, value: object, ndim: int, what: str) -> None:
    _check_tensor(name, value)
    assert isinstance(value, Tensor)
    if value.dim() < ndim:
        raise ValueError(
            f"{name} must have at least {ndim} dimension(s) {what}, got shape {list(value.shape)}"
        )


def _check_float_tensor(name: str, value: Tensor) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point Tensor, got dtype {value.dtype}")


def _check_unit_interval(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _valid(mask: Tensor) -> Tensor:
    """Boolean validity from a bool or 0/1 float mask."""
    return mask if mask.dtype == torch.bool else mask != 0


# ----------------------------------------------------------------------------------------------
# Masked reductions
# ----------------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is nonzero.

    Padding never contributes, even when it holds ``inf`` or ``nan`` (it is selected away, not
    multiplied by zero). A slice with no valid entry has mean 0.

    Args:
        x: Values, any shape ``[...]``.
        mask: Validity, same shape as ``x`` (bool, or float with 0 = padding).
        dim: Axes to reduce; None reduces all of them.

    Returns:
        ``x``'s shape without the reduced axes (a 0-d tensor when ``dim`` is None).

    Raises:
        ValueError: If ``mask`` does not have the shape of ``x``.
    """
    _check_tensor("x", x)
    _check_shape("mask", mask, tuple(x.shape), "x.shape")
    valid = _valid(mask)
    total = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = valid.to(x.dtype)
    if dim is None:
        return total.sum() / count.sum().clamp_min(1.0)
    return total.sum(dim) / count.sum(dim).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------
# Returns and GAE
# ----------------------------------------------------------------------------------------------


def _reverse_scan(delta: Tensor, decay: Tensor, tail: Tensor) -> Tensor:
    """``out_t = delta_t + decay_t * out_{t+1}`` over the last axis, with ``out_T = tail``.

    A Python loop over time only (vectorised over the leading axes). A closed form with
    cumulative products would divide by products of decays that can reach 0 (terminal steps,
    padding, gamma * lam = 0), so the loop is the numerically safe choice; time is at most a few
    hundred steps.
    """
    carry = tail
    out = []
    for t in range(delta.shape[-1] - 1, -1, -1):
        carry = delta[..., t] + decay[..., t] * carry
        out.append(carry)
    return torch.stack(out[::-1], dim=-1)


def _zero_padding(x: Tensor, valid: Tensor) -> Tensor:
    """``x`` with padding set to 0 (selected away, so padding holding inf/nan is harmless)."""
    return torch.where(valid != 0, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _boundary_inputs(
    reward: Tensor,
    mask: Tensor,
    last_value: Tensor | None,
    done: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Checks ``mask``/``last_value``/``done``; returns ``(valid, cont, tail)``.

    ``valid`` is the mask as 0/1 floats, ``cont_t = valid_t * (1 - done_t)`` says whether step
    ``t`` continues into ``t + 1`` (or into ``last_value``), and ``tail`` is the bootstrap value
    after the last index (0 where the row does not continue there).
    """
    shape = tuple(reward.shape)
    if shape[-1] == 0:
        raise ValueError(f"reward must have at least one time step, got shape {list(shape)}")
    _check_shape("mask", mask, shape, "reward.shape [..., time]")
    valid = _valid(mask).to(reward.dtype)
    cont = valid
    if done is not None:
        _check_shape("done", done, shape, "reward.shape [..., time]")
        cont = valid * (1.0 - _valid(done).to(reward.dtype))
    if last_value is None:
        tail = torch.zeros(shape[:-1], dtype=reward.dtype, device=reward.device)
    else:
        _check_shape("last_value", last_value, shape[:-1], "reward.shape[:-1] [...]")
        _check_float_tensor("last_value", last_value)
        # Only rows still running at the last index bootstrap; others may hold anything.
        tail = _zero_padding(last_value.to(reward.dtype), cont[..., -1])
    return valid, cont, tail


def discounted_returns(
    reward: Tensor,
    mask: Tensor,
    gamma: float,
    last_value: Tensor | None = None,
    done: Tensor | None = None,
) -> Tensor:
    """Reward-to-go ``G_t = reward_t + gamma * G_{t+1}`` of every step, zero on padding.

    The recursion stops at the last valid step of a row (see the module docstring); at the last
    time index ``G_T = last_value`` (bootstrapping a truncated episode), otherwise 0. ``done_t``
    nonzero cuts the recursion after step ``t``.

    Args:
        reward: ``reward_t``, shape ``[..., time]`` (``[task, episode, time]`` for MAML batches,
            ``[task, time]`` for RL² trials).
        mask: Validity, shape ``[..., time]``; nonzero while the episode runs, 0 on padding.
        gamma: Discount factor in [0, 1].
        last_value: Value of the state after the last time index, shape ``[...]``; None means 0
            (no bootstrap).
        done: ``done_t`` flags, shape ``[..., time]``; nonzero ends the bootstrapped sequence
            after step ``t`` (termination, or an RL² trial end). None means no such ends.

    Returns:
        ``G_t``, shape ``[..., time]``, dtype of ``reward``.

    Raises:
        ValueError: If a shape disagrees with ``reward``'s or ``gamma`` is outside [0, 1].
        TypeError: If ``reward`` is not a floating-point tensor.
    """
    _check_min_dim("reward", reward, 1, "[..., time]")
    _check_float_tensor("reward", reward)
    _check_unit_interval("gamma", gamma)
    valid, cont, tail = _boundary_inputs(reward, mask, last_value, done)
    # G_t = m_t * (r_t + gamma * (1 - done_t) * G_{t+1}); G_{t+1} is 0 on padding.
    return _reverse_scan(_zero_padding(reward, valid), gamma * cont, tail)


def gae(
    reward: Tensor,
    value: Tensor,
    mask: Tensor,
    gamma: float,
    lam: float,
    last_value: Tensor | None = None,
    done: Tensor | None = None,
) -> GAEResult:
    """Generalised advantage estimation (Schulman et al. 2016, Eq. 16) for a whole batch.

    With ``value_tp1`` the value of the next state (``value_{t+1}``, zero on padding, and
    ``last_value`` after the last time index)::

        delta_t = reward_t + gamma * (1 - done_t) * value_tp1 - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    on valid steps, and ``A_t = 0`` on padding. ``lam = 1`` gives ``A_t = G_t - value_t`` (the
    setting of MAML-TRPO and ProMP, cbfinn/maml_rl and jonasrothfuss/ProMP); ``lam = 0`` gives
    the one-step TD error.
    Loops over time in reverse, vectorised over the leading axes. See the module docstring for
    how MAML episode batches and RL² trials are expressed.

    Args:
        reward: ``reward_t``, shape ``[..., time]``.
        value: ``value_t`` (the baseline), shape ``[..., time]``; values on padding are ignored.
        mask: Validity, shape ``[..., time]``; nonzero while the episode/trial runs.
        gamma: Discount factor in [0, 1].
        lam: GAE lambda in [0, 1].
        last_value: Value of the state after the last time index, shape ``[...]``, used only for
            rows still valid at that index (truncation); None means 0 (no bootstrap).
        done: ``done_t`` flags, shape ``[..., time]``: nonzero stops bootstrapping and the
            recursion after step ``t``. For MAML: terminations. For RL²: trial ends only, never
            episode ends. None means no such ends.

    Returns:
        :class:`GAEResult` with ``advantages`` and ``returns = advantages + value``, both
        ``[..., time]`` and zero on padding.

    Raises:
        ValueError: If a shape disagrees with ``reward``'s or ``gamma``/``lam`` leave [0, 1].
        TypeError: If ``reward`` or ``value`` is not a floating-point tensor.
    """
    _check_min_dim("reward", reward, 1, "[..., time]")
    _check_float_tensor("reward", reward)
    _check_shape("value", value, tuple(reward.shape), "reward.shape [..., time]")
    _check_float_tensor("value", value)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    valid, cont, tail = _boundary_inputs(reward, mask, last_value, done)
    value_t = _zero_padding(value.to(reward.dtype), valid)
    value_tp1 = torch.cat([value_t[..., 1:], tail.unsqueeze(-1)], dim=-1)
    delta_t = _zero_padding(reward + gamma * cont * value_tp1 - value_t, valid)
    advantages = _reverse_scan(delta_t, (gamma * lam) * cont, torch.zeros_like(tail))
    return GAEResult(advantages=advantages, returns=advantages + value_t)


def normalize_advantages(
    adv: Tensor, mask: Tensor, per_task: bool = True, eps: float = 1e-8
) -> Tensor:
    """Centres advantages and scales them to unit standard deviation over the valid steps.

    ``(adv - mean) / (std + eps)`` with the masked mean and the masked population standard
    deviation; padding is returned as 0. With ``per_task`` the statistics are taken per task over
    all other axes (each task's episodes and time steps), as pytorch-maml-rl and ProMP normalise
    each task's batch separately; otherwise over the whole batch.

    Args:
        adv: Advantages, shape ``[task, ...]`` (e.g. ``[task, episode, time]``).
        mask: Validity, same shape as ``adv``.
        per_task: Normalise each task (leading axis) separately.
        eps: Added to the standard deviation, guarding against division by zero.

    Returns:
        Normalised advantages, shape of ``adv``, zero on padding.

    Raises:
        ValueError: If ``mask`` does not match ``adv``, or ``per_task`` and ``adv`` has fewer
            than 2 axes.
        TypeError: If ``adv`` is not a floating-point tensor.
    """
    _check_min_dim("adv", adv, 2 if per_task else 1, "[task, ...]")
    _check_float_tensor("adv", adv)
    _check_shape("mask", mask, tuple(adv.shape), "adv.shape")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    dims = tuple(range(1, adv.dim())) if per_task else tuple(range(adv.dim()))
    mean = _keepdim_masked_mean(adv, mask, dims)
    centred = adv - mean
    std = _keepdim_masked_mean(centred * centred, mask, dims).sqrt()
    out = centred / (std + eps)
    return torch.where(_valid(mask), out, torch.zeros((), dtype=adv.dtype, device=adv.device))


def _keepdim_masked_mean(x: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
    mean = masked_mean(x, mask, dims)
    return mean.reshape([1 if i in dims else s for i, s in enumerate(x.shape)])

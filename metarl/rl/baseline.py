"""Linear feature baseline (Duan et al. 2016, "Benchmarking Deep RL", App. 2), fitted per task.

The baseline of MAML-TRPO and ProMP (rllab's ``linear_feature_baseline.py``,
pytorch-maml-rl's ``maml_rl/baseline.py``). For every step, with ``o`` the observation and ``t``
the step index within the episode::

    phi(o, t) = [o, o**2, t/100, (t/100)**2, (t/100)**3, 1]        # 2 * obs_dim + 4 features

and the coefficients solve the ridge normal equations on the discounted returns ``G``::

    (X^T X + reg * I) w = X^T G

over all valid steps of one task's episodes. If a solution is not finite (or the system is
singular), ``reg`` is multiplied by 10 and the task is solved again, up to 5 attempts in all
(rllab's rule). All tasks of a batch are solved at once with a batched ``torch.linalg.solve_ex``;
the retry applies to the failing tasks only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metarl.rl.returns import (
    _check_float_tensor,
    _check_shape,
    _check_tensor,
    _valid,
    _zero_padding,
)

__all__ = [
    "fit_linear_baseline",
    "linear_baseline_features",
    "linear_baseline_values",
    "predict_linear_baseline",
]


def linear_baseline_features(obs: Tensor, obs_clip: float | None = None) -> Tensor:
    """Features ``[o, o**2, t/100, (t/100)**2, (t/100)**3, 1]`` of every step.

    Args:
        obs: Observations, shape ``[..., time, obs_dim]``; ``t`` is the index along ``time``.
        obs_clip: If given, ``o`` is clipped to ``[-obs_clip, obs_clip]`` first (rllab uses 10);
            None leaves it as is (pytorch-maml-rl).

    Returns:
        Features, shape ``[..., time, 2 * obs_dim + 4]``, dtype of ``obs``.

    Raises:
        ValueError: If ``obs`` has fewer than 2 axes or ``obs_clip`` is not positive.
        TypeError: If ``obs`` is not a floating-point tensor.
    """
    _check_tensor("obs", obs)
    if obs.dim() < 2:
        raise ValueError(f"obs must have shape [..., time, obs_dim], got {list(obs.shape)}")
    _check_float_tensor("obs", obs)
    if obs_clip is not None:
        if obs_clip <= 0:
            raise ValueError(f"obs_clip must be positive or None, got {obs_clip}")
        obs = obs.clamp(-obs_clip, obs_clip)
    horizon = obs.shape[-2]
    t = torch.arange(horizon, dtype=obs.dtype, device=obs.device) / 100.0
    t = t.unsqueeze(-1).expand(*obs.shape[:-1], 1)
    return torch.cat([obs, obs * obs, t, t**2, t**3, torch.ones_like(t)], dim=-1)


def _check_batch(obs: Tensor, mask: Tensor) -> None:
    _check_tensor("obs", obs)
    if obs.dim() != 4:
        raise ValueError(
            f"obs must have shape [task, episode, time, obs_dim], got {list(obs.shape)}"
        )
    _check_shape("mask", mask, tuple(obs.shape[:3]), "obs.shape[:3] [task, episode, time]")


def _solve_ridge(xtx: Tensor, xty: Tensor, reg: Tensor) -> tuple[Tensor, Tensor]:
    """Solves ``(xtx + reg I) w = xty`` per task.

    Args:
        xtx: ``X^T X``, shape ``[task, feat, feat]``.
        xty: ``X^T G``, shape ``[task, feat]``.
        reg: Ridge coefficient per task, shape ``[task]``.

    Returns:
        ``(w, ok)``: solutions ``[task, feat]`` and ``[task]`` bool, true where the system was
        non-singular and the solution finite.
    """
    eye = torch.eye(xtx.shape[-1], dtype=xtx.dtype, device=xtx.device)
    system = xtx + reg[:, None, None] * eye
    solution, info = torch.linalg.solve_ex(system, xty.unsqueeze(-1))
    solution = solution.squeeze(-1)
    return solution, (info == 0) & torch.isfinite(solution).all(dim=-1)


def fit_linear_baseline(
    obs: Tensor,
    returns: Tensor,
    mask: Tensor,
    reg: float = 1e-5,
    *,
    obs_clip: float | None = None,
    max_attempts: int = 5,
) -> Tensor:
    """Fits the linear feature baseline to each task's discounted returns.

    Padding (``mask == 0``) is excluded from the fit. Each task gets its own coefficients,
    computed from that task's episodes only.

    Args:
        obs: Observations, shape ``[task, episode, time, obs_dim]``.
        returns: Discounted returns ``G_t`` (see :func:`metarl.rl.discounted_returns`), shape
            ``[task, episode, time]``.
        mask: Validity, shape ``[task, episode, time]``.
        reg: Initial ridge coefficient (1e-5 in rllab and pytorch-maml-rl).
        obs_clip: Clip observations to ``+-obs_clip`` in the features (rllab: 10); None: no clip.
        max_attempts: Solves per task, each with ``reg`` ten times the previous one.

    Returns:
        Coefficients, shape ``[task, 2 * obs_dim + 4]``, dtype of ``obs``.

    Raises:
        ValueError: On shape mismatches or a non-positive ``reg``/``max_attempts``.
        RuntimeError: If some task has no finite solution after ``max_attempts`` solves (its data
            are not finite), naming the tasks.
    """
    _check_batch(obs, mask)
    _check_shape("returns", returns, tuple(obs.shape[:3]), "obs.shape[:3] [task, episode, time]")
    if not reg > 0:
        raise ValueError(f"reg must be positive, got {reg}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    features = linear_baseline_features(obs, obs_clip)
    valid = _valid(mask)
    zero = torch.zeros((), dtype=features.dtype, device=features.device)
    x = torch.where(valid.unsqueeze(-1), features, zero).flatten(1, 2)  # [task, steps, feat]
    g = torch.where(valid, returns.to(features.dtype), zero).flatten(1, 2)  # [task, steps]
    xtx = x.mT @ x
    xty = (x.mT @ g.unsqueeze(-1)).squeeze(-1)

    reg_t = torch.full((obs.shape[0],), float(reg), dtype=xtx.dtype, device=xtx.device)
    coeffs, ok = _solve_ridge(xtx, xty, reg_t)
    for _ in range(max_attempts - 1):
        if bool(ok.all()):
            break
        reg_t = torch.where(ok, reg_t, reg_t * 10.0)
        retry, retry_ok = _solve_ridge(xtx, xty, reg_t)
        coeffs = torch.where(ok.unsqueeze(-1), coeffs, retry)
        ok = ok | retry_ok
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).flatten().tolist()
        raise RuntimeError(
            f"linear baseline: no finite least-squares solution for tasks {bad} after "
            f"{max_attempts} attempts (last reg {reg_t[~ok].max().item():.1e}); are the "
            "observations or returns finite?"
        )
    return coeffs


def predict_linear_baseline(
    coeffs: Tensor, obs: Tensor, mask: Tensor, *, obs_clip: float | None = None
) -> Tensor:
    """Baseline values ``phi(o, t) . w_task`` of every step, zero on padding.

    Args:
        coeffs: Per-task coefficients from :func:`fit_linear_baseline`, shape ``[task, feat]``
            with ``feat = 2 * obs_dim + 4``.
        obs: Observations, shape ``[task, episode, time, obs_dim]``.
        mask: Validity, shape ``[task, episode, time]``.
        obs_clip: As in :func:`fit_linear_baseline` (use the same value).

    Returns:
        Values, shape ``[task, episode, time]``.

    Raises:
        ValueError: On shape mismatches.
    """
    _check_batch(obs, mask)
    feat = 2 * obs.shape[-1] + 4
    _check_shape("coeffs", coeffs, (obs.shape[0], feat), "[task, 2 * obs_dim + 4]")
    features = linear_baseline_features(obs, obs_clip)
    values = torch.einsum("kets,ks->ket", features, coeffs.to(features.dtype))
    return _zero_padding(values, _valid(mask))


def linear_baseline_values(
    obs: Tensor,
    returns: Tensor,
    mask: Tensor,
    reg: float = 1e-5,
    *,
    obs_clip: float | None = None,
) -> Tensor:
    """Fits the baseline per task and returns its values on the same batch.

    What MAML-TRPO does for each batch of episodes: refit, then evaluate on the data it was fit
    to (cbfinn/maml_rl: "refit per task and per batch").

    Args:
        obs: Observations, shape ``[task, episode, time, obs_dim]``.
        returns: Discounted returns, shape ``[task, episode, time]``.
        mask: Validity, shape ``[task, episode, time]``.
        reg: Initial ridge coefficient.
        obs_clip: Observation clip in the features; None: no clip.

    Returns:
        Values, shape ``[task, episode, time]``, zero on padding.

    Raises:
        ValueError: On shape mismatches.
        RuntimeError: If a task's fit has no finite solution.
    """
    coeffs = fit_linear_baseline(obs, returns, mask, reg, obs_clip=obs_clip)
    return predict_linear_baseline(coeffs, obs, mask, obs_clip=obs_clip)

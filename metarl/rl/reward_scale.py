"""Rewards divided by a running standard deviation of the discounted return.

The reward scaling of OpenAI baselines' and stable-baselines3's ``VecNormalize(norm_reward=True)``,
which varibad applies to its RL² runs (``norm_rew_for_policy``, Zintgraf et al. 2020): along each
sequence ``R_t = gamma R_{t-1} + r_t`` from its start, the variance of every ``R_t`` seen so far is
kept as a running count, mean and sum of squared deviations (Chan et al.'s parallel update, in
float64), and the rewards an update learns from are divided by ``sqrt(var + eps)`` (not centred,
so their sign is kept). Only the update's targets change: a policy that sees the previous reward
keeps seeing the raw one. Without it, a value loss on returns of size ~30 (HalfCheetahVel) dwarfs
the policy loss in a shared trunk under a global gradient-norm clip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["RewardScaler"]

_EPS = 1e-8  # added to the variance (baselines' and SB3's epsilon)


class RewardScaler:
    """Running scale of the discounted return, for :func:`~metarl.rl.trials.trial_gae`'s rewards.

    Args:
        gamma: The discount of the return whose spread is tracked (the update's own gamma).
        device: Where the statistics live (the rewards' device).
    """

    def __init__(self, gamma: float, device: torch.device) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.gamma = gamma
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.mean = torch.zeros((), dtype=torch.float64, device=device)
        self.m2 = torch.zeros((), dtype=torch.float64, device=device)

    @property
    def std(self) -> Tensor:
        """``sqrt(var + eps)`` of the returns seen so far (1 before any)."""
        var = torch.where(self.count > 0, self.m2 / self.count.clamp(min=1.0), 1.0 - _EPS)
        return (var + _EPS).sqrt()

    def update(
        self,
        rewards: Tensor,
        mask: Tensor,
        reduce: Callable[[Sequence[Tensor]], None] | None = None,
    ) -> None:
        """Adds the discounted returns of a batch, one sequence per row ``[N, L]``.

        Args:
            rewards: ``[N, L]`` (or ``[N, ...]``, flattened per row), 0 on padding.
            mask: Validity, shaped like ``rewards``; padding neither counts nor discounts.
            reduce: Data parallelism: sums tensors over the ranks in place, so every rank adds
                the whole batch's returns (the same statistics at any world size).
        """
        if rewards.shape != mask.shape:
            raise ValueError(
                f"mask must have the shape of rewards {list(rewards.shape)}, got {list(mask.shape)}"
            )
        r = rewards.detach().flatten(1).to(torch.float64)
        m = mask.detach().flatten(1).to(torch.float64)
        running = torch.zeros(r.shape[0], dtype=torch.float64, device=r.device)
        returns = torch.empty_like(r)
        for t in range(r.shape[1]):  # padding keeps the return where it was
            running = torch.where(m[:, t] > 0, self.gamma * running + r[:, t], running)
            returns[:, t] = running
        sums = torch.stack([m.sum(), (returns * m).sum(), (returns.square() * m).sum()])
        if reduce is not None:
            reduce([sums])
        n, total, squares = sums.unbind()
        batch_mean = total / n.clamp(min=1.0)
        batch_m2 = (squares - n * batch_mean.square()).clamp(min=0.0)
        count = self.count + n
        delta = batch_mean - self.mean
        weight = n / count.clamp(min=1.0)
        self.mean = self.mean + delta * weight
        self.m2 = self.m2 + batch_m2 + delta.square() * self.count * weight
        self.count = count

    def scale(self, rewards: Tensor) -> Tensor:
        """``rewards / sqrt(var + eps)``, in the rewards' dtype."""
        return rewards / self.std.to(rewards.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        """The running statistics (CPU tensors, for a ``weights_only`` checkpoint)."""
        return {k: getattr(self, k).detach().cpu().clone() for k in ("count", "mean", "m2")}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restores :meth:`state_dict` on this scaler's device."""
        missing = {"count", "mean", "m2"} - set(state)
        if missing:
            raise KeyError(f"reward-scale state lacks {sorted(missing)}")
        for key in ("count", "mean", "m2"):
            value = torch.as_tensor(state[key], dtype=torch.float64)
            setattr(self, key, value.to(self.count.device))

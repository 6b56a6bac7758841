"""A policy conditioned on a context that the inner loop adapts (CAVIA, Zintgraf et al. 2019).

:class:`ContextPolicy` wraps a policy and feeds it ``[observation, context]``. The context is a
zero buffer, not a parameter: it is no part of θ (the outer update never changes it), each task
starts from it, and an adapted per-task value enters through ``functional_call`` under its name,
:data:`CONTEXT` (lmzintgraf/cavia ``rl/policies/normal_mlp.py`` concatenates it to the input).
``adapt_keys`` names it, so the MAML-RL inner loop adapts it alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CONTEXT", "ContextPolicy"]

CONTEXT = "context"
"""The name of the context buffer, and of the adapted per-task context in a parameter dict."""


class ContextPolicy(nn.Module):
    """``policy([obs, context])`` with a zero context buffer of ``context_size`` entries.

    Args:
        policy: A policy whose observation size is the env's plus ``context_size``.
        context_size: Entries of the context, >= 1.

    Raises:
        ValueError: If ``context_size`` < 1.
    """

    adapt_keys = (CONTEXT,)
    """The parameters the inner loop adapts: only the context."""

    def __init__(self, policy: nn.Module, context_size: int) -> None:
        super().__init__()
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1:
            raise ValueError(f"context_size must be an int >= 1, got {context_size!r}")
        self.policy = policy
        self.discrete = getattr(policy, "discrete", False)
        device = next(policy.parameters()).device
        self.register_buffer(CONTEXT, torch.zeros(context_size, device=device))

    def _wrapped(self) -> Any:
        return self.policy  # typed Any: the wrapped policy's distribution methods are duck-typed

    def forward(self, obs: Tensor) -> Any:
        """Runs the policy on ``[obs, context]``; ``obs [..., obs_dim]``."""
        context: Tensor = getattr(self, CONTEXT)
        if context.dim() != 1:
            raise ValueError(f"context must be a vector, got shape {tuple(context.shape)}")
        expanded = context.to(obs.dtype).expand(*obs.shape[:-1], context.shape[0])
        return self.policy(torch.cat([obs, expanded], dim=-1))

    def log_prob(self, out: Any, action: Tensor) -> Tensor:
        """The wrapped policy's ``log_prob``."""
        return self._wrapped().log_prob(out, action)

    def kl(self, old: Any, new: Any) -> Tensor:
        """The wrapped policy's ``kl``."""
        return self._wrapped().kl(old, new)

    def entropy(self, out: Any) -> Tensor:
        """The wrapped policy's ``entropy``."""
        return self._wrapped().entropy(out)

    def sample(self, out: Any, generator: torch.Generator | None = None) -> Tensor:
        """The wrapped policy's ``sample``."""
        return self._wrapped().sample(out, generator)

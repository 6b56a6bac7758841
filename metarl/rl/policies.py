"""Policies callable with a parameter dict: Gaussian MLP and categorical MLP.

A policy is an ``nn.Module`` used only as a parameter container and a function: ``dist_params =
functional_call(policy, params, (obs,))``. Per-task parameters (after inner-loop adaptation) are the
same dict with a leading task axis, and :func:`policy_forward` runs every task's parameters on that
task's observations in one ``torch.func.vmap`` call.

Action interface: the Gaussian policy acts in the env's action space as given.
pytorch-maml-rl, garage and ProMP instead let the policy act in ``[-10, 10]`` and divide by 10
before the env (the env option ``action_scale=10`` reproduces that, and with it an initial std of
1.0 is an effective 0.1); MAML's rllab maps a ``[-1, 1]`` output onto the actuator range, which is
what the v5 MuJoCo envs' own ``[-1, 1]`` action space gives by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, TypeAlias

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.functional import Params
from metarl.nn import MLP
from metarl.rl.distributions import (
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    diag_gaussian_entropy,
    diag_gaussian_kl,
    diag_gaussian_log_prob,
)

__all__ = [
    "CategoricalMLPPolicy",
    "GaussianMLPPolicy",
    "MLPPolicy",
    "PolicyOutput",
    "batched_policy_forward",
    "policy_forward",
]


class PolicyOutput(NamedTuple):
    """The action distribution for a batch of observations.

    Attributes:
        loc: Gaussian mean ``[..., act_dim]`` or categorical logits ``[..., num_actions]``.
        log_std: Gaussian log standard deviation ``[..., act_dim]`` (None for categorical).
    """

    loc: Tensor
    log_std: Tensor | None

    def apply(self, fn: Callable[[Tensor], Tensor]) -> PolicyOutput:
        """``fn`` applied to each tensor (``log_std`` stays None for a categorical policy)."""
        return PolicyOutput(fn(self.loc), None if self.log_std is None else fn(self.log_std))


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian policy: an MLP mean and a state-independent learned log-std.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden: hidden widths (MAML paper: (100, 100) ReLU; pytorch-maml-rl/ProMP: (64, 64) tanh).
        activation: hidden activation.
        init_std: initial standard deviation (1.0 in all the reference code).
        min_std: lower bound on the standard deviation (MAML: 1e-6).
        generator: initialises the weights.
        device: where the parameters live.
    """

    discrete = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: Literal["relu", "tanh"] = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if init_std <= 0 or min_std <= 0:
            raise ValueError(f"init_std and min_std must be > 0, got {init_std}, {min_std}")
        self.net = MLP(
            obs_dim, hidden, act_dim, activation=activation, generator=generator, device=device
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std), device=device))
        self.min_log_std = math.log(min_std)
        self.act_dim = act_dim

    def forward(self, obs: Tensor) -> PolicyOutput:
        """Returns mean ``[..., act_dim]`` and log-std broadcast to it; ``obs [..., obs_dim]``."""
        mean = self.net(obs)
        log_std = torch.clamp(self.log_std, min=self.min_log_std).expand_as(mean)
        return PolicyOutput(mean, log_std)

    @staticmethod
    def log_prob(out: PolicyOutput, action: Tensor) -> Tensor:
        """Log-density of ``action [..., act_dim]``, summed over action dims: ``[...]``."""
        assert out.log_std is not None
        return diag_gaussian_log_prob(out.loc, out.log_std, action)

    @staticmethod
    def kl(old: PolicyOutput, new: PolicyOutput) -> Tensor:
        """KL(old ‖ new) per sample ``[...]``."""
        assert old.log_std is not None and new.log_std is not None
        return diag_gaussian_kl(old.loc, old.log_std, new.loc, new.log_std)

    @staticmethod
    def entropy(out: PolicyOutput) -> Tensor:
        """Entropy per sample ``[...]``."""
        assert out.log_std is not None
        return diag_gaussian_entropy(out.log_std)

    @staticmethod
    def sample(out: PolicyOutput, generator: torch.Generator | None = None) -> Tensor:
        """Draws one action per sample: ``mean + std * N(0, 1)``."""
        assert out.log_std is not None
        noise = torch.randn(
            out.loc.shape, generator=generator, device=out.loc.device, dtype=out.loc.dtype
        )
        return out.loc + out.log_std.exp() * noise


class CategoricalMLPPolicy(nn.Module):
    """Categorical policy over ``num_actions`` with MLP logits.

    Args:
        obs_dim: observation size.
        num_actions: number of discrete actions.
        hidden: hidden widths (pytorch-maml-rl bandits: (32, 32) ReLU).
        activation: hidden activation.
        generator: initialises the weights.
        device: where the parameters live.
    """

    discrete = True

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (32, 32),
        activation: Literal["relu", "tanh"] = "relu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.net = MLP(
            obs_dim, hidden, num_actions, activation=activation, generator=generator, device=device
        )
        self.num_actions = num_actions

    def forward(self, obs: Tensor) -> PolicyOutput:
        """Returns logits ``[..., num_actions]``."""
        return PolicyOutput(self.net(obs), None)

    @staticmethod
    def log_prob(out: PolicyOutput, action: Tensor) -> Tensor:
        """Log-probability of integer ``action [...]``: ``[...]``."""
        return categorical_log_prob(out.loc, action)

    @staticmethod
    def kl(old: PolicyOutput, new: PolicyOutput) -> Tensor:
        """KL(old ‖ new) per sample ``[...]``."""
        return categorical_kl(old.loc, new.loc)

    @staticmethod
    def entropy(out: PolicyOutput) -> Tensor:
        """Entropy per sample ``[...]``."""
        return categorical_entropy(out.loc)

    @staticmethod
    def sample(out: PolicyOutput, generator: torch.Generator | None = None) -> Tensor:
        """Draws one action index per sample (Gumbel-max, so it needs one random tensor)."""
        u = torch.rand(out.loc.shape, generator=generator, device=out.loc.device)
        gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
        return (out.loc + gumbel).argmax(-1)


MLPPolicy: TypeAlias = GaussianMLPPolicy | CategoricalMLPPolicy
"""A policy of this module: an ``nn.Module`` with ``log_prob``, ``kl``, ``entropy``, ``sample``."""


def policy_forward(policy: nn.Module, params: Params, obs: Tensor, batched: bool) -> PolicyOutput:
    """Runs ``policy`` with ``params`` on ``obs``.

    Args:
        policy: a policy module (used as a function only).
        params: shared parameters ``{name: [*shape]}``, or per-task ``{name: [task, *shape]}``
            when ``batched``.
        obs: ``[..., obs_dim]``, or ``[task, ..., obs_dim]`` when ``batched``.
        batched: whether ``params`` and ``obs`` carry a leading task axis.

    Returns:
        The distribution parameters, with the leading axes of ``obs``.
    """
    if not batched:
        return functional_call(policy, params, (obs,))
    if obs.shape[0] != next(iter(params.values())).shape[0]:
        raise ValueError(
            f"obs has {obs.shape[0]} tasks on its leading axis but params have "
            f"{next(iter(params.values())).shape[0]}"
        )

    def one_task(task_params: Params, task_obs: Tensor) -> tuple[Tensor, ...]:
        out = functional_call(policy, task_params, (task_obs,))
        # vmap returns tensors only: drop the categorical policy's log_std=None, restore it below.
        return (out.loc,) if out.log_std is None else (out.loc, out.log_std)

    outs = vmap(one_task)(params, obs)
    return PolicyOutput(outs[0], outs[1] if len(outs) > 1 else None)


def _plain_mlp(policy: nn.Module) -> MLP | None:
    """The :class:`MLP` net of this module's MLP policies, else None (other policies)."""
    if type(policy) not in (GaussianMLPPolicy, CategoricalMLPPolicy):
        return None
    net = policy.get_submodule("net")
    return net if type(net) is MLP else None


def batched_policy_forward(policy: nn.Module, params: Params, obs: Tensor) -> PolicyOutput:
    """``policy_forward(policy, params, obs, batched=True)`` without ``vmap`` where it can.

    For the MLP policies of this module and ``obs [task, n, obs_dim]`` it runs, per layer, the
    operations ``vmap`` runs for ``F.linear`` with per-task weights (``bmm`` with the transposed
    weights, then the bias added), so the numbers are the same, at a fraction of the per-step
    overhead of ``vmap`` plus ``functional_call`` (the sampler calls this once per env step).
    Any other policy or shape goes through :func:`policy_forward`.

    Args:
        policy: a policy module (used as a function only).
        params: per-task parameters ``{name: [task, *shape]}``.
        obs: ``[task, ..., obs_dim]``.

    Returns:
        The distribution parameters, with the leading axes of ``obs``.
    """
    net = _plain_mlp(policy)
    tasks = obs.shape[0] if obs.dim() == 3 else -1
    if (
        net is None
        or obs.shape[-1] != net.in_dim
        or params.keys() != dict(policy.named_parameters()).keys()
        or any(v.dim() < 1 or v.shape[0] != tasks for v in params.values())
    ):
        return policy_forward(policy, params, obs, True)
    x = obs
    *hidden, head = net.linear_names
    for name in net.linear_names:
        weight, bias = params[f"net.{name}.weight"], params[f"net.{name}.bias"]
        x = torch.bmm(x, weight.transpose(1, 2)) + bias.unsqueeze(1)
        if name != head:
            x = net.activation_fn(x)
    if isinstance(policy, CategoricalMLPPolicy):
        return PolicyOutput(x, None)
    assert isinstance(policy, GaussianMLPPolicy)
    log_std = torch.clamp(params["log_std"], min=policy.min_log_std)
    return PolicyOutput(x, log_std.unsqueeze(1).expand_as(x))

"""The inner loop of MAML for RL: per-task advantages, the inner policy-gradient loss, adaptation.

One policy-gradient step ``θ'_i = θ - α ∇θ L_i(θ)`` per inner step for every task at once
(:func:`adapt_policy`, through :func:`metarl.functional.adapt`), on episodes prepared with the
linear feature baseline fitted per task (:func:`prepare_episodes`; rllab's
``linear_feature_baseline.py``, as in cbfinn/maml_rl). Used by :mod:`metarl.algorithms.maml_rl`
for meta-training and by its evaluation for the test-time adaptation steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call

from metarl.algorithms.maml_rl_config import AlgoConfig, MAMLRLConfig
from metarl.functional import LearningRate, Params, adapt
from metarl.rl.baseline import linear_baseline_values
from metarl.rl.gauss_newton import gauss_newton_fvp
from metarl.rl.policies import MLPPolicy, PolicyOutput, policy_forward
from metarl.rl.returns import discounted_returns, gae, masked_mean, normalize_advantages
from metarl.rl.sampler import EpisodeBatch
from metarl.rl.trpo import FVPFactory

__all__ = [
    "TaskData",
    "adapt_policy",
    "adapted_output",
    "gauss_newton_fvp_fn",
    "inner_loss",
    "prepare_episodes",
]


class TaskData(NamedTuple):
    """Episodes prepared for a policy-gradient loss, ``[task T, episode E, time H, ...]``.

    Attributes:
        obs: ``[T, E, H, obs_dim]``.
        actions: ``[T, E, H, act_dim]`` (``[T, E, H]`` for discrete actions).
        advantages: ``[T, E, H]``, constants.
        mask: ``[T, E, H]`` validity.
        log_probs: ``[T, E, H]`` log-probabilities under the sampling policy.
    """

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    mask: Tensor
    log_probs: Tensor


@torch.no_grad()
def prepare_episodes(batch: EpisodeBatch, algo: AlgoConfig) -> TaskData:
    """Advantages from the linear feature baseline refitted per task (cbfinn/maml_rl, rllab).

    The baseline is fitted in float64 to each task's discounted returns; GAE gives ``A_t``
    (``λ = 1``: ``G_t - b(s_t)``), normalised per task when ``algo.normalize_advantages``.

    Args:
        batch: Episodes ``[T, E, H, ...]`` from :func:`~metarl.rl.sampler.sample_episodes`.
        algo: ``gamma``, ``gae_lambda`` and ``normalize_advantages``.

    Returns:
        :class:`TaskData`.
    """
    rewards, mask = batch.rewards.double(), batch.mask
    returns = discounted_returns(rewards, mask, algo.gamma, done=batch.dones)
    values = linear_baseline_values(batch.obs.double(), returns, mask)
    adv = gae(rewards, values, mask, algo.gamma, algo.gae_lambda, done=batch.dones).advantages
    if algo.normalize_advantages:
        adv = normalize_advantages(adv, mask, per_task=True)
    return TaskData(batch.obs, batch.actions, adv.to(batch.rewards.dtype), mask, batch.log_probs)


def inner_loss(policy: MLPPolicy, estimator: str, params: Params, data: TaskData) -> Tensor:
    """One task's inner loss on its episodes (``data`` fields ``[E, H, ...]``): 0-d.

    ``"reinforce"``: ``-mean(log π_θ(a|s) A)`` (MAML, pytorch-maml-rl); ``"lvc"``: ProMP's
    low-variance curvature estimator ``-mean(π_θ(a|s) / π_old(a|s) A)`` (Rothfuss et al. 2019,
    Eq. 12). Both have the REINFORCE gradient at the sampling policy; means are over valid steps.
    """
    logp = policy.log_prob(functional_call(policy, params, (data.obs,)), data.actions)
    weight = torch.exp(logp - data.log_probs) if estimator == "lvc" else logp
    return -masked_mean(weight * data.advantages, data.mask)


def adapt_policy(
    policy: MLPPolicy,
    params: Params,
    inner: Sequence[TaskData],
    lrs: Sequence[float],
    *,
    first_order: bool,
    estimator: str = "reinforce",
    per_task: bool = False,
    learned: Params | None = None,
) -> list[Params]:
    """The inner loop: one policy-gradient step per batch of ``inner``, all tasks at once.

    Step ``k`` takes one step of :func:`inner_loss` on ``inner[k]`` with
    :func:`metarl.functional.adapt`, vmapped over the task axis. The result stays differentiable
    with respect to θ (second order unless ``first_order``).

    Args:
        policy: The policy module.
        params: Shared θ ``{name: [*shape]}``, or with ``per_task`` already adapted
            ``{name: [T, *shape]}``.
        inner: One :class:`TaskData` ``[T, E, H, ...]`` per inner step.
        lrs: Step size of each inner step (``len(inner)`` floats).
        first_order: Detach the inner gradients.
        estimator: ``"reinforce"`` or ``"lvc"`` (:func:`inner_loss`).
        per_task: ``params`` carry the task axis (the evaluation's later fine-tuning steps).
        learned: Meta-SGD's learned step sizes ``{name: [*shape]}`` (:func:`init_lrs`), used at
            every step instead of ``lrs``; None for fixed step sizes.

    Returns:
        ``[θ, θ'_1, ..., θ'_K]``: ``params``' policy parameters, then per-task
        ``{name: [T, *shape]}``.

    Raises:
        ValueError: If ``lrs`` and ``inner`` differ in length.
    """
    if len(lrs) != len(inner):
        raise ValueError(f"lrs has {len(lrs)} entries for {len(inner)} inner steps")
    if not inner:
        return [params]

    def loss_fn(task_params: Params, task_batches: tuple[TaskData, ...], step: int) -> Tensor:
        return inner_loss(policy, estimator, task_params, task_batches[step])

    lr: LearningRate | list[float] = learned if learned else list(lrs)
    # CAVIA (metarl.rl.context): only the context adapts, from its zero buffer.
    adapt_keys = getattr(policy, "adapt_keys", None)
    start = params
    if adapt_keys is not None and not per_task:
        start = {**params, **{k: b for k, b in policy.named_buffers() if k in adapt_keys}}
    result = adapt(
        start,
        loss_fn,
        tuple(inner),
        steps=len(inner),
        lr=lr,
        first_order=first_order,
        adapt_keys=adapt_keys,
        per_task=per_task,
        step_arg=True,
    )
    return [params, *result.trajectory[1:]]


def adapted_output(
    policy: MLPPolicy,
    params: Params,
    inner: Sequence[TaskData],
    valid: TaskData,
    cfg: MAMLRLConfig,
    learned: Params | None = None,
) -> tuple[list[Params], PolicyOutput]:
    """θ'_i(θ) through the inner loop of ``cfg``, and the adapted policies on ``valid.obs``.

    Returns:
        The path ``[θ, θ'_1, ..., θ'_K]`` (:func:`adapt_policy`) and the distribution parameters
        ``[T, E, H, ...]`` of the last policies on the post-update observations.
    """
    lrs = [cfg.inner.lr] * len(inner)
    first_order, estimator = cfg.inner.first_order, cfg.inner.estimator
    path = adapt_policy(
        policy, params, inner, lrs, first_order=first_order, estimator=estimator, learned=learned
    )
    return path, policy_forward(policy, path[-1], valid.obs, bool(inner))


def gauss_newton_fvp_fn(
    outputs_fn: Callable[[Params], PolicyOutput],
    valid: TaskData,
    weight: float = 1.0,
    compile: bool = False,
) -> FVPFactory:
    """MAML-TRPO's KL curvature products in Gauss-Newton form (:func:`gauss_newton_fvp`).

    The KL is ``weight * mean_i masked_mean_t KL(π_old ‖ π_θ'_i(θ))`` on ``valid``, taken at the
    old θ where ``π_old`` is the adapted policy itself (the sampling policies θ'_i(θ_old)), so its
    Hessian is ``J^T F J``: ``J`` the Jacobian of ``outputs_fn`` (the adapted policies' outputs,
    through the inner step, second order) and ``F`` the Fisher matrix of each sample's
    distribution times its weight in the mean: ``1/σ²`` on a Gaussian's mean and ``2`` on its
    log-std (diagonal), ``diag(p) - p pᵀ`` on categorical logits.

    Args:
        outputs_fn: ``params -> PolicyOutput [T, E, H, ...]`` of the adapted policies.
        valid: The post-update batch (its mask weighs the samples).
        weight: This rank's share of the meta-batch (data parallel), 1 for one process.
        compile: Read the products from :func:`torch.compile` graphs (``trpo.compile``).

    Returns:
        ``params -> (v -> J^T F J v)`` for :func:`~metarl.rl.trpo.trpo_step`'s ``fvp``.
    """
    probe = torch.zeros(
        valid.mask.shape,
        dtype=valid.advantages.dtype,
        device=valid.mask.device,
        requires_grad=True,
    )
    with torch.enable_grad():  # each sample's weight in the KL's (masked) mean
        mean = masked_mean(probe, valid.mask, dim=(1, 2)).mean() * weight
        (sample_weight,) = torch.autograd.grad(mean, probe)
    sample_weight = sample_weight.unsqueeze(-1)

    def outputs(params: Params) -> tuple[Tensor, ...]:
        out = outputs_fn(params)
        return (out.loc,) if out.log_std is None else (out.loc, out.log_std)

    def fisher(outs: tuple[Tensor, ...], tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if len(outs) == 1:  # categorical logits: (diag(p) - p pᵀ) t
            probs = torch.softmax(outs[0], dim=-1)
            pt = probs * tangents[0]
            return (sample_weight * (pt - probs * pt.sum(-1, keepdim=True)),)
        log_std = outs[1]  # Gaussian: 1/σ² on the mean, 2 on the log-std
        return (
            tangents[0] * (sample_weight * torch.exp(-2.0 * log_std)),
            tangents[1] * (2.0 * sample_weight),
        )

    def factory(params: Params) -> Callable[[Tensor], Tensor]:
        return gauss_newton_fvp(outputs, params, fisher, compile=compile)

    return factory

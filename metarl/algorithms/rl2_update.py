"""RL²'s policy updates on trials cut into BPTT chunks: PPO-clip and TRPO with a value fit.

:func:`ppo_update` runs PPO-clip epochs over minibatches of whole trials (Schulman et al. 2017;
minibatches split by environment as cleanrl's ``ppo_atari_lstm.py``); :func:`trpo_update` takes
one TRPO step of the policy and then fits the value function with Adam, as in RL²'s first-order
TRPO with a GRU baseline (Duan et al. 2016, §2.4). Both take ``split`` for data parallelism (this
rank's trials, all trials) and then sum gradients, or TRPO's surrogate and KL, over the ranks.
The driver is :mod:`metarl.algorithms.rl2`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import torch
from torch import Tensor

from metarl import distributed
from metarl.algorithms.rl2_config import PPOConfig, RL2Config
from metarl.config_sections import section
from metarl.functional import Params
from metarl.rl.parallel import masked_stats, minibatch_steps, normalized, sum_grads_
from metarl.rl.ppo import PPOLoss, mean_entropy, ppo_clip_loss, value_loss
from metarl.rl.recurrent import RecurrentOutput, RecurrentPolicy
from metarl.rl.returns import masked_mean, normalize_advantages
from metarl.rl.trials import TrialChunks, chunk_forward
from metarl.rl.trpo import trpo_step

__all__ = ["PPOTerms", "minibatches", "ppo_loss", "ppo_update", "split_params", "trpo_update"]


def _advantages(chunks: TrialChunks, normalize: bool) -> Tensor:
    adv, mask = chunks.advantages, chunks.mask
    return normalize_advantages(adv, mask, per_task=False) if normalize else adv


def minibatches(chunks: TrialChunks, count: int, generator: torch.Generator) -> list[Tensor]:
    """A random split of the trials into ``count`` groups (minibatches over trials, not steps)."""
    num, device = chunks.mask.shape[0], chunks.mask.device
    return list(torch.randperm(num, generator=generator, device=device).tensor_split(count))


def _adam_step(
    optimizer: torch.optim.Optimizer,
    loss: Tensor | None,
    groups: list[list[Tensor]],
    max_norm: float | None,
    summed: bool = False,
) -> None:
    """One Adam step on ``loss``; each group of tensors has its gradient norm clipped on its own."""
    optimizer.zero_grad(set_to_none=True)
    if loss is not None:
        loss.backward()
    if summed:  # loss is this rank's share (None: it has none); the gradients are summed
        sum_grads_(p for group in optimizer.param_groups for p in group["params"])
    if max_norm is not None:
        for group in groups:
            torch.nn.utils.clip_grad_norm_(group, max_norm)
    optimizer.step()


def _clip_groups(policy: RecurrentPolicy, params: Params, ppo: PPOConfig) -> list[list[Tensor]]:
    """The tensors clipped together: all, or the policy's and the value's apart."""
    if not ppo.clip_value_separately:
        return [list(params.values())]
    return [list(part.values()) for part in split_params(policy, params) if part]


class PPOTerms(NamedTuple):
    """PPO's loss on a minibatch and its parts (each 0-d).

    Attributes:
        loss: ``clip.loss + value_coef * value - entropy_coef * entropy``, differentiable.
        clip: The clipped surrogate with its diagnostics (Schulman et al. 2017, Eq. 7).
        value: The value loss ``0.5 * mean((V - returns)**2)``.
        entropy: The mean policy entropy.
    """

    loss: Tensor
    clip: PPOLoss
    value: Tensor
    entropy: Tensor


def ppo_loss(
    policy: RecurrentPolicy, out: RecurrentOutput, chunks: TrialChunks, cfg: RL2Config
) -> PPOTerms:
    """PPO's loss from the policy's outputs ``out`` on the sequences ``chunks`` ``[B, T, ...]``.

    Means are over the valid steps of the minibatch; advantages are normalised over them when
    ``cfg.algo.normalize_advantages``.
    """
    ppo = section(cfg.ppo, "ppo")
    logp = policy.log_prob(out.dist, chunks.actions)
    adv = _advantages(chunks, cfg.algo.normalize_advantages)
    clip = ppo_clip_loss(logp, chunks.log_probs, adv, chunks.mask, ppo.clip_eps)
    v_loss = value_loss(out.value, chunks.returns, chunks.mask)
    entropy = mean_entropy(policy.entropy(out.dist), chunks.mask)
    loss = clip.loss + ppo.value_coef * v_loss - ppo.entropy_coef * entropy
    return PPOTerms(loss, clip, v_loss, entropy)


def ppo_update(
    policy: RecurrentPolicy,
    params: Params,
    optimizer: torch.optim.Optimizer,
    chunks: TrialChunks,
    cfg: RL2Config,
    generator: torch.Generator,
    split: tuple[range, int] | None = None,
) -> dict[str, Tensor | float]:
    """PPO-clip epochs over minibatches of whole trials (Schulman et al. 2017, Alg. 1).

    Each epoch shuffles the trials (``chunks`` ``[N, C, T, ...]``) into ``algo.num_minibatches``
    minibatches, as cleanrl's ``ppo_atari_lstm.py`` splits by environment; a minibatch runs all
    chunks of its trials as sequences from their stored initial states (truncated BPTT) through
    :func:`ppo_loss`, and ``optimizer`` (Adam over ``params``) updates ``params`` in place. The
    gradient norm is clipped to ``algo.max_grad_norm`` over all parameters, or over the policy's
    and the value's apart (``ppo.clip_value_separately``).

    Data parallel: ``split`` = (this rank's trials, all trials), see :func:`.minibatch_steps`.

    Returns:
        The last minibatch's losses and diagnostics, detached.
    """
    ppo = section(cfg.ppo, "ppo")
    groups = _clip_groups(policy, params, ppo)
    if split is not None:  # advantages normalised by minibatch_steps; ppo_loss must not redo it
        algo = dataclasses.replace(cfg.algo, normalize_advantages=False)
        plain = dataclasses.replace(cfg, algo=algo)

        def parts(mb: TrialChunks) -> list[Tensor]:
            terms = ppo_loss(policy, chunk_forward(policy, params, mb), mb, plain)
            return [terms.loss, terms.clip.loss, terms.value, terms.entropy, *terms.clip[1:]]

        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        step = functools.partial(_adam_step, optimizer, groups=groups, summed=True)
        args = (cfg.algo.num_minibatches, ppo.epochs, generator, cfg.algo.normalize_advantages)
        step = functools.partial(step, max_norm=cfg.algo.max_grad_norm)
        return {**minibatch_steps(chunks, split, *args, parts, step, names)}
    for _ in range(ppo.epochs):
        for trials in minibatches(chunks, cfg.algo.num_minibatches, generator):
            mb = chunks.select(trials)
            terms = ppo_loss(policy, chunk_forward(policy, params, mb), mb, cfg)
            _adam_step(optimizer, terms.loss, groups, cfg.algo.max_grad_norm)
    return {
        "policy_loss": terms.clip.loss.detach(),
        "value_loss": terms.value.detach(),
        "entropy": terms.entropy.detach(),
        "approx_kl": terms.clip.approx_kl,
        "clip_fraction": terms.clip.clip_fraction,
    }


def split_params(policy: RecurrentPolicy, params: Params) -> tuple[Params, Params]:
    """``(policy_params, value_params)``: TRPO steps the first, Adam fits the second."""
    value_names = set(policy.value_parameter_names())
    return (
        {k: v for k, v in params.items() if k not in value_names},
        {k: v for k, v in params.items() if k in value_names},
    )


def trpo_update(
    policy: RecurrentPolicy,
    params: Params,
    value_optimizer: torch.optim.Optimizer,
    chunks: TrialChunks,
    cfg: RL2Config,
    generator: torch.Generator,
    split: tuple[range, int] | None = None,
) -> tuple[Params, dict[str, Tensor | float]]:
    """One TRPO step of the policy, then an Adam fit of the value function (RL² §2.4).

    TRPO (:func:`~metarl.rl.trpo.trpo_step`) minimises the surrogate ``-mean(ratio * A)`` over all
    chunks (``[N, C, T, ...]``) within ``mean KL(π_old ‖ π) <= trpo.max_kl``, the value parameters
    (``v.*`` and, with a separate trunk, ``value_gru.*``; :func:`split_params`) held fixed. Then
    ``trpo.value_epochs`` passes of ``value_optimizer`` (Adam over the value parameters) over
    minibatches of trials fit the value to the returns, the policy held fixed.

    Data parallel (``split`` as in :func:`ppo_update`): surrogate and KL are this rank's shares
    of the means over all ranks, summed by TRPO; the value fit runs as PPO's minibatches.

    Returns:
        The new parameters (the value tensors are those of ``params``, updated) and metrics.
    """
    trpo = section(cfg.trpo, "trpo")
    theta, value_params = split_params(policy, params)
    frozen = {k: v.detach() for k, v in value_params.items()}
    flat = chunks.flatten()
    adv = _advantages(flat, cfg.algo.normalize_advantages)
    weight, reduce = 1.0, None
    if split is not None:
        count, mean, std = masked_stats([flat.advantages], [flat.mask])
        if cfg.algo.normalize_advantages:
            adv = normalized(flat.advantages, flat.mask, mean[0], std[0])
        weight = float((flat.mask != 0).sum()) / float(count[0])
        reduce = distributed.all_reduce_sum_
    with torch.no_grad():
        old = chunk_forward(policy, params, flat).dist

    def loss_and_kl(candidate: Params) -> tuple[Tensor, Tensor]:
        out = chunk_forward(policy, {**frozen, **candidate}, flat)
        ratio = torch.exp(policy.log_prob(out.dist, flat.actions) - flat.log_probs)
        surrogate = -masked_mean(ratio * adv, flat.mask)
        kl = masked_mean(policy.kl(old, out.dist), flat.mask)
        return (surrogate, kl) if reduce is None else (surrogate * weight, kl * weight)

    step = trpo_step(
        loss_and_kl,
        None,
        theta,
        **trpo.step_kwargs(),
        reduce=reduce,
    )
    new_theta = step.new_params
    if split is not None:

        def fit(mb: TrialChunks) -> list[Tensor]:
            out = chunk_forward(policy, {**new_theta, **value_params}, mb)
            v = value_loss(out.value, mb.returns, mb.mask)
            return [v, v]

        group = [list(value_params.values())]
        fit_step = functools.partial(_adam_step, value_optimizer, groups=group, summed=True)
        fit_step = functools.partial(fit_step, max_norm=cfg.algo.max_grad_norm)
        args = (cfg.algo.num_minibatches, trpo.value_epochs, generator, False)
        v_loss = minibatch_steps(chunks, split, *args, fit, fit_step, ("value_loss",))["value_loss"]
        stats: dict[str, Tensor | float] = {"surrogate": step.loss_before, "kl": step.kl}
        stats.update(step_frac=step.step_frac, value_loss=v_loss)
        return {**new_theta, **value_params}, stats
    for _ in range(trpo.value_epochs):
        for trials in minibatches(chunks, cfg.algo.num_minibatches, generator):
            mb = chunks.select(trials)
            out = chunk_forward(policy, {**new_theta, **value_params}, mb)
            v_loss = value_loss(out.value, mb.returns, mb.mask)
            _adam_step(
                value_optimizer, v_loss, [list(value_params.values())], cfg.algo.max_grad_norm
            )
    metrics: dict[str, Tensor | float] = {
        "surrogate": step.loss_before,
        "kl": step.kl,
        "step_frac": step.step_frac,
    }
    return {**new_theta, **value_params}, {**metrics, "value_loss": v_loss.detach()}

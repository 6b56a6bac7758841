"""MAML for RL: MAML-TRPO (Finn et al. 2017, Alg. 3), MAML-PPO and ProMP (Rothfuss et al. 2019).

Each meta-iteration (:meth:`MAMLRLExperiment.update`) follows Alg. 3:

1. sample a meta-batch of tasks; per inner step, sample episodes with the current policy (θ, then
   the per-task θ'_i), fit the linear feature baseline per task (rllab's
   ``linear_feature_baseline.py``, as in cbfinn/maml_rl) and take one policy-gradient step
   ``θ'_i = θ - α ∇θ L_i(θ)`` for every task at once (:func:`adapt_policy`);
2. sample post-update episodes with the adapted θ'_i (these sampling policies, θ'_i(θ_old), are
   kept in the :class:`MetaBatch`: they are the old policies of the outer update, not recomputed);
3. update θ on the post-update objective with θ'_i(θ) recomputed through the inner loop
   (:func:`outer_objective`): TRPO with a trust region on the mean KL of the adapted policies
   (``maml_trpo``), or Adam epochs on the PPO-clip surrogate (``maml_ppo``) plus ProMP's
   inner-KL penalty (``promp``).

Configuration lives in :mod:`metarl.algorithms.maml_rl_config`; evaluation (the MAML test
protocol of cbfinn/maml_rl's ``maml_examples/test_maml_*.py``, beside pretrained, random-init and
SB3-oracle baselines) and the command-line entry points in :mod:`metarl.algorithms.maml_rl_eval`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.core import Task
from envs.vector import TaskVectorEnv
from metarl import distributed, driver
from metarl.algorithms.maml_rl_config import (
    CONFIG_CLASS,
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    MAMLRLConfig,
    OptimConfig,
    PolicyConfig,
)
from metarl.algorithms.maml_rl_inner import (
    TaskData,
    adapt_policy,
    adapted_output,
    gauss_newton_fvp_fn,
    inner_loss,
    prepare_episodes,
)
from metarl.checkpoint import capture_rng_state, restore_rng_state
from metarl.config_sections import section
from metarl.functional import Params
from metarl.rl.context import ContextPolicy
from metarl.rl.parallel import owned, sum_grads_, weighted_sum
from metarl.rl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    MLPPolicy,
    PolicyOutput,
    policy_forward,
)
from metarl.rl.ppo import ppo_clip_loss, promp_loss
from metarl.rl.returns import masked_mean
from metarl.rl.sampler import sample_episodes
from metarl.rl.success import SuccessRecorder, episode_success_rate
from metarl.rl.trpo import ReduceFn, trpo_step
from metarl.runs import Run

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "MAMLRLConfig",
    "MAMLRLExperiment",
    "MetaParams",
    "MetaBatch",
    "OptimConfig",
    "OuterTerms",
    "PolicyConfig",
    "TaskData",
    "adapt_policy",
    "build_policy",
    "collect_meta_batch",
    "init_lrs",
    "init_params",
    "inner_loss",
    "make_env",
    "old_outputs",
    "outer_objective",
    "outer_update",
    "prepare_episodes",
    "train",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# maths: advantages, inner loss, adaptation, outer objective
# ----------------------------------------------------------------------------------------------


def _task_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Masked mean per task over ``[E, H]``, then the mean over tasks: 0-d."""
    return masked_mean(x, mask, dim=(1, 2)).mean()


class OuterTerms(NamedTuple):
    """The post-update objective at some θ (each 0-d).

    Attributes:
        surrogate: ``-mean_i mean_t [π_θ'_i(a|s) / π_old(a|s) · A]``, TRPO's loss.
        kl: ``mean_i mean_t KL(π_old,i ‖ π_θ'_i)`` on the post-update observations.
        clipped: PPO-clip loss of the adapted policies, plus ProMP's inner-KL penalty (TRPO:
            the surrogate).
    """

    surrogate: Tensor
    kl: Tensor
    clipped: Tensor


def outer_objective(
    policy: MLPPolicy,
    params: Params,
    inner: Sequence[TaskData],
    valid: TaskData,
    old: Sequence[PolicyOutput],
    cfg: MAMLRLConfig,
    learned: Params | None = None,
) -> OuterTerms:
    """The post-update objective of θ, with θ'_i(θ) recomputed through the inner loop.

    Args:
        policy: The policy module.
        params: θ.
        inner: Pre-update batches ``[T, E, H, ...]``, one per inner step.
        valid: Post-update batch ``[T, E, H, ...]`` sampled with θ'_i(θ_old).
        old: The policies at θ_old on each inner batch, then on ``valid`` (:func:`old_outputs`).
        cfg: The experiment config (its inner loop, PPO clip and ProMP settings).
        learned: Meta-SGD's learned step sizes (:func:`init_lrs`), None for ``inner.lr``.

    Returns:
        :class:`OuterTerms`.
    """
    path, out = adapted_output(policy, params, inner, valid, cfg, learned)
    logp = policy.log_prob(out, valid.actions)
    surrogate = -_task_mean(torch.exp(logp - valid.log_probs) * valid.advantages, valid.mask)
    kl = _task_mean(policy.kl(old[-1], out), valid.mask)
    args = (logp, valid.log_probs, valid.advantages, valid.mask)
    if cfg.ppo is None:  # TRPO: no clipped objective; its field repeats the surrogate
        clipped = surrogate
    elif cfg.algo.name == "promp" and inner:  # KL(π_old ‖ π_θ) of each pre-update policy (Eq. 13)
        inner_kl = torch.stack(
            [
                _task_mean(policy.kl(old[k], policy_forward(policy, path[k], d.obs, k > 0)), d.mask)
                for k, d in enumerate(inner)
            ]
        )
        coeff = section(cfg.promp, "promp").inner_kl_coeff
        clipped = promp_loss(*args, inner_kl, clip_eps=cfg.ppo.clip_eps, inner_kl_coeff=coeff).loss
    else:
        clipped = ppo_clip_loss(*args, cfg.ppo.clip_eps, per_task=True).loss
    return OuterTerms(surrogate, kl, clipped)


@torch.no_grad()
def old_outputs(
    policy: MLPPolicy, adapted: Sequence[Params], inner: Sequence[TaskData], valid: TaskData
) -> list[PolicyOutput]:
    """The policies at θ_old on each inner batch, then (adapted) on ``valid``; detached constants.

    Args:
        policy: The policy module.
        adapted: ``[θ_old, θ'_1, ..., θ'_K]`` from :func:`adapt_policy` at θ_old (the sampling
            policies, :attr:`MetaBatch.adapted`), computed once per meta-iteration.
        inner: Pre-update batches ``[T, E, H, ...]``, one per inner step.
        valid: Post-update batch ``[T, E, H, ...]``.

    Returns:
        One :class:`PolicyOutput` per batch of ``[*inner, valid]``.

    Raises:
        ValueError: If ``adapted`` does not hold one more entry than ``inner``.
    """
    if len(adapted) != len(inner) + 1:
        raise ValueError(f"adapted has {len(adapted)} entries for {len(inner)} inner steps")
    batches = [*inner, valid]
    outs = [
        policy_forward(policy, p, d.obs, k > 0)
        for k, (p, d) in enumerate(zip(adapted, batches, strict=True))
    ]
    return [o.apply(Tensor.detach) for o in outs]


# ----------------------------------------------------------------------------------------------
# the driver (Alg. 3)
# ----------------------------------------------------------------------------------------------


class MetaBatch(NamedTuple):
    """One meta-iteration's episodes.

    Attributes:
        inner: Pre-update batches, one per inner step (sampled with θ, then θ'_i).
        valid: The post-update batch, sampled with the adapted θ'_i.
        returns: Mean episode return of each batch (inner ones, then post-update), 0-d each.
        adapted: The sampling policies ``[θ, θ'_1, ..., θ'_K]`` (detached, first order): θ'_i
            at θ_old, constant through the outer update (:func:`old_outputs`).
        seconds: Wall time of ``sampling`` (env and policy) and ``adaptation`` (baselines,
            advantages, inner steps).
    """

    inner: list[TaskData]
    valid: TaskData
    returns: list[Tensor]
    adapted: list[Params]
    seconds: dict[str, float]


def collect_meta_batch(
    cfg: MAMLRLConfig,
    policy: MLPPolicy,
    params: Params,
    vec: TaskVectorEnv,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    generator: torch.Generator,
    device: torch.device,
    learned: Params | None = None,
    rows: tuple[int, int] | None = None,
) -> MetaBatch:
    """Samples with θ, adapts per task, ..., samples with θ'_i (Alg. 3, lines 3-8).

    Args:
        cfg: The experiment config.
        policy: The policy module.
        params: θ (copied, detached).
        vec: Vector env of ``len(tasks) * env.episodes_per_task`` sub-envs.
        tasks: The meta-batch.
        seeds: Env reset seeds, ``inner.steps + 1`` of them.
        generator: Draws the action noise.
        device: Where the policy runs.
        learned: Meta-SGD's learned step sizes (detached here), None for ``inner.lr``.
        rows: ``(offset, total)`` of these sub-envs in a meta-batch split over ranks (None: all
            of it; :func:`~metarl.rl.sampler.sample_actions`).

    Returns:
        :class:`MetaBatch`.
    """
    # a copy: PPO/ProMP later update θ in place, and the MetaBatch keeps θ_old
    algo, theta = cfg.algo, {name: v.detach().clone() for name, v in params.items()}
    alphas = None if learned is None else {name: v.detach() for name, v in learned.items()}
    path, batches, returns = [theta], [], []
    seconds = {"sampling": 0.0, "adaptation": 0.0}
    for k in range(cfg.inner.steps + 1):
        tic = time.perf_counter()
        batch = sample_episodes(
            vec,
            policy,
            path[-1],
            tasks,
            cfg.env.episodes_per_task,
            per_task_params=k > 0,
            generator=generator,
            device=device,
            seed=seeds[k],
            rows=rows,
        )
        seconds["sampling"] += time.perf_counter() - tic
        tic = time.perf_counter()
        batches.append(prepare_episodes(batch, algo))
        returns.append(batch.episode_returns.mean())
        if k < cfg.inner.steps:  # the estimator of the outer objective, so θ'_i(θ_old) match
            lrs = [cfg.inner.lr] * len(batches)
            estimator = cfg.inner.estimator
            path = adapt_policy(
                policy, theta, batches, lrs, first_order=True, estimator=estimator, learned=alphas
            )
            path = [{name: v.detach() for name, v in p.items()} for p in path]
        seconds["adaptation"] += time.perf_counter() - tic
    return MetaBatch(batches[:-1], batches[-1], returns, path, seconds)


class MetaParams(NamedTuple):
    """θ and Meta-SGD's learned step sizes (None if not learned)."""

    params: Params
    lrs: Params | None


def _unjoint(joint: Params, params: Params, lrs: Params | None) -> tuple[Params, Params | None]:
    """``joint``'s tensors (θ's, then the step sizes') under the names of ``params`` and ``lrs``."""
    values = list(joint.values())
    net = dict(zip(params, values[: len(params)], strict=True))
    return net, None if lrs is None else dict(zip(lrs, values[len(params) :], strict=True))


def outer_update(
    policy: MLPPolicy,
    params: Params,
    optimizer: torch.optim.Optimizer | None,
    batch: MetaBatch,
    cfg: MAMLRLConfig,
    lrs: Params | None = None,
    reduce: ReduceFn | None = None,
    weight: float = 1.0,
) -> tuple[MetaParams, dict[str, Tensor | float]]:
    """TRPO (``optimizer`` None) or PPO/ProMP Adam epochs on ``params`` (Alg. 3, line 10).

    TRPO's trust region spans θ and the learned step sizes ``lrs`` (if any) together.

    Data parallel: ``batch`` holds this rank's tasks, ``weight`` of the meta-batch (its shares are
    its task means times that); ``reduce`` sums TRPO's gradient, HVPs and line-search values, or
    each Adam step's gradient, over the ranks (:func:`metarl.distributed.all_reduce_sum_`).

    Returns:
        The new θ and ``lrs`` (for PPO/ProMP the same tensors, updated in place), and metrics.
    """
    old = old_outputs(policy, batch.adapted, batch.inner, batch.valid)
    objective = functools.partial(
        outer_objective, policy, inner=batch.inner, valid=batch.valid, old=old, cfg=cfg
    )
    if reduce is not None:
        objective = functools.partial(_share, objective, weight)
    if optimizer is None:  # one dict of both groups, θ first: keys "0", "1", ...
        trpo = section(cfg.trpo, "trpo")
        joint = {str(i): v for i, v in enumerate([*params.values(), *(lrs or {}).values()])}

        def joint_objective(theta: Params) -> tuple[Tensor, Tensor]:
            net, learned = _unjoint(theta, params, lrs)
            return objective(net, learned=learned)[:2]

        def joint_output(theta: Params) -> PolicyOutput:
            net, learned = _unjoint(theta, params, lrs)
            return adapted_output(policy, net, batch.inner, batch.valid, cfg, learned)[1]

        # the KL's Hessian at θ_old, where π_old (old[-1]) is the adapted policy itself
        gn = trpo.fvp == "gauss_newton"
        fvp = gauss_newton_fvp_fn(joint_output, batch.valid, weight, trpo.compile) if gn else None

        step = trpo_step(
            joint_objective,
            None,
            joint,
            **trpo.step_kwargs(),
            reduce=reduce,
            fvp=fvp,
        )
        new = {k: v.requires_grad_() for k, v in step.new_params.items()}
        stats: dict[str, Tensor | float] = {"surrogate": step.loss_before, "kl": step.kl}
        return MetaParams(*_unjoint(new, params, lrs)), {**stats, "step_frac": step.step_frac}
    for _ in range(section(cfg.ppo, "ppo").epochs):  # θ'_i(θ) is recomputed at every epoch
        terms = objective(params, learned=lrs)
        optimizer.zero_grad(set_to_none=True)
        terms.clipped.backward()
        if reduce is not None:
            sum_grads_([*params.values(), *(lrs or {}).values()])
        optimizer.step()
    values = [v.detach() for v in terms]
    values = values if reduce is None else weighted_sum(values, 1.0)  # shares already weighted
    return MetaParams(params, lrs), dict(zip(OuterTerms._fields, values, strict=True))


def _share(objective: Any, weight: float, theta: Params, **kwargs: Any) -> OuterTerms:
    """This rank's share of the meta-batch's objective: its task means times ``weight``."""
    return OuterTerms(*(term * weight for term in objective(theta, **kwargs)))


class MAMLRLExperiment:
    """MAML-RL as a :class:`metarl.driver.Experiment`: one meta-iteration of Alg. 3 per update.

    The tasks, env seeds and action noise of iteration ``i`` derive from ``(run.seed, i)``, so a
    resumed run replays the uninterrupted one; the state is θ, step sizes and PPO/ProMP's Adam.

    Args:
        cfg: The experiment config (``inner.steps = 0`` is plain multi-task TRPO/PPO, the
            pretrained baseline).
        policy: The policy module.
        params: θ as leaf tensors (PPO/ProMP update them in place).
        vec: Vector env of ``env.meta_batch_size * env.episodes_per_task`` sub-envs.
        device: Where the policy runs.
        lrs: Meta-SGD's step sizes (:func:`init_lrs`; Adam's second parameter group) or None.
    """

    def __init__(
        self,
        cfg: MAMLRLConfig,
        policy: MLPPolicy,
        params: Params,
        vec: TaskVectorEnv,
        device: torch.device,
        lrs: Params | None = None,
    ) -> None:
        self.cfg, self.policy, self.params, self.vec, self.device = cfg, policy, params, vec, device
        self.lrs = lrs or None
        groups = [{"params": list(g.values())} for g in (params, self.lrs) if g]
        self.opt = (
            None
            if cfg.algo.name in ("maml_trpo", "cavia_trpo")
            else torch.optim.Adam(groups, cfg.optim.lr)
        )
        self.owned = owned(cfg.env.meta_batch_size, "env.meta_batch_size")

    def update(self, iteration: int) -> dict[str, Tensor | float]:
        """Sample with θ, adapt, sample with θ'_i, then the outer update of θ."""
        cfg = self.cfg
        seeds = driver.iteration_seeds(cfg.run.seed, iteration, 8)
        tasks = self.vec.distribution.sample(
            cfg.env.meta_batch_size, np.random.default_rng(seeds[0])
        )
        gen = _generator(seeds[1], self.device)
        # sub-env j of task i seeds its resets with its index i * E + j in the whole meta-batch
        total, first = [n * cfg.env.episodes_per_task for n in (len(tasks), self.owned.start)]
        env_seeds = [seeds[2] + k * total + first for k in range(cfg.inner.steps + 1)]
        rows, reduce = None, None
        if distributed.world().distributed:
            tasks = [tasks[i] for i in self.owned]
            rows, reduce = (first, total), distributed.all_reduce_sum_
        weight = len(self.owned) / cfg.env.meta_batch_size
        # --- sample with θ, adapt per task, sample with θ'_i ---
        recorder = SuccessRecorder(self.vec)  # envs that report info["success"] (Meta-World)
        batch = collect_meta_batch(
            cfg,
            self.policy,
            self.params,
            cast(TaskVectorEnv, recorder),
            tasks,
            env_seeds,
            gen,
            self.device,
            learned=self.lrs,
            rows=rows,
        )
        # --- outer update of θ through the inner loop ---
        tic = time.perf_counter()
        shares = () if reduce is None else (reduce, weight)
        theta, metrics = outer_update(
            self.policy, self.params, self.opt, batch, cfg, self.lrs, *shares
        )
        self.params, self.lrs = theta
        seconds = {**batch.seconds, "outer_update": time.perf_counter() - tic}
        post, pre = weighted_sum([batch.returns[-1], batch.returns[0]], weight)
        metrics.update(post_return=post, pre_return=pre)
        if recorder.records:  # one record per phase: θ, then θ'_i after each inner step
            rates = [episode_success_rate(recorder.records[k]) for k in (0, -1)]
            pre_success, post_success = weighted_sum(rates, weight)
            metrics.update(pre_success=pre_success, post_success=post_success)
        scalars: dict[str, Tensor | float] = {f"train/{k}": v for k, v in metrics.items()}
        scalars.update({f"time/{k}_seconds": v for k, v in seconds.items()})
        return scalars

    def state_dict(self) -> dict[str, Any]:
        """θ, the learned step sizes, the outer optimiser (PPO/ProMP) and the global RNG states."""
        state = {
            "params": {k: v.detach() for k, v in self.params.items()},
            "inner_lrs": {k: v.detach() for k, v in (self.lrs or {}).items()},
            "rng": capture_rng_state(),
        }
        return state if self.opt is None else {**state, "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (θ in place, so the optimiser's references hold)."""
        with torch.no_grad():
            for key, group in (("params", self.params), ("inner_lrs", self.lrs or {})):
                for name, tensor in group.items():
                    tensor.copy_(state[key][name])
        if self.opt is not None:
            self.opt.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])


def train(
    cfg: MAMLRLConfig,
    policy: MLPPolicy,
    params: Params,
    vec: TaskVectorEnv,
    *,
    device: torch.device,
    run: Run | None = None,
    lrs: Params | None = None,
) -> MetaParams:
    """Meta-trains ``params`` (and learned step sizes ``lrs``) for ``cfg.optim.iterations``.

    See :class:`MAMLRLExperiment` for one meta-iteration and :func:`metarl.driver.train` for
    logging, checkpoints, resume (when ``run`` was reopened) and the NaN stop.

    Returns:
        The final θ and step sizes (:class:`MetaParams`), detached.
    """
    exp = MAMLRLExperiment(cfg, policy, params, vec, device, lrs)
    driver.train(exp, cfg.optim.iterations, run=run, settings=cfg.run, desc=cfg.algo.name)
    learned = None if exp.lrs is None else {k: v.detach() for k, v in exp.lrs.items()}
    return MetaParams({k: v.detach() for k, v in exp.params.items()}, learned)


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


def make_env(cfg: MAMLRLConfig, num_tasks: int, episodes_per_task: int) -> TaskVectorEnv:
    """The vector env of ``num_tasks * episodes_per_task`` sub-envs for ``cfg.env``."""
    return cfg.env.make_vec(num_tasks * episodes_per_task)


def build_policy(
    cfg: PolicyConfig,
    vec: TaskVectorEnv,
    generator: torch.Generator,
    device: torch.device,
    extra_inputs: int = 0,
) -> MLPPolicy:
    """A Gaussian MLP policy for Box actions, a categorical MLP for Discrete ones.

    With ``cfg.context_size`` (CAVIA) it reads ``[observation, context]`` (:class:`ContextPolicy`).
    """
    if cfg.context_size:
        inner = build_policy(
            dataclasses.replace(cfg, context_size=0), vec, generator, device, cfg.context_size
        )
        # ContextPolicy has the MLP policies' interface (forward, log_prob, kl, entropy, sample)
        return cast(MLPPolicy, ContextPolicy(inner, cfg.context_size))
    obs_space, space = vec.single_observation_space, vec.single_action_space
    if obs_space.shape is None or space.shape is None:
        raise ValueError(f"the policy needs shaped spaces, got {obs_space} and {space}")
    obs_dim = int(np.prod(obs_space.shape)) + extra_inputs
    if isinstance(space, spaces.Discrete):
        return CategoricalMLPPolicy(
            obs_dim, int(space.n), cfg.hidden, cfg.activation, generator=generator, device=device
        )
    act_dim = int(np.prod(space.shape))
    return GaussianMLPPolicy(
        obs_dim,
        act_dim,
        cfg.hidden,
        cfg.activation,
        cfg.init_std,
        generator=generator,
        device=device,
    )


def init_params(policy: MLPPolicy) -> Params:
    """Fresh leaf copies of the policy's parameters."""
    return {k: v.detach().clone().requires_grad_() for k, v in policy.named_parameters()}


def init_lrs(params: Params, lr: float) -> Params:
    """Meta-SGD for RL (``inner.learn_lr``): one leaf step size per weight of θ, all ``lr``."""
    return {k: torch.full_like(v.detach(), lr).requires_grad_() for k, v in params.items()}


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)

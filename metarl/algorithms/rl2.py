"""RL²: fast reinforcement learning via slow reinforcement learning (Duan et al. 2016).

A GRU policy sees (observation, previous action, previous reward, previous done) and keeps its
state across the episodes of a *trial* (``n`` episodes on one task), reset only when the task
changes; trained by policy gradient on whole trials, its state becomes the learning algorithm.
Each iteration of :func:`train`:

1. sample a batch of tasks and run one trial per task, all in parallel
   (:func:`~metarl.rl.trials.sample_trials`);
2. compute advantages with each trial as one long episode: GAE bootstraps across the episode
   boundaries of a trial and never across trials (:func:`~metarl.rl.trials.trial_gae`);
3. update the policy (:mod:`metarl.algorithms.rl2_update`): :func:`ppo_update`, PPO-clip
   epochs over minibatches of trials with truncated BPTT from the states stored at chunk starts;
   or :func:`trpo_update`, TRPO on the surrogate, then an Adam fit of the value function, as in
   the paper's first-order TRPO with a GRU baseline (Duan et al. 2016, §2.4).

:func:`evaluate` reports the return of every episode index of held-out trials and the total trial
return, beside the classic bandit and MDP baselines of RL²'s Tables 1-2 (Duan et al. 2016,
arXiv 1611.02779).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from envs.vector import TaskVectorEnv
from metarl import distributed, driver
from metarl.algorithms.rl2_config import (
    CONFIG_CLASS,
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    OptimConfig,
    PolicyConfig,
    RL2Config,
    preflight,
)
from metarl.algorithms.rl2_update import (
    PPOTerms,
    ppo_loss,
    ppo_update,
    split_params,
    trpo_update,
)
from metarl.checkpoint import capture_rng_state, restore_rng_state
from metarl.config import config_to_dict
from metarl.config_sections import section
from metarl.functional import Params
from metarl.kinds import EvalRequest
from metarl.rl.evaluation import heldout_tasks
from metarl.rl.parallel import (
    owned,
    weighted_sum,
)
from metarl.rl.recurrent import RecurrentPolicy
from metarl.rl.reward_scale import RewardScaler
from metarl.rl.success import SuccessRecorder, episode_success_rate
from metarl.rl.trials import (
    chunk_trials,
    evaluate_trials,
    sample_trials,
    trial_gae,
)
from metarl.runs import Run, open_run_from_config

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "OptimConfig",
    "PolicyConfig",
    "PPOTerms",
    "RL2Config",
    "RL2Experiment",
    "build_policy",
    "evaluate",
    "evaluate_run",
    "init_params",
    "make_env",
    "ppo_loss",
    "ppo_update",
    "preflight",
    "split_params",
    "train",
    "train_from_config",
    "trpo_update",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------------


def _make_optimizer(
    cfg: RL2Config, policy: RecurrentPolicy, params: Params
) -> torch.optim.Optimizer:
    """Adam over all parameters (PPO) or the value ones (TRPO); foreach: same bits, cheaper."""
    if cfg.algo.name == "rl2_ppo":
        return torch.optim.Adam(list(params.values()), lr=cfg.optim.lr, foreach=True)
    value = list(split_params(policy, params)[1].values())
    return torch.optim.Adam(value, lr=cfg.optim.lr, foreach=True)


class RL2Experiment:
    """RL² as a :class:`metarl.driver.Experiment`: one batch of trials and one update per iteration.

    The tasks, env seeds, action noise and minibatch order of iteration ``i`` derive from
    ``(run.seed, i)``, so a resumed run replays the uninterrupted one.

    Args:
        cfg: The experiment config.
        policy: The recurrent policy.
        params: Its parameters as leaf tensors (updated in place by PPO and the value fit).
        vec: The vector env of :func:`make_env` (``env.num_trials`` sub-envs).
        device: Where the policy runs.
    """

    def __init__(
        self,
        cfg: RL2Config,
        policy: RecurrentPolicy,
        params: Params,
        vec: TaskVectorEnv,
        device: torch.device,
    ) -> None:
        self.cfg, self.policy, self.params, self.vec, self.device = cfg, policy, params, vec, device
        self.opt = _make_optimizer(cfg, policy, params)
        self.owned = owned(cfg.env.num_trials, "env.num_trials")
        self.reward_scale: RewardScaler | None = None
        if cfg.algo.normalize_rewards:
            self.reward_scale = RewardScaler(cfg.algo.gamma, device)

    def update(self, iteration: int) -> dict[str, Tensor | float]:
        """One trial per task, all in parallel; GAE over whole trials; the policy update."""
        cfg, algo, env = self.cfg, self.cfg.algo, self.cfg.env
        seeds = driver.iteration_seeds(cfg.run.seed, iteration, 4)
        tasks = self.vec.distribution.sample(env.num_trials, np.random.default_rng(seeds[0]))
        gen = torch.Generator(device=self.device).manual_seed(seeds[1])
        rows, split, first = None, None, self.owned.start  # trial i's env seeds seeds[2] + i
        if distributed.world().distributed:
            tasks = [tasks[i] for i in self.owned]
            rows, split = (first, env.num_trials), (self.owned, env.num_trials)
        # --- one trial per task, all in parallel ---
        tic = time.perf_counter()
        recorder = SuccessRecorder(self.vec)  # envs that report info["success"] (Meta-World)
        batch = sample_trials(
            cast(TaskVectorEnv, recorder),
            self.policy,
            self.params,
            tasks,
            env.episodes_per_trial,
            generator=gen,
            device=self.device,
            seed=seeds[2] + first,
            chunk_len=algo.bptt_len,
            rows=rows,
        )
        sampled = time.perf_counter()
        # --- advantages over whole trials, then the policy update ---
        rewards = batch.rewards
        if self.reward_scale is not None:  # the whole batch's returns, on every rank
            reduce = None if split is None else distributed.all_reduce_sum_
            self.reward_scale.update(batch.flat(rewards), batch.flat(batch.mask), reduce)
            rewards = self.reward_scale.scale(rewards)
        gae_out = trial_gae(rewards, batch.values, batch.mask, algo.gamma, algo.gae_lambda)
        chunks = chunk_trials(batch, gae_out.advantages, gae_out.returns)
        shares = () if split is None else (split,)
        if algo.name == "rl2_ppo":
            ppo = section(cfg.ppo, "ppo")
            coef = ppo.entropy_coef_at(iteration)  # the scheduled weight of this iteration
            if ppo.entropy_coef_final is not None:
                cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(ppo, entropy_coef=coef))
            metrics = ppo_update(self.policy, self.params, self.opt, chunks, cfg, gen, *shares)
            if ppo.entropy_coef_final is not None:
                metrics["entropy_coef"] = coef
        else:
            args = (self.policy, self.params, self.opt, chunks, cfg, gen, *shares)
            self.params, metrics = trpo_update(*args)
        elapsed = time.perf_counter() - tic
        episodes = batch.episode_returns.mean(0)
        if split is not None:  # mean over this rank's trials -> over all of them
            episodes = torch.stack(weighted_sum(episodes.unbind(), len(tasks) / env.num_trials))
        metrics.update(trial_return=episodes.sum(), first_episode_return=episodes[0])
        metrics["last_episode_return"] = episodes[-1]
        if self.reward_scale is not None:
            metrics["return_scale"] = self.reward_scale.std
        if recorder.records:  # one record per episode of the trials
            rates = [episode_success_rate(recorder.records[k]) for k in (0, -1)]
            first_success, last_success = weighted_sum(rates, len(tasks) / env.num_trials)
            metrics.update(first_episode_success=first_success, last_episode_success=last_success)
        scalars: dict[str, Tensor | float] = {f"train/{k}": v for k, v in metrics.items()}
        scalars["time/sampling_seconds"] = sampled - tic
        scalars["time/update_seconds"] = elapsed - (sampled - tic)
        scalars["time/env_steps_per_second"] = batch.mask.sum() / elapsed
        return scalars

    def state_dict(self) -> dict[str, Any]:
        """Parameters, the Adam state, the reward scale's statistics and the global RNG states."""
        state = {
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizer": self.opt.state_dict(),
            "rng": capture_rng_state(),
        }
        if self.reward_scale is not None:
            state["reward_scale"] = self.reward_scale.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (parameters in place, so the optimiser's references hold)."""
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(state["params"][name])
        self.opt.load_state_dict(state["optimizer"])
        if self.reward_scale is not None:
            if "reward_scale" not in state:
                raise ValueError(
                    "the checkpoint has no reward-scale statistics: it was written without "
                    "algo.normalize_rewards, which cannot be switched on in a resumed run (a "
                    "new run started from it with --init-from can)"
                )
            self.reward_scale.load_state_dict(state["reward_scale"])
        restore_rng_state(state["rng"])


def train(
    cfg: RL2Config,
    policy: RecurrentPolicy,
    params: Params,
    vec: TaskVectorEnv,
    *,
    device: torch.device,
    run: Run | None = None,
) -> Params:
    """Trains ``params`` for ``cfg.optim.iterations`` with the driver loop.

    See :class:`RL2Experiment` for one iteration and :func:`metarl.driver.train` for logging,
    checkpoints, resume (when ``run`` was reopened) and the NaN stop.

    Returns:
        The final parameters (detached).
    """
    exp = RL2Experiment(cfg, policy, params, vec, device)
    driver.train(exp, cfg.optim.iterations, run=run, settings=cfg.run, desc=cfg.algo.name)
    return {k: v.detach() for k, v in exp.params.items()}


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


def make_env(cfg: RL2Config, num_trials: int) -> TaskVectorEnv:
    """The vector env of ``num_trials`` sub-envs (autoreset disabled: trials reset themselves).

    Raises:
        ValueError: If the env has no horizon; ``env.horizon`` must then be set.
    """
    env = cfg.env
    vec = env.make_vec(num_trials, autoreset_mode="disabled")
    if vec.horizon is None:
        vec.close()
        raise ValueError(
            f"env.horizon must be set for {env.id}, which is registered without an episode "
            "length (bandits: 1, one pull per episode)"
        )
    return vec


def build_policy(
    cfg: PolicyConfig, vec: TaskVectorEnv, generator: torch.Generator, device: torch.device
) -> RecurrentPolicy:
    """A GRU policy for the env's spaces: categorical for Discrete, Gaussian for Box actions."""
    return RecurrentPolicy.from_spaces(
        vec.single_observation_space,
        vec.single_action_space,
        hidden_size=cfg.hidden_size,
        head_hidden=cfg.head_hidden,
        activation=cfg.activation,
        separate_value=cfg.value_trunk == "separate",
        init_std=cfg.init_std,
        update_gate_bias=cfg.update_gate_bias,
        readout=cfg.readout,
        generator=generator,
        device=device,
    )


def init_params(policy: RecurrentPolicy) -> Params:
    """Fresh leaf copies of the policy's parameters."""
    return {k: v.detach().clone().requires_grad_() for k, v in policy.named_parameters()}


# ----------------------------------------------------------------------------------------------
# evaluation: return per episode of held-out trials, and classic baselines (RL² Tables 1-2)
# ----------------------------------------------------------------------------------------------


def evaluate(
    cfg: RL2Config,
    params: Params,
    device: torch.device,
    *,
    out: Path,
    num_tasks: int,
    seed: int,
    episodes_per_trial: int | None = None,
    split: str = "test",
    run: Run | None = None,
) -> Path:
    """Trials on held-out tasks: the return of each episode index, beside classic baselines.

    See :func:`~metarl.rl.trials.evaluate_trials` (JSON, CSV and PNG; ``steps`` = the episode
    index within the trial; the total trial return under ``extra.trial_return``).

    Returns:
        The eval JSON path.
    """
    ev = cfg.eval
    if episodes_per_trial is not None and episodes_per_trial < 1:  # 0 must not mean "default"
        raise ValueError(f"episodes_per_trial must be at least 1, got {episodes_per_trial}")
    episodes = episodes_per_trial or ev.episodes_per_trial or cfg.env.episodes_per_trial
    vec = make_env(cfg, min(num_tasks, ev.num_trials or cfg.env.num_trials))
    try:
        generator = torch.Generator(device=device).manual_seed(cfg.run.seed)
        return evaluate_trials(
            out,
            algorithm=cfg.algo.name,
            task_family=cfg.env.id,
            vec=vec,
            policy=build_policy(cfg.policy, vec, generator, device),
            params=params,
            tasks=heldout_tasks(vec.distribution, num_tasks, seed, split),
            episodes_per_trial=episodes,
            seed=seed,
            device=device,
            baselines=ev.baselines,
            extra={"split": split, "eval": config_to_dict(ev)},
            logger=run.logger if run is not None else None,
            curve="rl2",
        )
    finally:
        vec.close()


# ----------------------------------------------------------------------------------------------
# the experiment-kind interface used by the command line (metarl.algorithms.registry)
# ----------------------------------------------------------------------------------------------


def train_from_config(cfg: RL2Config, device: torch.device) -> Path:
    """Trains as ``cfg`` says, evaluates on held-out tasks, returns the eval JSON path."""
    with open_run_from_config(cfg, cfg.run) as run:
        vec = make_env(cfg, len(owned(cfg.env.num_trials, "env.num_trials")))  # this rank's
        try:
            generator = torch.Generator(device=device).manual_seed(cfg.run.seed)
            policy = build_policy(cfg.policy, vec, generator, device)
            params = train(cfg, policy, init_params(policy), vec, device=device, run=run)
        finally:
            vec.close()
        path = evaluate(
            cfg,
            params,
            device,
            out=run.eval_dir / "eval.json",
            num_tasks=cfg.run.num_eval_tasks,
            seed=cfg.run.seed + 1,
        )
        driver.log_evaluation(run, path, cfg.optim.iterations)
        return path


def evaluate_run(cfg: RL2Config, request: EvalRequest) -> Path:
    """Trials on held-out tasks from a run's checkpoint; ``request.steps`` sets the episodes."""
    if request.steps is not None and request.steps < 1:  # metarl eval --steps
        raise ValueError(
            "--steps: an RL² evaluation runs trials of at least one episode (--steps sets the "
            f"episodes per trial), got {request.steps}"
        )
    return evaluate(
        cfg,
        request.state["params"],
        request.device,
        episodes_per_trial=request.steps,
        out=request.out,
        num_tasks=request.num_tasks,
        seed=request.seed,
        split=request.split,
    )

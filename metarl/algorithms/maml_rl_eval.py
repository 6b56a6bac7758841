"""MAML-RL evaluation and the entry points that ``metarl train`` / ``metarl eval`` call.

Evaluation is the MAML test protocol with pretrained, random-init and oracle baselines.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from envs.vector import TaskVectorEnv
from metarl import driver
from metarl.algorithms.maml_rl import (
    _generator,
    adapt_policy,
    build_policy,
    init_lrs,
    init_params,
    make_env,
    prepare_episodes,
    train,
)
from metarl.algorithms.maml_rl_config import CONFIG_CLASS, EvalConfig, MAMLRLConfig, preflight
from metarl.config import config_to_dict
from metarl.functional import Params
from metarl.kinds import EvalRequest
from metarl.rl import evaluation as rl_eval
from metarl.rl.parallel import owned
from metarl.rl.policies import MLPPolicy
from metarl.rl.sampler import EpisodeBatch
from metarl.runs import Run, open_run_from_config

__all__ = ["CONFIG_CLASS", "evaluate", "evaluate_run", "preflight", "train_from_config"]

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# evaluation: the MAML test protocol and its baselines (Finn et al. 2017 §5.3, Figs. 4-5)
# ----------------------------------------------------------------------------------------------


def _vpg_adapter(
    cfg: MAMLRLConfig, policy: MLPPolicy, lr_override: float | None, learned: Params | None = None
) -> rl_eval.AdaptFn:
    """Plain VPG steps with the linear baseline: the MAML test protocol's fine-tuning.

    As in cbfinn/maml_rl ``maml_examples/test_maml_*.py``.

    Step sizes: ``lr_override`` at every step if given, else ``eval.inner_lr`` (default
    ``inner.lr``) then ``eval.later_inner_lr`` (default half of it); Meta-SGD's learned step
    sizes ``learned`` when given.
    """
    first = cfg.inner.lr if cfg.eval.inner_lr is None else cfg.eval.inner_lr
    later = first / 2 if cfg.eval.later_inner_lr is None else cfg.eval.later_inner_lr
    lrs = [first, later] if lr_override is None else [lr_override] * 2

    def adapt_fn(params: Params, batch: EpisodeBatch, step: int) -> Params:
        data = prepare_episodes(batch, cfg.algo)
        path = adapt_policy(
            policy,
            params,
            [data],
            [lrs[min(step, 1)]],
            first_order=True,
            per_task=step > 0,
            learned=learned,
        )
        return {k: v.detach() for k, v in path[-1].items()}

    return adapt_fn


def _train_env(cfg: MAMLRLConfig) -> TaskVectorEnv:
    """The sub-envs of this rank's tasks of a meta-batch (all of them in a one-rank world)."""
    num_tasks = len(owned(cfg.env.meta_batch_size, "env.meta_batch_size"))
    return make_env(cfg, num_tasks, cfg.env.episodes_per_task)


def _pretrain(cfg: MAMLRLConfig, device: torch.device) -> Params:
    """The multi-task policy: this driver with no inner step, from MAML's initialisation."""
    pre = dataclasses.replace(
        cfg,
        inner=dataclasses.replace(cfg.inner, steps=0),
        optim=dataclasses.replace(cfg.optim, iterations=cfg.eval.pretrain_iterations),
    )
    vec = _train_env(cfg)
    try:
        policy = build_policy(cfg.policy, vec, _generator(cfg.run.seed, device), device)
        return train(pre, policy, init_params(policy), vec, device=device).params
    finally:
        vec.close()


def _cache(directory: Path | None, name: str, seed: int) -> Path | None:
    return None if directory is None else directory / f"{name}_seed{seed}.pt"


def _oracle_settings(ev: EvalConfig) -> rl_eval.OracleSettings:
    return rl_eval.OracleSettings(ev.oracle_n_steps, ev.oracle_batch_size, ev.oracle_normalize)


def _oracle_name(ev: EvalConfig) -> str:
    """The oracle's cache name: its budget, and its PPO settings where they are not SB3's."""
    name = f"oracle_ts{ev.oracle_timesteps}"
    settings, sb3 = _oracle_settings(ev), rl_eval.SB3_DEFAULTS
    if (settings.n_steps, settings.batch_size) != (sb3.n_steps, sb3.batch_size):
        name += f"_n{settings.n_steps}_b{settings.batch_size}"
    return name + ("_norm" if settings.normalize else "")


def _baseline_starts(
    cfg: MAMLRLConfig,
    policy: MLPPolicy,
    random_policy: MLPPolicy,
    device: torch.device,
    cache: Path | None,
) -> dict[str, rl_eval.Start]:
    """The pretrained (multi-task) and random initialisations, each with its own step size.

    As cbfinn/maml_rl's test scripts tune them per baseline.
    """
    ev = cfg.eval
    return {
        "pretrained": rl_eval.Start(
            lambda: _pretrain(cfg, device),
            _vpg_adapter(cfg, policy, ev.pretrained_inner_lr),
            _cache(cache, f"pretrained_it{ev.pretrain_iterations}", cfg.run.seed),
        ),
        "random": rl_eval.Start(
            lambda: init_params(random_policy), _vpg_adapter(cfg, policy, ev.random_inner_lr)
        ),
    }


def evaluate(
    cfg: MAMLRLConfig,
    params: Params,
    device: torch.device,
    *,
    out: Path,
    num_tasks: int,
    steps: int,
    seed: int,
    split: str = "test",
    run: Run | None = None,
    baseline_dir: Path | None = None,
    lrs: Params | None = None,
) -> Path:
    """The MAML test protocol on held-out tasks, with baselines; writes JSON, CSV and PNG.

    Curves ``[tasks, steps + 1]``: ``maml`` (from θ) and, with ``eval.baselines``, ``pretrained``
    and ``random`` (fine-tuned the same way, with their own step sizes) and ``oracle``. Baseline
    weights are cached in ``baseline_dir``, so ``metarl eval`` reuses those ``metarl train`` made.
    ``lrs`` are Meta-SGD's learned step sizes (``inner.learn_lr``), used by the ``maml`` curve.

    Returns:
        The eval JSON path.
    """
    ev, episodes = cfg.eval, cfg.eval.episodes_per_task or cfg.env.episodes_per_task
    vec = make_env(cfg, min(num_tasks, cfg.env.meta_batch_size), episodes)
    try:
        policy = build_policy(cfg.policy, vec, _generator(cfg.run.seed, device), device)
        starts = {"maml": rl_eval.Start(lambda: params, _vpg_adapter(cfg, policy, None, lrs))}
        oracle = None
        if ev.baselines:
            random_policy = build_policy(cfg.policy, vec, _generator(seed + 7919, device), device)
            starts.update(_baseline_starts(cfg, policy, random_policy, device, baseline_dir))
        if ev.baselines and ev.oracle:
            oracle = rl_eval.OracleSpec(
                cfg.env.id,
                cfg.env.env_kwargs,
                cfg.env.horizon,
                ev.oracle_timesteps,
                ev.oracle_num_envs,
                cfg.run.seed,
                _cache(baseline_dir, _oracle_name(ev), cfg.run.seed),
                _oracle_settings(ev),
            )
        return rl_eval.evaluate_adaptation(
            out,
            algorithm=cfg.algo.name,
            task_family=cfg.env.id,
            vec=vec,
            policy=policy,
            tasks=rl_eval.heldout_tasks(vec.distribution, num_tasks, seed, split),
            episodes_per_task=episodes,
            starts=starts,
            steps=steps,
            seed=seed,
            device=device,
            oracle=oracle,
            extra={"split": split, "episodes_per_task": episodes, "eval": config_to_dict(ev)},
            logger=run.logger if run is not None else None,
        )
    finally:
        vec.close()


# ----------------------------------------------------------------------------------------------
# the experiment-kind interface used by the command line (metarl.algorithms.registry)
# ----------------------------------------------------------------------------------------------


def train_from_config(cfg: MAMLRLConfig, device: torch.device) -> Path:
    """Meta-trains as ``cfg`` says, evaluates on held-out tasks, returns the eval JSON path."""
    with open_run_from_config(cfg, cfg.run) as run:
        vec = _train_env(cfg)
        try:
            policy = build_policy(cfg.policy, vec, _generator(cfg.run.seed, device), device)
            params = init_params(policy)
            lrs = init_lrs(params, cfg.inner.lr) if cfg.inner.learn_lr else None
            result = train(cfg, policy, params, vec, device=device, run=run, lrs=lrs)
        finally:
            vec.close()
        path = evaluate(
            cfg,
            result.params,
            device,
            out=run.eval_dir / "eval.json",
            num_tasks=cfg.run.num_eval_tasks,
            steps=cfg.eval.steps,
            seed=cfg.run.seed + 1,
            baseline_dir=run.run_dir / "baselines",
            lrs=result.lrs,
        )
        driver.log_evaluation(run, path, cfg.optim.iterations)
        return path


def evaluate_run(cfg: MAMLRLConfig, request: EvalRequest) -> Path:
    """The MAML test protocol on a run's checkpoint, reusing the baselines the run cached."""
    state, run_dir = request.state, request.checkpoint.parent.parent
    return evaluate(
        cfg,
        state["params"],
        request.device,
        lrs=state.get("inner_lrs") or None,
        out=request.out,
        num_tasks=request.num_tasks,
        steps=cfg.eval.steps if request.steps is None else request.steps,
        seed=request.seed,
        split=request.split,
        baseline_dir=run_dir / "baselines",
    )

"""MAML-RL (MAML-TRPO, MAML-PPO, ProMP): meta-gradients, the inner loop, the outer step, learning,
resume, configs and the command line."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env

import envs
from metarl.algorithms import maml_rl as M
from metarl.algorithms.maml_rl import (
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    MAMLRLConfig,
    OptimConfig,
    PolicyConfig,
    TaskData,
)
from metarl.algorithms.maml_rl_config import InnerConfig, PPOConfig, ProMPConfig, TRPOConfig
from metarl.cli import main as cli_main
from metarl.config import ConfigError, RunConfig, load_config, undocumented_fields
from metarl.rl import evaluation as rl_eval
from metarl.rl.policies import GaussianMLPPolicy, policy_forward
from metarl.rl.trpo import flat_grad, flatten_params, make_hvp_fn, trpo_step, unflatten_like
from metarl.runs import NonFiniteLossError, open_run

ROOT = Path(__file__).resolve().parents[3]
CPU = torch.device("cpu")
F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# a tiny problem in float64: a tanh policy on fixed synthetic episodes
# ----------------------------------------------------------------------------------------------


def _policy(hidden=(4,)):
    policy = GaussianMLPPolicy(
        3, 2, hidden, "tanh", 0.8, generator=torch.Generator().manual_seed(0)
    )
    return policy.double()


def _batch(policy, params, per_task, seed, tasks=2, episodes=3, horizon=4):
    """Synthetic episodes [T, E, H]; their log-probs are those of ``params`` (the sampler)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(tasks, episodes, horizon, 3, generator=g, dtype=F64)
    actions = torch.randn(tasks, episodes, horizon, 2, generator=g, dtype=F64)
    adv = torch.randn(tasks, episodes, horizon, generator=g, dtype=F64)
    mask = torch.ones(tasks, episodes, horizon, dtype=F64)
    mask[0, 0, -2:] = 0.0  # one episode terminated early
    with torch.no_grad():
        logp = policy.log_prob(policy_forward(policy, params, obs, per_task), actions)
    return TaskData(obs, actions, adv, mask, logp)


def _meta(name="maml_trpo", inner_kl_coeff=5e-4, **inner):
    """A config with ``algo.name`` and the inner loop ``inner``; other sections as defaults."""
    promp = ProMPConfig(inner_kl_coeff=inner_kl_coeff) if name == "promp" else None
    return MAMLRLConfig(algo=AlgoConfig(name=name), inner=InnerConfig(**inner), promp=promp)


def _problem(algo, inner_steps=1, learn_lr=False):
    """A policy, θ0 and pre-/post-update batches sampled (in spirit) by θ0's inner loop.

    Returns ``(policy, θ0, inner, valid, old, learned)``: ``learned`` are Meta-SGD's step sizes
    (``learn_lr``), else None.
    """
    policy = _policy()
    theta = M.init_params(policy)
    learned = M.init_lrs(theta, algo.inner.lr) if learn_lr else None
    inner = []
    for k in range(inner_steps):
        lrs = [algo.inner.lr] * k
        path = M.adapt_policy(policy, theta, inner, lrs, first_order=True, learned=learned)
        inner.append(_batch(policy, path[-1], k > 0, seed=k))
    lrs, estimator = [algo.inner.lr] * inner_steps, algo.inner.estimator
    kwargs = {"first_order": True, "estimator": estimator, "learned": learned}
    path = M.adapt_policy(policy, theta, inner, lrs, **kwargs)
    path = [{k: v.detach() for k, v in p.items()} for p in path]
    valid = _batch(policy, path[-1], inner_steps > 0, seed=99)
    old = M.old_outputs(policy, path, inner, valid)
    return policy, theta, inner, valid, old, learned


def _flat_fn(fn, like):
    return lambda flat: fn(unflatten_like(flat, like))


@pytest.mark.parametrize(
    ("inner_steps", "learn_lr", "estimator"),
    [(1, False, "reinforce"), (2, False, "reinforce"), (1, True, "reinforce"), (1, False, "lvc")],
)
def test_meta_gradient_matches_finite_differences(inner_steps, learn_lr, estimator):
    algo = _meta(lr=0.3, steps=inner_steps, estimator=estimator)
    policy, theta, inner, valid, old, learned = _problem(algo, inner_steps, learn_lr)
    # θ and the learned step sizes (their own group) as one dict, so one check covers both
    theta0 = {f"params.{k}": v.detach() for k, v in theta.items()}
    theta0.update({f"lrs.{k}": v.detach() for k, v in (learned or {}).items()})

    def surrogate(joint, cfg=algo):
        params = {k[len("params.") :]: v for k, v in joint.items() if k.startswith("params.")}
        lrs = {k[len("lrs.") :]: v for k, v in joint.items() if k.startswith("lrs.")}
        return M.outer_objective(policy, params, inner, valid, old, cfg, lrs or None).surrogate

    flat = flatten_params(theta0).requires_grad_()
    assert torch.autograd.gradcheck(_flat_fn(surrogate, theta0), (flat,), eps=1e-6, atol=1e-7)
    # second order matters here: the first-order meta-gradient is measurably different
    first = dataclasses.replace(algo, inner=dataclasses.replace(algo.inner, first_order=True))
    leaves = {k: v.clone().requires_grad_() for k, v in theta0.items()}
    exact = flat_grad(surrogate(leaves), leaves)
    fo = surrogate(leaves, first)
    assert (flat_grad(fo, leaves) - exact).abs().max() > 1e-3


def test_kl_hessian_vector_product_through_the_inner_step_matches_finite_differences():
    algo = _meta(lr=0.3)
    policy, theta, inner, valid, old, _ = _problem(algo)
    theta0 = {k: v.detach() for k, v in theta.items()}

    def grad_kl(flat):
        params = {k: v.requires_grad_() for k, v in unflatten_like(flat, theta0).items()}
        kl = M.outer_objective(policy, params, inner, valid, old, algo).kl
        return flat_grad(kl, params)

    leaves = {k: v.clone().requires_grad_() for k, v in theta0.items()}
    hvp = make_hvp_fn(M.outer_objective(policy, leaves, inner, valid, old, algo).kl, leaves)
    v = torch.randn(flatten_params(theta0).numel(), generator=torch.Generator().manual_seed(3))
    v = v.to(F64)
    flat, eps = flatten_params(theta0), 1e-5
    fd = (grad_kl(flat + eps * v) - grad_kl(flat - eps * v)) / (2 * eps)
    torch.testing.assert_close(hvp(v), fd, rtol=1e-5, atol=1e-8)
    assert hvp(v).abs().max() > 1e-3  # a non-trivial Fisher matrix


def _autograd_step(policy, params, data, lr):
    """One REINFORCE step of one task as plain ``torch.autograd.grad`` (second order)."""
    loss = M.inner_loss(policy, "reinforce", params, data)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    return {k: v - lr * g for (k, v), g in zip(params.items(), grads, strict=True)}


def test_vmapped_inner_loop_equals_a_per_task_loop():
    algo = _meta(lr=0.3, steps=2)
    policy, theta, inner, _, _, _ = _problem(algo, inner_steps=2)
    path = M.adapt_policy(policy, theta, inner, [0.3, 0.2], first_order=False)
    looped = []
    for t in range(2):
        one = [TaskData(*(x[t] for x in d)) for d in inner]
        params = _autograd_step(policy, theta, one[0], 0.3)
        looped.append(_autograd_step(policy, params, one[1], 0.2))
        for k, value in looped[-1].items():
            torch.testing.assert_close(path[-1][k][t], value, rtol=1e-10, atol=1e-12)
    # and the meta-gradients agree with the loop's
    total = sum(v.pow(2).sum() for v in path[-1].values())
    loop_total = sum(v.pow(2).sum() for p in looped for v in p.values())
    torch.testing.assert_close(flat_grad(total, theta), flat_grad(loop_total, theta))


def test_lvc_and_reinforce_inner_steps_agree_at_the_sampling_policy():
    algo = _meta(lr=0.3)
    policy, theta, inner, _, _, _ = _problem(algo)
    a = M.adapt_policy(policy, theta, inner, [0.3], first_order=True, estimator="reinforce")
    b = M.adapt_policy(policy, theta, inner, [0.3], first_order=True, estimator="lvc")
    for k in a[-1]:
        torch.testing.assert_close(a[-1][k], b[-1][k])


@pytest.mark.parametrize("name", ["maml_ppo", "promp"])
def test_clipped_objectives_equal_the_surrogate_at_the_old_parameters(name):
    algo = _meta(name, lr=0.3)
    policy, theta, inner, valid, old, _ = _problem(algo)
    terms = M.outer_objective(policy, theta, inner, valid, old, algo)
    torch.testing.assert_close(terms.clipped, terms.surrogate)  # ratio 1, inner KL 0
    torch.testing.assert_close(terms.kl, torch.zeros((), dtype=F64), atol=1e-12, rtol=0)


# ProMP and MAML-PPO away from the old parameters, against an independent twin: the policy written
# out by hand, adapted per task with plain autograd, its log-probabilities and KL divergences from
# torch.distributions. At θ_old + δ the ratios leave the clip range and the KL terms are non-zero.


def _hand_dist(params, obs):
    """The tanh policy by hand: a diagonal Normal over actions."""
    h = torch.tanh(obs @ params["net.body.0.weight"].T + params["net.body.0.bias"])
    mean = h @ params["net.head.weight"].T + params["net.head.bias"]
    return torch.distributions.Normal(mean, params["log_std"].exp().expand_as(mean))


def _hand_adapt(theta, data, lr):
    """One REINFORCE step per task as a Python loop over ``torch.autograd.grad``."""
    adapted = []
    for t in range(data.obs.shape[0]):
        logp = _hand_dist(theta, data.obs[t]).log_prob(data.actions[t]).sum(-1)
        mask = data.mask[t]
        loss = -(logp * data.advantages[t] * mask).sum() / mask.sum()
        grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        adapted.append({k: v - lr * g for (k, v), g in zip(theta.items(), grads, strict=True)})
    return adapted


def _hand_terms(theta, theta_old, inner, valid, algo):
    """Surrogate, outer KL and clipped loss of MAML-PPO / ProMP, from their definitions."""
    now = _hand_adapt(theta, inner[0], algo.inner.lr)
    leaves = {k: v.clone().requires_grad_() for k, v in theta_old.items()}
    old = _hand_adapt(leaves, inner[0], algo.inner.lr)
    surrogate, kl, clipped, inner_kl = [], [], [], []
    for t in range(valid.obs.shape[0]):
        mask, adv = valid.mask[t], valid.advantages[t]

        def mean(x, mask=mask):
            return (x * mask).sum() / mask.sum()

        new_dist = _hand_dist(now[t], valid.obs[t])
        ratio = torch.exp(new_dist.log_prob(valid.actions[t]).sum(-1) - valid.log_probs[t])
        old_dist = _hand_dist({k: v.detach() for k, v in old[t].items()}, valid.obs[t])
        surrogate.append(-mean(ratio * adv))
        kl.append(mean(torch.distributions.kl_divergence(old_dist, new_dist).sum(-1)))
        bounded = ratio.clamp(1 - algo.ppo.clip_eps, 1 + algo.ppo.clip_eps)
        clipped.append(-mean(torch.minimum(ratio * adv, bounded * adv)))
        pre_old = _hand_dist(theta_old, inner[0].obs[t])
        pre_new = _hand_dist(theta, inner[0].obs[t])
        inner_mask = inner[0].mask[t]
        pre_kl = torch.distributions.kl_divergence(pre_old, pre_new).sum(-1)
        inner_kl.append((pre_kl * inner_mask).sum() / inner_mask.sum())
    loss = torch.stack(clipped).mean()
    if algo.algo.name == "promp":
        loss = loss + algo.promp.inner_kl_coeff * torch.stack(inner_kl).mean()
    return torch.stack(surrogate).mean(), torch.stack(kl).mean(), loss


def _away_from_old(theta, scale=0.4, seed=5):
    g = torch.Generator().manual_seed(seed)
    return {
        k: (v.detach() + scale * torch.randn(v.shape, generator=g, dtype=F64)).requires_grad_()
        for k, v in theta.items()
    }


@pytest.mark.parametrize("name", ["maml_ppo", "promp"])
def test_clipped_objectives_and_kl_away_from_the_old_parameters_equal_an_independent_twin(name):
    algo = _meta(name, lr=0.3, inner_kl_coeff=0.5)
    policy, theta_old, inner, valid, old, _ = _problem(algo)
    theta_old = {k: v.detach() for k, v in theta_old.items()}
    theta = _away_from_old(theta_old)
    terms = M.outer_objective(policy, theta, inner, valid, old, algo)
    surrogate, kl, clipped = _hand_terms(theta, theta_old, inner, valid, algo)
    torch.testing.assert_close(terms.surrogate, surrogate, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.clipped, clipped, rtol=1e-10, atol=1e-12)
    assert float(kl.detach()) > 1e-2 and not torch.allclose(terms.clipped, terms.surrogate)
    for got, want in zip(
        flat_grad(terms.clipped, theta), flat_grad(clipped, theta), strict=True
    ):  # same meta-gradient, second order through the inner step
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["maml_ppo", "promp"])
def test_clipped_objective_gradient_away_from_the_old_parameters_matches_finite_differences(name):
    algo = _meta(name, lr=0.3, inner_kl_coeff=0.5)
    policy, theta_old, inner, valid, old, _ = _problem(algo)
    theta = {k: v.detach() for k, v in _away_from_old(theta_old).items()}

    def clipped(params):
        return M.outer_objective(policy, params, inner, valid, old, algo).clipped

    flat = flatten_params(theta).requires_grad_()
    assert torch.autograd.gradcheck(_flat_fn(clipped, theta), (flat,), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# on real episodes
# ----------------------------------------------------------------------------------------------


def _cfg(
    env_id="metarl/Navigation2D-v0",
    horizon=20,
    tasks=10,
    episodes=10,
    iterations=12,
    name="maml_trpo",
    trpo=None,
    ppo=None,
):
    return MAMLRLConfig(
        env=EnvConfig(
            id=env_id, horizon=horizon, meta_batch_size=tasks, episodes_per_task=episodes
        ),
        policy=PolicyConfig(hidden=(32, 32)),
        algo=AlgoConfig(name=name),
        inner=InnerConfig(lr=0.5),
        trpo=trpo,
        ppo=ppo,
        optim=OptimConfig(iterations=iterations),
        eval=EvalConfig(baselines=False),
        run=RunConfig(progress=False, checkpoint_every=0, log_backends=("csv",)),
    )


def _meta_batch(cfg, seed=0):
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator().manual_seed(seed), CPU)
    params = M.init_params(policy)
    tasks = vec.distribution.sample(cfg.env.meta_batch_size, np.random.default_rng(seed))
    seeds = [seed, seed + 1000]
    gen = torch.Generator().manual_seed(seed)
    batch = M.collect_meta_batch(cfg, policy, params, vec, tasks, seeds, gen, CPU)
    vec.close()
    return policy, params, batch


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/Bandit-K5-v0"])
def test_trpo_outer_step_respects_the_kl_bound(env_id):
    horizon = 1 if "Bandit" in env_id else 20
    cfg = _cfg(env_id, horizon=horizon, tasks=4, episodes=8, trpo=TRPOConfig(max_kl=0.01))
    policy, params, batch = _meta_batch(cfg)
    (new, _), metrics = M.outer_update(policy, params, None, batch, cfg)
    assert metrics["step_frac"] > 0  # the step was accepted
    # measure the mean KL between the adapted policies before and after, independently
    lrs = [cfg.inner.lr]
    before = M.adapt_policy(policy, params, batch.inner, lrs, first_order=True)[-1]
    after = M.adapt_policy(policy, new, batch.inner, lrs, first_order=True)[-1]
    with torch.no_grad():
        out0 = policy_forward(policy, before, batch.valid.obs, True)
        out1 = policy_forward(policy, after, batch.valid.obs, True)
        kl = torch.distributions.kl_divergence(_torch_dist(out0), _torch_dist(out1))
        if out0.log_std is not None:
            kl = kl.sum(-1)  # independent action dimensions
        mask = batch.valid.mask
        kl = ((kl * mask).sum((1, 2)) / mask.sum((1, 2))).mean()  # per task, then over tasks
    assert 1e-4 < float(kl) <= cfg.trpo.max_kl * (1 + 1e-3)


@pytest.mark.parametrize(
    ("name", "estimator"), [("maml_trpo", "reinforce"), ("maml_ppo", "reinforce"), ("promp", "lvc")]
)
def test_outer_update_with_cached_sampling_policies_equals_recomputing_them(name, estimator):
    """θ'_i(θ_old) is computed once, in collect_meta_batch; the update equals its definition.

    The twin recomputes the old policies through the inner loop at θ_old, as the outer update
    did before it reused the sampling policies, and runs TRPO / the Adam epochs by hand.
    """
    ppo = PPOConfig(epochs=2) if name != "maml_trpo" else None
    cfg = _cfg(tasks=3, episodes=4, horizon=8, name=name, ppo=ppo)
    cfg = dataclasses.replace(cfg, inner=dataclasses.replace(cfg.inner, estimator=estimator))
    if name == "promp":
        cfg = dataclasses.replace(cfg, promp=ProMPConfig())
    policy, params, batch = _meta_batch(cfg)
    lrs = [cfg.inner.lr]
    with torch.no_grad():
        path = M.adapt_policy(
            policy, params, batch.inner, lrs, first_order=True, estimator=estimator
        )
        old = [
            policy_forward(policy, p, d.obs, k > 0)
            for k, (p, d) in enumerate(zip(path, [*batch.inner, batch.valid], strict=True))
        ]
    for cached, fresh in zip(batch.adapted, path, strict=True):
        torch.testing.assert_close(cached, fresh, rtol=0, atol=0)

    def objective(theta):
        return M.outer_objective(policy, theta, batch.inner, batch.valid, old, cfg)

    twin_params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    if name == "maml_trpo":
        trpo = cfg.trpo
        kwargs = dict(max_kl=trpo.max_kl, cg_iters=trpo.cg_iters, cg_damping=trpo.cg_damping)
        kwargs.update(ls_backtrack=trpo.ls_backtrack, ls_steps=trpo.ls_steps)
        want = trpo_step(lambda theta: objective(theta)[:2], None, twin_params, **kwargs)
        want = want.new_params
        (got, _), _ = M.outer_update(policy, params, None, batch, cfg)
    else:
        twin_opt = torch.optim.Adam(twin_params.values(), 1e-3)
        for _ in range(cfg.ppo.epochs):
            twin_opt.zero_grad()
            objective(twin_params).clipped.backward()
            twin_opt.step()
        want = twin_params
        opt = torch.optim.Adam(params.values(), 1e-3)
        (got, _), _ = M.outer_update(policy, params, opt, batch, cfg)
    assert any(not torch.equal(got[k], batch.adapted[0][k]) for k in batch.adapted[0])  # moved
    for k, value in want.items():
        torch.testing.assert_close(got[k].detach(), value.detach(), rtol=0, atol=0)


def _torch_dist(out):
    """torch.distributions' own distribution for a policy output (not our KL helpers)."""
    if out.log_std is None:
        return torch.distributions.Categorical(logits=out.loc)
    return torch.distributions.Normal(out.loc, out.log_std.exp())


def _returns(run_dir, key):
    rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    return np.array([float(r[2]) for r in rows if r[1] == key])


def test_maml_trpo_improves_post_update_returns_on_navigation(tmp_path):
    cfg = _cfg(iterations=12)
    vec = M.make_env(cfg, 10, 10)
    policy = M.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    with open_run(tmp_path / "run", cfg, log_backends=("csv",)) as run:
        M.train(cfg, policy, M.init_params(policy), vec, device=CPU, run=run)
    vec.close()
    pre, post = (
        _returns(tmp_path / "run", "train/pre_return"),
        _returns(tmp_path / "run", "train/post_return"),
    )
    assert len(post) == 12
    assert post[-4:].mean() > pre[-4:].mean() + 1.0  # the inner step helps...
    assert post[-4:].mean() > post[:2].mean() + 1.5  # ...and meta-training made it help more


@pytest.mark.slow
def test_promp_trains_from_the_cli_and_improves_post_update_returns_on_navigation(tmp_path):
    """ProMP (LVC inner step, clipped outer objective with the inner-KL penalty) learns."""
    run_dir = tmp_path / "run"
    sets = [
        "algo.name=promp",
        "trpo=null",
        "inner.estimator=lvc",
        "inner.lr=0.5",
        "ppo.epochs=5",
        "optim.lr=0.01",
        "optim.iterations=12",
        "env.meta_batch_size=10",
        "env.episodes_per_task=10",
        "env.horizon=20",
        "policy.hidden=[32,32]",
        "eval.baselines=false",
        "eval.steps=1",
        "eval.episodes_per_task=2",
        "run.num_eval_tasks=2",
        "run.checkpoint_every=0",
        "run.progress=false",
        "run.log_backends=[csv]",
    ]
    args = ["train", "configs/maml_trpo/navigation2d.yaml", "--run-dir", str(run_dir)]
    assert cli_main([*args, "--seed", "0", *[a for s in sets for a in ("--set", s)]]) == 0
    pre, post = _returns(run_dir, "train/pre_return"), _returns(run_dir, "train/post_return")
    assert len(post) == 12
    assert post[-4:].mean() > pre[-4:].mean() + 1.0  # the inner step helps...
    assert post[-4:].mean() > post[:2].mean() + 1.5  # ...and meta-training made it help more


def _train(cfg, run_dir, resume=False):
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    with open_run(run_dir, cfg, resume=resume, log_backends=("csv",)) as run:
        params = M.train(cfg, policy, M.init_params(policy), vec, device=CPU, run=run).params
    vec.close()
    return params


@pytest.mark.parametrize("name", ["maml_trpo", "maml_ppo"])
def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path, name):
    ppo = None if name == "maml_trpo" else PPOConfig(epochs=2)
    cfg = _cfg(tasks=3, episodes=4, horizon=8, iterations=4, name=name, ppo=ppo)
    full = _train(cfg, tmp_path / "full")
    half = dataclasses.replace(cfg, optim=OptimConfig(iterations=2))
    _train(half, tmp_path / "split")
    resumed = _train(cfg, tmp_path / "split", resume=True)
    for key, value in full.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)
    for run in ("full", "split"):  # every iteration logged once, at its index
        rows = (tmp_path / run / "metrics.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows if ",train/kl," in r] == ["0", "1", "2", "3"]
    full_post = _returns(tmp_path / "full", "train/post_return")
    np.testing.assert_array_equal(_returns(tmp_path / "split", "train/post_return"), full_post)


def test_trpo_steps_the_learned_step_sizes_with_theta_in_one_trust_region():
    """Meta-SGD for RL: the step sizes are their own group, yet TRPO steps both groups at once."""
    cfg = _cfg(tasks=3, episodes=4, horizon=8)
    policy, params, batch = _meta_batch(cfg)
    lrs = M.init_lrs(params, cfg.inner.lr)
    old = M.old_outputs(policy, batch.adapted, batch.inner, batch.valid)

    def objective(joint):  # the twin: both groups in one dict under their own keys
        theta = {k: joint["theta." + k] for k in params}
        alphas = {k: joint["alpha." + k] for k in params}
        return M.outer_objective(policy, theta, batch.inner, batch.valid, old, cfg, alphas)[:2]

    joint = {"theta." + k: v for k, v in params.items()}
    joint.update({"alpha." + k: v for k, v in lrs.items()})
    trpo = cfg.trpo
    kwargs = dict(max_kl=trpo.max_kl, cg_iters=trpo.cg_iters, cg_damping=trpo.cg_damping)
    kwargs.update(ls_backtrack=trpo.ls_backtrack, ls_steps=trpo.ls_steps)
    want = trpo_step(objective, None, joint, **kwargs).new_params
    (got, got_lrs), metrics = M.outer_update(policy, params, None, batch, cfg, lrs)
    assert metrics["step_frac"] > 0 and set(got_lrs) == set(params)
    assert any(not torch.equal(got_lrs[k], lrs[k]) for k in params)  # the step sizes moved
    for k in params:
        torch.testing.assert_close(got[k].detach(), want["theta." + k], rtol=0, atol=0)
        torch.testing.assert_close(got_lrs[k].detach(), want["alpha." + k], rtol=0, atol=0)


def test_non_finite_outer_loss_stops_before_a_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(tasks=2, episodes=2, horizon=5)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, checkpoint_every=1))

    def broken(policy, params, optimizer, batch, algo, lrs=None):
        return M.MetaParams(params, lrs), {"surrogate": torch.tensor(float("nan"))}

    monkeypatch.setattr(M, "outer_update", broken)
    with pytest.raises(NonFiniteLossError, match="train/surrogate"):
        _train(cfg, tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


# ----------------------------------------------------------------------------------------------
# evaluation pieces, configs and the command line
# ----------------------------------------------------------------------------------------------


def test_heldout_tasks_are_seeded_and_use_fixed_test_sets():
    nav = envs.get_task_distribution("metarl/Navigation2D-v0")
    assert rl_eval.heldout_tasks(nav, 5, seed=1) == rl_eval.heldout_tasks(nav, 5, seed=1)
    assert rl_eval.heldout_tasks(nav, 5, seed=1) != rl_eval.heldout_tasks(nav, 5, seed=2)
    directions = rl_eval.heldout_tasks(
        envs.get_task_distribution("metarl/HalfCheetahDir-v0"), 40, 1
    )
    assert {t.direction for t in directions} == {-1.0, 1.0}


def test_task_observation_wrapper_passes_the_sb3_checker():
    import gymnasium as gym

    env = rl_eval.TaskObservationWrapper(gym.make("metarl/Navigation2D-v0", max_episode_steps=5))
    check_env(env, warn=False)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[2:], env.unwrapped.task.goal, rtol=1e-6)


def test_normalized_oracle_learns_and_acts_with_its_saved_observation_statistics():
    """PPO with VecNormalize learns Navigation2D with the goal in its observation; the saved
    state (weights and observation statistics) rebuilds the same policy, and a state saved with
    other settings is refused."""
    settings = rl_eval.OracleSettings(n_steps=64, batch_size=128, normalize=True)
    kwargs = {"env_kwargs": {}, "horizon": 20, "num_envs": 8, "seed": 0, "device": "cpu"}
    nav = "metarl/Navigation2D-v0"
    untrained = rl_eval.train_oracle(nav, total_timesteps=0, settings=settings, **kwargs)
    trained = rl_eval.train_oracle(nav, total_timesteps=6144, settings=settings, **kwargs)
    state = rl_eval.oracle_policy_state(trained)
    assert state[rl_eval.OBS_MEAN].shape == (4,) and state[rl_eval.OBS_VAR].min() > 0
    rebuilt = rl_eval.train_oracle(nav, total_timesteps=0, settings=settings, state=state, **kwargs)
    vec = envs.make_vec(nav, 16, horizon=20)
    tasks = vec.distribution.sample(8, np.random.default_rng(1))
    before = rl_eval.oracle_returns(untrained, vec, tasks, 2, seed=0)
    after = rl_eval.oracle_returns(trained, vec, tasks, 2, seed=0)
    again = rl_eval.oracle_returns(rebuilt, vec, tasks, 2, seed=0)
    vec.close()
    assert after.shape == (8, 1) and after.mean() > before.mean() + 1.0, (before, after)
    np.testing.assert_allclose(again, after, rtol=1e-6)
    plain = rl_eval.oracle_policy_state(rl_eval.train_oracle(nav, total_timesteps=0, **kwargs))
    with pytest.raises(ValueError, match="saved state has no observation statistics, but"):
        rl_eval.train_oracle(nav, total_timesteps=0, settings=settings, state=plain, **kwargs)
    with pytest.raises(ValueError, match="saved state has observation statistics, but"):
        rl_eval.train_oracle(nav, total_timesteps=0, state=state, **kwargs)


def test_every_maml_rl_config_loads_and_bad_keys_are_rejected():
    paths = sorted(
        p for d in ("maml_trpo", "maml_ppo", "promp") for p in (ROOT / "configs" / d).glob("*.yaml")
    )
    meta_world = [p for p in paths if p.name.startswith("metaworld_")]
    assert len(paths) - len(meta_world) == 13 and len(meta_world) == 8
    assert undocumented_fields(MAMLRLConfig) == []
    registered = set(envs.task_env_ids())
    for path in paths:
        cfg = load_config(MAMLRLConfig, path)
        assert cfg.algo.name == path.parent.name
        # Meta-World ids are registered only with the metaworld extra installed
        if path not in meta_world or cfg.env.id in registered:
            assert envs.env_info(cfg.env.id)  # a registered env
    with pytest.raises(ConfigError, match="inner.lrr: unknown key.*did you mean 'inner.lr'"):
        load_config(MAMLRLConfig, paths[0], ["inner.lrr=0.1"])
    with pytest.raises(ConfigError, match="env.horizn: unknown key"):
        load_config(MAMLRLConfig, {"env": {"horizn": 100}})
    with pytest.raises(ConfigError, match="inner.steps: expected int"):
        load_config(MAMLRLConfig, {"inner": {"steps": "one"}})
    with pytest.raises(ConfigError, match="inner.lr must be > 0"):
        load_config(MAMLRLConfig, {"inner": {"lr": -0.1}})
    with pytest.raises(ConfigError, match="algo.inner_lr: renamed to inner.lr"):
        load_config(MAMLRLConfig, {"algo": {"inner_lr": 0.1}})
    with pytest.raises(ConfigError, match="optim.outer_lr: renamed to optim.lr"):
        load_config(MAMLRLConfig, paths[0], ["optim.outer_lr=0.1"])
    with pytest.raises(ConfigError, match="ppo section does not apply to algo.name='maml_trpo'"):
        load_config(MAMLRLConfig, {"algo": {"name": "maml_trpo"}, "ppo": {"epochs": 2}})
    assert load_config(MAMLRLConfig, {"algo": {"name": "promp"}}).ppo.clip_eps == 0.3
    with pytest.raises(ConfigError, match="oracle_n_steps must be > 0, got 0"):
        load_config(MAMLRLConfig, {"eval": {"oracle_n_steps": 0}})


def test_cli_trains_then_evaluates_with_all_four_curves(tmp_path):
    run_dir = tmp_path / "run"
    tiny = [
        "env.horizon=10",
        "env.meta_batch_size=3",
        "env.episodes_per_task=2",
        "policy.hidden=[8]",
        "optim.iterations=2",
        "eval.steps=1",
        "eval.episodes_per_task=2",
        "eval.pretrain_iterations=1",
        "eval.oracle_timesteps=32",
        "eval.oracle_num_envs=2",
        "eval.oracle_normalize=true",
        "run.num_eval_tasks=4",
    ]
    sets = [arg for s in tiny for arg in ("--set", s)]
    args = ["train", "configs/maml_trpo/navigation2d.yaml", "--run-dir", str(run_dir)]
    assert cli_main([*args, "--device", "cpu", *sets]) == 0
    result = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert set(result["baselines"]) == {"pretrained", "random", "oracle"}
    assert len(result["mean"]) == 2
    # Navigation2D reports no info["success"]: no success rows, no success files
    assert "success" not in (run_dir / "metrics.csv").read_text()
    assert not (run_dir / "eval" / "eval_success.json").exists()
    assert cli_main(["eval", str(run_dir), "--num-tasks", "3", "--steps", "1"]) == 0
    result = json.loads((run_dir / "eval" / "eval_test.json").read_text())
    assert result["num_tasks"] == 3 and set(result["baselines"]) == {
        "pretrained",
        "random",
        "oracle",
    }
    cached = sorted(p.name for p in (run_dir / "baselines").glob("*.pt"))  # reused, not retrained
    assert cached == ["oracle_ts32_norm_seed0.pt", "pretrained_it1_seed0.pt"], cached


@pytest.mark.slow
def test_benchmark_script_prints_its_tables(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = [sys.executable, "scripts/bench_maml_rl.py", "--quick", "--iterations", "1"]
    proc = subprocess.run(
        [*args, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| outer_update |" in proc.stdout and "| per-task policies in the loop |" in proc.stdout
    assert json.loads(out.read_text())["ratio"] > 0


def test_benchmark_script_sampling_only_interleaves_the_three_rows(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = [sys.executable, "scripts/bench_maml_rl.py", "--quick", "--sampling-only"]
    proc = subprocess.run(
        [*args, "--rounds", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| per-task policies in the loop |" in proc.stdout and "load average" in proc.stdout
    runs = json.loads(out.read_text())
    assert all(len(runs[k]) == 2 and min(runs[k]) > 0 for k in ("random", "replayed", "policy"))

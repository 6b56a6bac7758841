"""MAML-TRPO's KL products in Gauss-Newton form (trpo.fvp) against the exact double backward."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metarl.algorithms import maml_rl as M
from metarl.algorithms.maml_rl import AlgoConfig, MAMLRLConfig, TaskData
from metarl.algorithms.maml_rl_config import EnvConfig, InnerConfig, PolicyConfig, TRPOConfig
from metarl.config import ConfigError, load_config
from metarl.rl.gauss_newton import gauss_newton_fvp
from metarl.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, policy_forward
from metarl.rl.trpo import flatten_params, make_hvp_fn

F64 = torch.float64
CPU = torch.device("cpu")


def _problem(discrete, inner_steps=1, learn_lr=False, lr=0.3):
    """A float64 policy, θ, synthetic batches sampled (in spirit) by θ's inner loop, old outputs."""
    g = torch.Generator().manual_seed(0)
    if discrete:
        policy = CategoricalMLPPolicy(3, 4, (5,), "tanh", generator=g).double()
    else:
        policy = GaussianMLPPolicy(3, 2, (5,), "tanh", 0.8, generator=g).double()
    theta = M.init_params(policy)
    learned = M.init_lrs(theta, lr) if learn_lr else None
    cfg = MAMLRLConfig(algo=AlgoConfig(), inner=InnerConfig(lr=lr, steps=inner_steps))

    def batch(params, per_task, seed, tasks=3, episodes=2, horizon=5):
        gen = torch.Generator().manual_seed(seed)
        obs = torch.randn(tasks, episodes, horizon, 3, generator=gen, dtype=F64)
        if discrete:
            actions = torch.randint(0, 4, (tasks, episodes, horizon), generator=gen)
        else:
            actions = torch.randn(tasks, episodes, horizon, 2, generator=gen, dtype=F64)
        adv = torch.randn(tasks, episodes, horizon, generator=gen, dtype=F64)
        mask = torch.ones(tasks, episodes, horizon, dtype=F64)
        mask[0, 0, -2:] = 0.0  # one episode ended early
        with torch.no_grad():
            logp = policy.log_prob(policy_forward(policy, params, obs, per_task), actions)
        return TaskData(obs, actions, adv, mask, logp)

    inner = []
    for k in range(inner_steps):
        path = M.adapt_policy(policy, theta, inner, [lr] * k, first_order=True, learned=learned)
        inner.append(batch(path[-1], k > 0, seed=k))
    path = M.adapt_policy(
        policy, theta, inner, [lr] * inner_steps, first_order=True, learned=learned
    )
    path = [{k: v.detach() for k, v in p.items()} for p in path]
    valid = batch(path[-1], inner_steps > 0, seed=99)
    return policy, theta, learned, cfg, M.MetaBatch(inner, valid, [], path, {})


def _joint(theta, learned):
    """θ and the learned step sizes as one dict of leaves ("p.*", "a.*"), as TRPO has them."""
    joint = {f"p.{k}": v.detach().clone().requires_grad_() for k, v in theta.items()}
    joint.update(
        {f"a.{k}": v.detach().clone().requires_grad_() for k, v in (learned or {}).items()}
    )
    return joint


def _split(params):
    net = {k[2:]: v for k, v in params.items() if k.startswith("p.")}
    lrs = {k[2:]: v for k, v in params.items() if k.startswith("a.")}
    return net, lrs or None


def _counted_output(policy, batch, cfg, forward_passes):
    """The adapted outputs as a function of the joint params; each call appends to the list."""

    def output(params):
        forward_passes.append(1)
        net, lrs = _split(params)
        return M.adapted_output(policy, net, batch.inner, batch.valid, cfg, lrs)[1]

    return output


@pytest.mark.parametrize(
    ("discrete", "inner_steps", "learn_lr", "weight"),
    [(False, 1, False, 1.0), (True, 1, False, 1.0), (False, 2, True, 0.25), (True, 0, False, 1.0)],
)
def test_gauss_newton_product_equals_the_double_backward_one(
    discrete, inner_steps, learn_lr, weight
):
    """At θ_old the KL's Hessian through the inner step(s) is exactly J^T F J, from saved graphs."""
    policy, theta, learned, cfg, batch = _problem(discrete, inner_steps, learn_lr)
    old = M.old_outputs(policy, batch.adapted, batch.inner, batch.valid)
    joint = _joint(theta, learned)
    forward_passes = []
    output = _counted_output(policy, batch, cfg, forward_passes)
    net, lrs = _split(joint)
    terms = M.outer_objective(policy, net, batch.inner, batch.valid, old, cfg, lrs)
    assert float(terms.kl.detach()) == 0.0  # the old policy is the adapted policy at θ_old
    exact = make_hvp_fn(terms.kl * weight, joint)
    product = M.gauss_newton_fvp_fn(output, batch.valid, weight)(joint)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(flatten_params(joint).numel(), generator=gen, dtype=F64)
        forward_passes.clear()
        want, got = exact(v), product(v)
        assert not forward_passes  # the product reads saved graphs, it never re-runs the policy
        assert want.norm() > 1e-3  # a non-trivial Fisher matrix
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12 * float(want.norm()))


@pytest.mark.parametrize(
    ("discrete", "inner_steps", "learn_lr"), [(False, 1, False), (True, 2, True)]
)
def test_the_compiled_gauss_newton_product_equals_the_eager_one_through_the_inner_step(
    monkeypatch, discrete, inner_steps, learn_lr
):
    """trpo.compile: the same matrix as the eager product, read from graphs built once.

    Two graphs are compiled (the adapted outputs and their reverse-mode product, each run once
    under autograd); the products are their backward passes, so the policy never runs again.
    """
    compiled_fns = []
    compile_fn = torch.compile

    def spy(fn, **kwargs):
        compiled_fns.append(fn)
        return compile_fn(fn, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    policy, theta, learned, cfg, batch = _problem(discrete, inner_steps, learn_lr)
    joint = _joint(theta, learned)
    forward_passes = []
    output = _counted_output(policy, batch, cfg, forward_passes)

    eager = M.gauss_newton_fvp_fn(output, batch.valid, 0.5)(joint)
    compiled = M.gauss_newton_fvp_fn(output, batch.valid, 0.5, compile=True)(joint)
    assert len(compiled_fns) == 2  # the outputs and u -> J^T u, built once
    gen = torch.Generator().manual_seed(6)
    for _ in range(2):
        v = torch.randn(flatten_params(joint).numel(), generator=gen, dtype=F64)
        want = eager(v)
        assert want.norm() > 1e-3
        forward_passes.clear()
        got = compiled(v)
        assert not forward_passes  # a product runs no forward pass of the policy
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12 * float(want.norm()))
    assert len(compiled_fns) == 2


def test_trpo_compile_needs_the_gauss_newton_product():
    from metarl.algorithms.maml_rl_config import TRPOConfig

    assert TRPOConfig(fvp="gauss_newton", compile=True).compile
    with pytest.raises(ValueError, match="trpo.compile needs trpo.fvp: gauss_newton"):
        TRPOConfig(compile=True)


def test_gauss_newton_fvp_is_the_hessian_of_a_kl_at_its_minimum():
    """A plain model: f = tanh(W x), KL of softmax outputs to fixed ones equal at W0."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=gen, dtype=F64)
    w0 = {"w": torch.randn(4, 3, generator=gen, dtype=F64)}
    old = torch.log_softmax(torch.tanh(x @ w0["w"].T), -1).detach()

    def kl(params):
        new = torch.log_softmax(torch.tanh(x @ params["w"].T), -1)
        return (old.exp() * (old - new)).sum(-1).mean()

    def fisher(outs, tangents):
        p = torch.softmax(outs[0], -1)
        pt = p * tangents[0]
        return ((pt - p * pt.sum(-1, keepdim=True)) / x.shape[0],)

    leaves = {"w": w0["w"].clone().requires_grad_()}
    exact = make_hvp_fn(kl(leaves), leaves)
    product = gauss_newton_fvp(lambda p: (torch.tanh(x @ p["w"].T),), leaves, fisher)
    v = torch.randn(12, generator=gen, dtype=F64)
    torch.testing.assert_close(product(v), exact(v), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="vector must have shape"):
        product(torch.zeros(11, dtype=F64))


def _meta_batch64(cfg):
    """A sampled meta-batch, then the policy and the batch in float64."""
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    params = M.init_params(policy)
    tasks = vec.distribution.sample(cfg.env.meta_batch_size, np.random.default_rng(0))
    gen = torch.Generator().manual_seed(0)
    batch = M.collect_meta_batch(cfg, policy, params, vec, tasks, [0, 1000], gen, CPU)
    vec.close()

    def f64(t):
        return t.double() if t.is_floating_point() else t

    inner = [TaskData(*map(f64, b)) for b in batch.inner]
    adapted = [{k: f64(v) for k, v in p.items()} for p in batch.adapted]
    batch = M.MetaBatch(inner, TaskData(*map(f64, batch.valid)), [], adapted, {})
    return policy.double(), {k: f64(v.detach()).requires_grad_() for k, v in params.items()}, batch


@pytest.mark.parametrize(
    ("env_id", "horizon", "learn_lr"),
    [
        ("metarl/Navigation2D-v0", 20, False),
        ("metarl/Navigation2D-v0", 20, True),
        ("metarl/Bandit-K5-v0", 1, False),
    ],
)
def test_trpo_step_with_gauss_newton_products_equals_the_double_backward_one(
    env_id, horizon, learn_lr
):
    """The whole outer update (CG, step length, line search) in float64: θ agrees to 1e-5.

    In float32 the 10 CG iterations at damping 1e-5 are dominated by rounding on these problems
    (either product's float32 direction is 10-60% away from the float64 one), so the step is
    pinned in float64, where both products are exact up to rounding.
    """
    env = EnvConfig(id=env_id, horizon=horizon, meta_batch_size=4, episodes_per_task=8)
    base = MAMLRLConfig(env=env, policy=PolicyConfig(hidden=(32, 32)), inner=InnerConfig(lr=0.5))
    policy, params, batch = _meta_batch64(base)
    results = {}
    variants = [("double_backward", "product"), ("gauss_newton", "product"), ("gauss_newton", "cg")]
    for fvp, curvature in variants:  # sT H s from one more product, or from CG's residual
        cfg = dataclasses.replace(base, trpo=TRPOConfig(fvp=fvp, step_curvature=curvature))
        lrs = M.init_lrs(params, 0.5) if learn_lr else None
        (new, new_lrs), metrics = M.outer_update(policy, params, None, batch, cfg, lrs)
        new = {**new, **{f"lr.{k}": v for k, v in (new_lrs or {}).items()}}
        results[fvp, curvature] = (new, metrics)
    db, db_metrics = results["double_backward", "product"]
    for variant in variants[1:]:
        gn, gn_metrics = results[variant]
        assert gn_metrics["step_frac"] == db_metrics["step_frac"] > 0
        assert any(not torch.equal(gn[k], params[k]) for k in params)  # it moved
        for k in db:
            torch.testing.assert_close(gn[k].detach(), db[k].detach(), rtol=1e-5, atol=1e-5)


def test_fvp_setting_is_checked():
    with pytest.raises(ConfigError, match="fvp"):
        load_config(M.MAMLRLConfig, "configs/maml_trpo/navigation2d.yaml", ["trpo.fvp=newton"])
    cfg = load_config(
        M.MAMLRLConfig, "configs/maml_trpo/navigation2d.yaml", ["trpo.fvp=gauss_newton"]
    )
    assert cfg.trpo is not None and cfg.trpo.fvp == "gauss_newton"
    assert TRPOConfig().fvp == "double_backward"  # the recorded (golden) numbers
    assert TRPOConfig().step_curvature == "product"  # the recorded numbers too
    with pytest.raises(ConfigError, match="step_curvature"):
        load_config(
            M.MAMLRLConfig, "configs/maml_trpo/navigation2d.yaml", ["trpo.step_curvature=exact"]
        )


@pytest.mark.parametrize("compile", [False, True])
def test_gauss_newton_fvp_of_outputs_that_ignore_a_param(compile):
    """J is zero in the columns of a param the outputs do not use, and zero for constant outputs."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    leaves = {
        "w": torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_(),
        "unused": torch.randn(4, generator=gen, dtype=F64).requires_grad_(),
    }

    def fisher(outs, tangents):
        return tuple(2.0 * t for t in tangents)

    v = torch.randn(10, generator=gen, dtype=F64)
    product = gauss_newton_fvp(lambda p: (torch.tanh(x @ p["w"].T),), leaves, fisher, compile)
    jac = torch.autograd.functional.jacobian(
        lambda w: torch.tanh(x @ w.T).reshape(-1), leaves["w"].detach()
    ).reshape(10, 6)
    want = torch.cat([2.0 * jac.T @ (jac @ v[:6]), torch.zeros(4, dtype=F64)])
    torch.testing.assert_close(product(v), want, rtol=1e-10, atol=1e-12)
    constant = gauss_newton_fvp(lambda p: (x.clone(),), leaves, fisher, compile)
    torch.testing.assert_close(constant(v), torch.zeros(10, dtype=F64))

"""CG, Hessian-vector products and the TRPO step on problems with known answers."""

import math

import pytest
import torch
from torch.testing import assert_close

from metarl.rl import (
    conjugate_gradient,
    diag_gaussian_kl,
    diag_gaussian_log_prob,
    flat_grad,
    flatten_params,
    hessian_vector_product,
    make_hvp_fn,
    trpo_step,
    unflatten_like,
)

F64 = torch.float64


def _spd(n, seed, cond=10.0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    eig = torch.logspace(0, math.log10(cond), n, dtype=F64)
    return q @ torch.diag(eig) @ q.T


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(2, 2, generator=gen, dtype=F64),
        "b": torch.randn(3, generator=gen, dtype=F64),
    }


# ----------------------------------------------------------------------------------------------
# Flat-vector helpers
# ----------------------------------------------------------------------------------------------


def test_flatten_unflatten_round_trip():
    params = _params()
    flat = flatten_params(params)
    assert flat.shape == (7,)
    assert_close(flat[:4], params["w"].reshape(-1))
    back = unflatten_like(flat, params)
    assert list(back) == ["w", "b"]
    for name in params:
        assert torch.equal(back[name], params[name])
    with pytest.raises(ValueError, match="flat"):
        unflatten_like(torch.zeros(6, dtype=F64), params)


def test_flat_grad_zero_for_unused_parameters():
    params = {k: v.requires_grad_(True) for k, v in _params().items()}
    g = flat_grad((params["b"] ** 2).sum(), params)
    assert_close(g, torch.cat([torch.zeros(4, dtype=F64), 2 * params["b"].detach()]))
    with pytest.raises(ValueError, match="output"):
        flat_grad(params["b"] * 2, params)


# ----------------------------------------------------------------------------------------------
# Conjugate gradient
# ----------------------------------------------------------------------------------------------


def test_conjugate_gradient_solves_spd_system():
    a = _spd(8, seed=1)
    b = torch.randn(8, generator=torch.Generator().manual_seed(2), dtype=F64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=8, residual_tol=1e-20)
    assert_close(x, torch.linalg.solve(a, b), atol=1e-8, rtol=1e-8)
    assert_close(a @ x, b, atol=1e-8, rtol=1e-8)


def test_conjugate_gradient_zero_rhs_and_bad_inputs():
    a = _spd(3, seed=3)
    assert torch.equal(
        conjugate_gradient(lambda v: a @ v, torch.zeros(3, dtype=F64)), torch.zeros(3, dtype=F64)
    )
    with pytest.raises(ValueError, match="b"):
        conjugate_gradient(lambda v: v, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="hvp_fn"):
        conjugate_gradient(lambda v: v[:2], torch.ones(3))
    with pytest.raises(ValueError, match="iters"):
        conjugate_gradient(lambda v: v, torch.ones(3), iters=0)


# ----------------------------------------------------------------------------------------------
# Hessian-vector products
# ----------------------------------------------------------------------------------------------


def test_hvp_equals_explicit_hessian_on_quadratic():
    a = _spd(7, seed=4)
    c = torch.randn(7, generator=torch.Generator().manual_seed(5), dtype=F64)
    params = {k: v.requires_grad_(True) for k, v in _params().items()}
    theta = flatten_params(params)
    f = 0.5 * theta @ a @ theta + c @ theta
    v = torch.randn(7, generator=torch.Generator().manual_seed(6), dtype=F64)
    assert_close(hessian_vector_product(f, params, v), a @ v)
    assert_close(hessian_vector_product(f, params, v, damping=0.1), a @ v + 0.1 * v)


def test_hvp_equals_finite_difference_of_gradients():
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(7), dtype=F64)

    def objective(p):
        return (torch.tanh(x @ p["w"] + p["b"][:2]) ** 2).sum() + torch.exp(p["b"]).sum()

    base = _params(seed=8)
    params = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    v = torch.randn(7, generator=torch.Generator().manual_seed(9), dtype=F64)
    hv = make_hvp_fn(objective(params), params)(v)

    def grad_at(flat):
        p = {k: t.requires_grad_(True) for k, t in unflatten_like(flat, base).items()}
        return flat_grad(objective(p), p)

    eps = 1e-6
    theta = flatten_params(base)
    fd = (grad_at(theta + eps * v) - grad_at(theta - eps * v)) / (2 * eps)
    assert_close(hv, fd, atol=1e-7, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# TRPO step: quadratic KL = 1/2 (theta - theta0)^T F (theta - theta0)
# ----------------------------------------------------------------------------------------------


def _quadratic_kl(fisher, theta0):
    def kl_fn(p):
        d = flatten_params(p) - theta0
        return 0.5 * d @ fisher @ d

    return kl_fn


def test_linear_loss_takes_the_scaled_natural_gradient_step():
    params, fisher = _params(), _spd(7, seed=10)
    theta0 = flatten_params(params)
    g = torch.randn(7, generator=torch.Generator().manual_seed(11), dtype=F64)
    damping, max_kl = 1e-5, 0.01
    result = trpo_step(
        lambda p: g @ flatten_params(p),
        _quadratic_kl(fisher, theta0),
        params,
        max_kl=max_kl,
        cg_iters=7,
        cg_damping=damping,
    )
    assert result.accepted and result.step_frac == 1.0
    # Closed form: s = -(F + dI)^-1 g, scaled so that s^T (F + dI) s / 2 = max_kl.
    s = -torch.linalg.solve(fisher + damping * torch.eye(7, dtype=F64), g)
    beta = math.sqrt(2 * max_kl / float(s @ (fisher + damping * torch.eye(7, dtype=F64)) @ s))
    assert_close(flatten_params(result.new_params), theta0 + beta * s, atol=1e-10, rtol=1e-8)
    assert result.kl <= max_kl
    assert_close(result.kl, torch.tensor(max_kl, dtype=F64), rtol=1e-3, atol=0)
    assert_close(result.improvement, g @ (beta * s))
    assert result.new_params["w"].shape == (2, 2)


@pytest.mark.parametrize("cg_iters", [3, 7])
def test_step_curvature_from_cg_takes_the_same_step_with_one_product_fewer(cg_iters):
    # sT H s read from CG's residual (x . (b - r)) instead of one more product: the same step
    # after a partial solve (3 of 7 iterations) and after the full one (the closed form).
    params, fisher = _params(), _spd(7, seed=10, cond=100.0)
    theta0 = flatten_params(params)
    g = torch.randn(7, generator=torch.Generator().manual_seed(11), dtype=F64)
    products = {"product": 0, "cg": 0}
    steps = {}
    for mode in products:

        def fvp(_params, mode=mode):
            def product(v):
                products[mode] += 1
                return fisher @ v

            return product

        steps[mode] = trpo_step(
            lambda p: g @ flatten_params(p),
            _quadratic_kl(fisher, theta0),
            params,
            cg_iters=cg_iters,
            fvp=fvp,
            step_curvature=mode,
        )
    assert products == {"product": cg_iters + 1, "cg": cg_iters}
    new = {mode: flatten_params(step.new_params) for mode, step in steps.items()}
    assert steps["cg"].accepted and steps["cg"].step_frac == steps["product"].step_frac
    assert_close(new["cg"], new["product"], atol=1e-13, rtol=1e-12)
    if cg_iters == 7:
        damped = fisher + 1e-5 * torch.eye(7, dtype=F64)
        s = -torch.linalg.solve(damped, g)
        beta = math.sqrt(2 * 0.01 / float(s @ damped @ s))
        assert_close(new["cg"], theta0 + beta * s, atol=1e-10, rtol=1e-8)


def test_quadratic_loss_with_newton_kl_lands_on_the_optimum():
    # loss = 1/2 (theta - theta*)^T F (theta - theta*): the natural step F^-1 g is the Newton
    # step, and max_kl equal to its KL makes TRPO's full step land exactly on theta*.
    params, fisher = _params(), _spd(7, seed=12)
    theta0 = flatten_params(params)
    target = theta0 + torch.randn(7, generator=torch.Generator().manual_seed(13), dtype=F64) * 0.1
    newton_kl = float(0.5 * (target - theta0) @ fisher @ (target - theta0))

    def loss_fn(p):
        d = flatten_params(p) - target
        return 0.5 * d @ fisher @ d

    result = trpo_step(
        loss_fn,
        _quadratic_kl(fisher, theta0),
        params,
        max_kl=newton_kl,
        cg_iters=7,
        cg_damping=1e-9,
    )
    assert result.accepted and result.step_frac == 1.0
    assert_close(flatten_params(result.new_params), target, atol=1e-7, rtol=1e-7)
    assert result.kl <= newton_kl


def test_huge_max_kl_backtracks_to_first_improving_candidate():
    # With max_kl = 100 x the Newton KL the full step is 10 x the Newton step; a candidate
    # theta0 + c (theta* - theta0) improves the quadratic loss iff 0 < c < 2. c = 10 * 0.8^k
    # first drops below 2 at k = 8 (c = 1.678).
    params, fisher = _params(), _spd(7, seed=14)
    theta0 = flatten_params(params)
    target = theta0 + torch.randn(7, generator=torch.Generator().manual_seed(15), dtype=F64) * 0.1
    newton_kl = float(0.5 * (target - theta0) @ fisher @ (target - theta0))

    def loss_fn(p):
        d = flatten_params(p) - target
        return 0.5 * d @ fisher @ d

    result = trpo_step(
        loss_fn,
        _quadratic_kl(fisher, theta0),
        params,
        max_kl=100 * newton_kl,
        cg_iters=7,
        cg_damping=0.0,
    )
    assert result.accepted
    assert result.step_frac == pytest.approx(0.8**8)
    expected = theta0 + 10 * 0.8**8 * (target - theta0)
    assert_close(flatten_params(result.new_params), expected, atol=1e-8, rtol=1e-6)


def test_kl_bound_enforced_when_the_quadratic_model_underestimates():
    # KL = |d|^2 / 2 + 50 |d|^4 (Hessian I at theta0). The full step has |d| = sqrt(2 max_kl);
    # at fraction f the KL is 0.01 f^2 + 0.02 f^4 <= 0.01 iff f^2 <= 0.5, first met at 0.8^2.
    params = _params()
    theta0 = flatten_params(params)
    g = torch.randn(7, generator=torch.Generator().manual_seed(16), dtype=F64)

    def kl_fn(p):
        sq = ((flatten_params(p) - theta0) ** 2).sum()
        return 0.5 * sq + 50 * sq**2

    result = trpo_step(lambda p: g @ flatten_params(p), kl_fn, params, max_kl=0.01, cg_damping=0.0)
    assert result.accepted
    assert result.step_frac == pytest.approx(0.64)
    assert result.kl <= 0.01
    assert result.improvement < 0


def test_rejects_and_returns_old_params_when_nothing_improves():
    # loss = -x + 10 x^2 improves only for 0 < x < 0.1; every candidate 10 * 0.8^k >= 0.44.
    params = {"x": torch.zeros(1, dtype=F64)}
    before = params["x"].clone()

    def loss_fn(p):
        return (-p["x"] + 10 * p["x"] ** 2).sum()

    result = trpo_step(loss_fn, lambda p: 0.5 * (p["x"] ** 2).sum(), params, max_kl=50.0)
    assert not result.accepted
    assert result.step_frac == 0.0
    assert torch.equal(result.new_params["x"], before)
    assert result.new_params is not params
    assert result.improvement == 0 and result.kl == 0
    assert torch.equal(params["x"], before)


def test_zero_gradient_is_rejected_without_nan():
    params = {"x": torch.ones(2, dtype=F64)}
    result = trpo_step(
        lambda p: ((p["x"] - 1) ** 2).sum(), lambda p: 0.5 * ((p["x"] - 1) ** 2).sum(), params
    )
    assert not result.accepted
    assert torch.equal(result.new_params["x"], params["x"])


# ----------------------------------------------------------------------------------------------
# TRPO step on a Gaussian policy, and through an inner adaptation step
# ----------------------------------------------------------------------------------------------


def _gaussian_problem():
    gen = torch.Generator().manual_seed(17)
    old = {"mean": torch.zeros(2, dtype=F64), "log_std": torch.zeros(2, dtype=F64)}
    actions = torch.randn(256, 2, generator=gen, dtype=F64)
    advantages = actions @ torch.tensor([1.0, -0.5], dtype=F64)  # prefers a0 > 0, a1 < 0
    logp_old = diag_gaussian_log_prob(old["mean"].expand(256, 2), old["log_std"], actions)

    def loss_fn(p):
        logp = diag_gaussian_log_prob(p["mean"].expand(256, 2), p["log_std"], actions)
        return -(torch.exp(logp - logp_old) * advantages).mean()

    def kl_fn(p):
        return diag_gaussian_kl(old["mean"], old["log_std"], p["mean"], p["log_std"])

    return old, loss_fn, kl_fn


def test_gaussian_policy_step_improves_within_the_trust_region():
    old, loss_fn, kl_fn = _gaussian_problem()
    result = trpo_step(loss_fn, kl_fn, old, max_kl=0.01)
    assert result.accepted
    assert 0 < result.kl <= 0.01
    assert result.improvement < 0
    assert result.new_params["mean"][0] > 0 > result.new_params["mean"][1]
    reference = torch.distributions.kl_divergence(
        torch.distributions.Independent(torch.distributions.Normal(old["mean"], 1.0), 1),
        torch.distributions.Independent(
            torch.distributions.Normal(
                result.new_params["mean"], result.new_params["log_std"].exp()
            ),
            1,
        ),
    )
    assert_close(result.kl, reference)


def test_loss_fn_returning_loss_and_kl_pair_gives_the_same_step():
    old, loss_fn, kl_fn = _gaussian_problem()
    separate = trpo_step(loss_fn, kl_fn, old)
    paired = trpo_step(lambda p: (loss_fn(p), kl_fn(p)), None, old)
    for name in old:
        assert_close(paired.new_params[name], separate.new_params[name])
    assert paired.step_frac == separate.step_frac
    with pytest.raises(TypeError, match="pair"):
        trpo_step(loss_fn, None, old)


def test_closures_may_differentiate_through_an_inner_step():
    # MAML-TRPO shape: loss and KL are evaluated at params adapted by one inner gradient step,
    # computed inside the closures with create_graph=True, for every line-search candidate.
    old, loss_fn, kl_fn = _gaussian_problem()

    def adapt(p):
        inner = ((p["mean"] - 0.3) ** 2).sum()
        grads = torch.autograd.grad(inner, list(p.values()), create_graph=True, allow_unused=True)
        return {
            k: v if g is None else v - 0.1 * g for (k, v), g in zip(p.items(), grads, strict=True)
        }

    start = {k: v.clone().requires_grad_(True) for k, v in old.items()}
    adapted_old = {k: v.detach() for k, v in adapt(start).items()}

    def outer_kl(p):
        q = adapt(p)
        return diag_gaussian_kl(
            adapted_old["mean"], adapted_old["log_std"], q["mean"], q["log_std"]
        )

    result = trpo_step(lambda p: loss_fn(adapt(p)), outer_kl, old, max_kl=0.01)
    assert result.accepted and result.improvement < 0 and result.kl <= 0.01


def test_bad_arguments_raise():
    old, loss_fn, kl_fn = _gaussian_problem()
    with pytest.raises(ValueError, match="max_kl"):
        trpo_step(loss_fn, kl_fn, old, max_kl=0.0)
    with pytest.raises(ValueError, match="ls_backtrack"):
        trpo_step(loss_fn, kl_fn, old, ls_backtrack=1.0)
    with pytest.raises(ValueError, match="step_curvature must be one of .*'exact'"):
        trpo_step(loss_fn, kl_fn, old, step_curvature="exact")
    with pytest.raises(TypeError, match="params"):
        trpo_step(loss_fn, kl_fn, {})
    with pytest.raises(ValueError, match="loss_fn"):
        trpo_step(lambda p: p["mean"] * 1.0, kl_fn, old)

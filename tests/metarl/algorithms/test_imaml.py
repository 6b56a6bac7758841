"""iMAML (Rajeswaran et al. 2019): the implicit meta-gradient against the exact gradient.

On a quadratic inner loss the proximal problem has a closed-form solution, so the exact
meta-gradient is plain autograd through ``torch.linalg.solve``; the implicit gradient with as many
CG steps as dimensions must equal it (float64). The learner then learns sinusoid regression in a
few seconds, and bad settings fail with clear errors.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.imaml import (
    conjugate_gradient,
    implicit_meta_gradient,
    proximal_path,
)
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    TaskConfig,
    build_family,
    train,
)
from metarl.algorithms.supervised_config import IMAMLConfig

F64 = torch.float64
CPU = torch.device("cpu")
DIM, TASKS, LAM = 5, 3, 0.7


def _quadratic(seed: int = 0):
    """Per task: inner ½(φ-c)ᵀA(φ-c), outer ½|Mφ - d|², θ shared; the exact φ* and its loss."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(TASKS, DIM, DIM, generator=gen, dtype=F64)
    a = r @ r.transpose(1, 2) / DIM + 0.1 * torch.eye(DIM, dtype=F64)  # SPD
    c = torch.randn(TASKS, DIM, generator=gen, dtype=F64)
    m = torch.randn(TASKS, DIM, DIM, generator=gen, dtype=F64)
    d = torch.randn(TASKS, DIM, generator=gen, dtype=F64)
    theta = torch.randn(DIM, generator=gen, dtype=F64)

    def inner(p, data):
        a_t, c_t = data
        e = p["w"] - c_t
        return 0.5 * e @ a_t @ e

    def outer(p, data):
        m_t, d_t = data
        return 0.5 * ((m_t @ p["w"] - d_t) ** 2).sum()

    def exact_phi(th):  # argmin ½(φ-c)ᵀA(φ-c) + λ/2|φ-θ|²  <=>  (A + λI) φ = A c + λ θ
        lhs = a + LAM * torch.eye(DIM, dtype=F64)
        rhs = (a @ c.unsqueeze(-1)).squeeze(-1) + LAM * th
        return torch.linalg.solve(lhs, rhs)

    return inner, outer, (a, c), (m, d), theta, exact_phi


def test_implicit_gradient_equals_the_exact_gradient_through_the_proximal_solution():
    inner, outer, support, query, theta, exact_phi = _quadratic()
    leaf = theta.clone().requires_grad_()
    phi = exact_phi(leaf)
    exact_loss = sum(outer({"w": phi[i]}, (query[0][i], query[1][i])) for i in range(TASKS))
    (exact,) = torch.autograd.grad(exact_loss, leaf)
    got = implicit_meta_gradient(
        {"w": phi.detach()}, inner, outer, support, query, lam=LAM, cg_steps=DIM
    )
    torch.testing.assert_close(got.grads["w"].sum(0), exact, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got.query_loss.sum(), exact_loss.detach())
    # the first-order approximation (no CG) is measurably different: the test can tell
    first = implicit_meta_gradient(
        {"w": phi.detach()}, inner, outer, support, query, lam=LAM, cg_steps=0
    )
    assert (first.grads["w"].sum(0) - exact).abs().max() > 1e-2


def test_the_proximal_inner_solver_converges_to_the_closed_form_solution():
    inner, _, support, _, theta, exact_phi = _quadratic()
    *_, phi = proximal_path({"w": theta}, inner, support, lam=LAM, lr=0.3, steps=300)
    torch.testing.assert_close(phi["w"], exact_phi(theta), rtol=1e-9, atol=1e-10)


def test_pull_back_descends_the_loss_alone_and_pulls_each_point_back_once():
    """imaml_dev's inner loop: φ_{t+1} = φ_t - lr ∇L(φ_t), each point reported pulled back once."""
    inner, _, support, _, theta, _ = _quadratic()
    a, c = support
    lr, steps = 0.2, 4
    got = list(
        proximal_path({"w": theta}, inner, support, lam=LAM, lr=lr, steps=steps, pull_back=True)
    )
    phi = theta.expand(TASKS, DIM)
    for t in range(steps + 1):
        torch.testing.assert_close(got[t]["w"], phi - lr * LAM * (phi - theta))
        phi = phi - lr * (a @ (phi - c).unsqueeze(-1)).squeeze(-1)
    plain = list(proximal_path({"w": theta}, inner, support, lam=LAM, lr=lr, steps=steps))
    assert (plain[-1]["w"] - got[-1]["w"]).abs().max() > 1e-3  # the two modes differ


def _linear_learner(**imaml):
    cfg = SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=TASKS),
        model=ModelConfig(network="mlp", hidden=(6,)),
        algo=AlgoConfig(name="imaml"),
        inner=InnerConfig(lr=0.03, steps=imaml.pop("steps", 600)),
        imaml=IMAMLConfig(**imaml),
        run=RunConfig(progress=False, checkpoint_every=0),
    )
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    learner.model = torch.nn.Linear(1, 1).to(F64)  # linear in its parameters: an exact quadratic
    params = {k: v.detach().requires_grad_() for k, v in learner.model.named_parameters()}
    batch = build_family(cfg.task, "train", CPU).sample(
        TASKS, torch.Generator().manual_seed(1), True
    )
    fields = ("support_x", "support_y", "query_x", "query_y")
    batch = dataclasses.replace(batch, **{f: getattr(batch, f).to(F64) for f in fields})
    got = torch.autograd.grad(learner.outer_loss(params, batch, 0).loss, list(params.values()))
    # stack (w, b) into one vector; the support loss is ½ uᵀA u - rᵀu + const per task
    x, y = batch.support_x, batch.support_y
    feats = torch.cat([x, torch.ones_like(x)], -1)  # [task, shot, 2]
    a = 2 * feats.transpose(1, 2) @ feats / x.shape[1]
    rhs_s = 2 * (feats.transpose(1, 2) @ y).squeeze(-1) / x.shape[1]
    theta = torch.cat([params["weight"].reshape(-1), params["bias"]]).detach()
    return torch.cat([got[0].reshape(-1), got[1]]), batch, a, rhs_s, theta


def _query_grad(batch, phi):
    """∇ of the mean squared query error of the linear model at φ [task, 2], per task."""
    qf = torch.cat([batch.query_x, torch.ones_like(batch.query_x)], -1)
    err = (qf @ phi.unsqueeze(-1)) - batch.query_y
    return 2 * (qf.transpose(1, 2) @ err).squeeze(-1) / qf.shape[1]


def test_the_learner_with_pull_back_solves_with_cg_lam_at_the_pulled_back_point():
    """imaml_dev's variant by hand: 3 GD steps, one pull-back, then (I + A / cg_lam)⁻¹ ∇L_query."""
    lam, cg_lam, lr, steps = 2.0, 5.0, 0.03, 3
    got, batch, a, rhs_s, theta = _linear_learner(
        lam=lam, cg_steps=2, proximal="pull_back", cg_lam=cg_lam, steps=steps
    )
    phi = theta.expand(TASKS, 2)
    for _ in range(steps):  # ∇L_support = A φ - r
        phi = phi - lr * ((a @ phi.unsqueeze(-1)).squeeze(-1) - rhs_s)
    phi = phi - lr * lam * (phi - theta)
    eye = torch.eye(2, dtype=F64)
    want = torch.linalg.solve(eye + a / cg_lam, _query_grad(batch, phi)).mean(0)
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


def test_the_learner_meta_gradient_equals_the_exact_gradient_on_a_linear_model():
    """Linear regression (MSE is quadratic): the learner's surrogate loss has the exact gradient."""
    got, batch, a, rhs_s, theta = _linear_learner(lam=2.0, cg_steps=2)
    theta = theta.requires_grad_()
    phi = torch.linalg.solve(a + 2.0 * torch.eye(2, dtype=F64), rhs_s + 2.0 * theta)
    qf = torch.cat([batch.query_x, torch.ones_like(batch.query_x)], -1)
    pred = qf @ phi.unsqueeze(-1)
    exact_loss = ((pred - batch.query_y) ** 2).mean(dim=(1, 2)).mean()
    (exact,) = torch.autograd.grad(exact_loss, theta)
    torch.testing.assert_close(got, exact, rtol=1e-7, atol=1e-9)


def test_conjugate_gradient_solves_a_small_system_exactly():
    gen = torch.Generator().manual_seed(3)
    r = torch.randn(4, 4, generator=gen, dtype=F64)
    a = r @ r.T + torch.eye(4, dtype=F64)
    b = torch.randn(4, generator=gen, dtype=F64)
    x = conjugate_gradient(lambda v: {"v": a @ v["v"]}, {"v": b}, 4)["v"]
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    zero = conjugate_gradient(lambda v: {"v": a @ v["v"]}, {"v": torch.zeros(4, dtype=F64)}, 3)
    assert torch.equal(zero["v"], torch.zeros(4, dtype=F64))  # no NaN from 0/0


def _sinusoid_cfg(**imaml) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=10, query_shots=10, meta_batch_size=10),
        model=ModelConfig(network="mlp", hidden=(40, 40)),
        algo=AlgoConfig(name="imaml"),
        inner=InnerConfig(lr=0.01, steps=10),
        imaml=IMAMLConfig(**imaml),
        optim=OptimConfig(lr=3e-3, iterations=150),
        run=RunConfig(progress=False, checkpoint_every=0, seed=0),
    )


@pytest.mark.parametrize(
    "imaml",
    [
        {"lam": 20.0, "cg_steps": 5},
        {"lam": 20.0, "cg_steps": 5, "proximal": "pull_back", "cg_lam": 40.0},
    ],
    ids=["every_step", "pull_back"],
)
def test_imaml_learns_sinusoid_regression_in_seconds(imaml):
    torch.set_num_threads(1)
    cfg = _sinusoid_cfg(**imaml)
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    test = build_family(cfg.task, "test", CPU).sample(50, torch.Generator().manual_seed(9), False)
    before = learner.adaptation_curve(learner.init_params(), test, 10)[:, -1].mean()
    result = train(cfg, learner, build_family(cfg.task, "train", CPU), None, CPU)
    after_curve = learner.adaptation_curve(result.params, test, 10).mean(0)
    assert after_curve[-1] < 0.5 * before, (before, after_curve)
    assert after_curve[-1] < after_curve[0]  # adapting helps after meta-training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0}, "lam must be > 0"),
        ({"lam": -1.0}, "lam must be > 0"),
        ({"cg_steps": -1}, "cg_steps"),
        ({"cg_lam": 0.0}, "cg_lam must be > 0"),
        ({"cg_lam": float("inf")}, "cg_lam must be > 0"),
    ],
)
def test_bad_imaml_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IMAMLConfig(**kwargs)


def test_a_pull_back_that_undoes_or_overshoots_the_adaptation_is_refused():
    with pytest.raises(ValueError, match=r"inner.lr x imaml.lam = 1 .* must be < 1"):
        _sinusoid_cfg(lam=100.0, proximal="pull_back")  # inner.lr 0.01
    with pytest.raises(ValueError, match=r"inner.lr x imaml.lam = 1.5 "):
        _sinusoid_cfg(lam=150.0, proximal="pull_back")
    _sinusoid_cfg(lam=100.0)  # every_step has no such limit


def test_first_order_and_misplaced_sections_are_refused():
    cfg = _sinusoid_cfg()
    with pytest.raises(ValueError, match="first_order does not apply to imaml"):
        build_supervised_learner(
            SupervisedConfig(
                task=cfg.task,
                model=cfg.model,
                algo=cfg.algo,
                inner=InnerConfig(first_order=True),
                run=cfg.run,
            ),
            CPU,
            torch.Generator(),
        )
    with pytest.raises(ValueError, match="imaml section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="maml"), imaml=IMAMLConfig())


def test_pure_functions_refuse_bad_arguments():
    inner, outer, support, query, theta, _ = _quadratic()
    with pytest.raises(ValueError, match="lam must be a number > 0"):
        next(proximal_path({"w": theta}, inner, support, lam=0.0, lr=0.1, steps=1))
    with pytest.raises(ValueError, match="lr must be > 0"):
        next(proximal_path({"w": theta}, inner, support, lam=1.0, lr=0.0, steps=1))
    with pytest.raises(ValueError, match="cg_steps must be an int >= 0"):
        implicit_meta_gradient(
            {"w": theta.expand(TASKS, DIM)}, inner, outer, support, query, lam=1.0, cg_steps=-2
        )
    with pytest.raises(TypeError, match="params must be a non-empty"):
        implicit_meta_gradient({}, inner, outer, support, query, lam=1.0, cg_steps=1)

"""AlphaMAML (Behl et al. 2019): hypergradients of the inner and outer step sizes.

The inner step size's hypergradient dL/dα must match central finite differences of the outer
loss in α (float64) and, for one inner step, the closed form
``-mean_i ∇L_query(θ'_i)·∇L_support(θ)``; the outer step follows Adam-HD (Baydin et al. 2018)
by hand; the learner learns sinusoid regression in seconds; bad settings fail with clear errors.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.func import functional_call

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.alphamaml import INNER_LR
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    SupervisedExperiment,
    TaskConfig,
    build_family,
    task_loss,
    train,
)
from metarl.algorithms.supervised_config import AlphaMAMLConfig
from metarl.config_renames import keep_lrs_in_params, migrate_checkpoint

CPU = torch.device("cpu")
F64 = torch.float64


def _cfg(steps=2, lr=0.3, **kw) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=(8, 8), activation="tanh"),
        algo=AlgoConfig(name="alphamaml"),
        inner=InnerConfig(lr=lr, steps=steps),
        alphamaml=AlphaMAMLConfig(**kw),
        optim=OptimConfig(iterations=1),
        run=RunConfig(progress=False, checkpoint_every=0),
    )


def _problem(cfg):
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    learner.model = learner.model.to(F64)
    params = {k: v.detach().to(F64).requires_grad_() for k, v in learner.init_params().items()}
    batch = build_family(cfg.task, "train", CPU).sample(3, torch.Generator().manual_seed(1), True)
    fields = ("support_x", "support_y", "query_x", "query_y")
    return (
        learner,
        params,
        dataclasses.replace(batch, **{f: getattr(batch, f).to(F64) for f in fields}),
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_inner_lr_hypergradient_matches_finite_differences(steps):
    learner, params, batch = _problem(_cfg(steps=steps))
    (got,) = torch.autograd.grad(learner.outer_loss(params, batch, 0).loss, [params[INNER_LR]])

    def loss_at(alpha: float) -> float:
        shifted = {**params, INNER_LR: torch.tensor(alpha, dtype=F64)}
        with torch.no_grad():
            return float(learner.outer_loss(shifted, batch, 0).loss)

    eps, alpha = 1e-6, float(params[INNER_LR].detach())
    want = (loss_at(alpha + eps) - loss_at(alpha - eps)) / (2 * eps)
    assert got.item() == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_one_step_hypergradient_is_minus_query_gradient_dot_support_gradient():
    learner, params, batch = _problem(_cfg(steps=1))
    (got,) = torch.autograd.grad(learner.outer_loss(params, batch, 0).loss, [params[INNER_LR]])
    net = {k: v for k, v in params.items() if k != INNER_LR}
    total = 0.0
    for i in range(3):

        def loss(p, x, y):
            return task_loss(functional_call(learner.model, p, (x,)), y)

        g_s = torch.autograd.grad(
            loss(net, batch.support_x[i], batch.support_y[i]), list(net.values())
        )
        adapted = {k: v - params[INNER_LR] * g for (k, v), g in zip(net.items(), g_s, strict=True)}
        adapted = {k: v.detach().requires_grad_() for k, v in adapted.items()}
        g_q = torch.autograd.grad(
            loss(adapted, batch.query_x[i], batch.query_y[i]), list(adapted.values())
        )
        total = total - sum((a * b).sum() for a, b in zip(g_q, g_s, strict=True)) / 3
    torch.testing.assert_close(got, total, rtol=1e-10, atol=1e-12)


def test_step_sizes_follow_hypergradient_descent_and_adam_hd():
    cfg = dataclasses.replace(_cfg(steps=1, inner_hyper_lr=0.01, outer_hyper_lr=1e-3))
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    family = build_family(cfg.task, "train", CPU)
    exp = SupervisedExperiment(cfg, learner, family, CPU)
    alpha0, beta0 = float(exp.params[INNER_LR].detach()), exp.opt.param_groups[0]["lr"]
    first = exp.update(0)
    # α moved by -η_α dL/dα; β stays until Adam has a previous direction
    assert float(first["train/inner_lr"]) == pytest.approx(
        alpha0 - 0.01 * float(first["train/inner_lr_hypergrad"]), rel=1e-6
    )
    assert exp.opt.param_groups[0]["lr"] == beta0
    assert exp.params[INNER_LR].grad is None  # Adam never steps α
    # by hand: the second iteration's β = β0 + η_β Σ g · m̂/(sqrt(v̂) + ε) of the first step
    state = {
        k: {n: t.clone() for n, t in exp.opt.state[p].items()}
        for k, p in exp.params.items()
        if k != INNER_LR
    }
    gen_state = exp.gen.get_state()
    batch = family.sample(cfg.task.meta_batch_size, exp.gen, training=True)
    exp.gen.set_state(gen_state)
    net = [k for k in exp.params if k != INNER_LR]
    grads = torch.autograd.grad(
        learner.outer_loss(exp.params, batch, 1).loss, [exp.params[k] for k in net]
    )
    h = 0.0
    for k, g in zip(net, grads, strict=True):
        m_hat = state[k]["exp_avg"] / (1 - 0.9)
        v_hat = state[k]["exp_avg_sq"] / (1 - 0.999)
        h += float((g * m_hat / (v_hat.sqrt() + 1e-8)).sum())
    second = exp.update(1)
    assert second["train/outer_lr"] == pytest.approx(beta0 + 1e-3 * h, rel=1e-6)
    assert exp.sched.base_lrs[0] == second["train/outer_lr"]  # the schedule keeps it


def test_alphamaml_learns_sinusoid_regression_in_seconds():
    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        _cfg(steps=1, lr=0.002, inner_hyper_lr=1e-3, outer_hyper_lr=1e-7),
        task=TaskConfig(family="sinusoid", shots=10, query_shots=10, meta_batch_size=10),
        model=ModelConfig(network="mlp", hidden=(40, 40)),
        optim=OptimConfig(lr=3e-3, iterations=300),
    )
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    test = build_family(cfg.task, "test", CPU).sample(50, torch.Generator().manual_seed(9), False)
    before = learner.adaptation_curve(learner.init_params(), test, 1)[:, -1].mean()
    result = train(cfg, learner, build_family(cfg.task, "train", CPU), None, CPU)
    curve = learner.adaptation_curve(result.params, test, 1).mean(0)  # the trained step count
    alpha = float(result.params[INNER_LR])
    assert curve[-1] < 0.65 * before, (before, curve, alpha)
    assert curve[-1] < 0.8 * curve[0], (curve, alpha)  # the adaptation step is what fits the task
    assert alpha > 0.02, alpha  # α grew from a too-small start, as hypergradient descent should


def test_a_checkpoint_from_before_alpha_was_renamed_still_evaluates():
    """Older checkpoints saved α as ``inner_lr.alpha``; the checkpoint migration moves such keys
    to ``inner_lrs``, and loading for evaluation (``keep_lrs_in_params``, as
    ``supervised.evaluate_run`` does) must put α back into θ."""
    learner, params, batch = _problem(_cfg(steps=2))
    params = {k: v.detach() for k, v in params.items()}
    old = {k: v for k, v in params.items() if k != INNER_LR}
    old["inner_lr." + INNER_LR] = params[INNER_LR]
    state = migrate_checkpoint({"params": old})
    assert INNER_LR not in state["params"] and set(state["inner_lrs"]) == {INNER_LR}
    loaded = keep_lrs_in_params(state, list(params), [])
    again = learner.adaptation_curve(loaded["params"], batch, 2, lrs=loaded["inner_lrs"])
    assert torch.equal(again, learner.adaptation_curve(params, batch, 2))
    with pytest.raises(KeyError, match="no inner step size 'alpha'"):
        learner.adaptation_curve(state["params"], batch, 2)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="inner_hyper_lr must be >= 0"):
        AlphaMAMLConfig(inner_hyper_lr=-1.0)
    with pytest.raises(ValueError, match="outer_hyper_lr must be >= 0"):
        AlphaMAMLConfig(outer_hyper_lr=float("nan"))
    base = _cfg()
    for optim in (OptimConfig(optimizer="sgd"), OptimConfig(schedule="cosine")):
        with pytest.raises(ValueError, match="needs optim.optimizer=adam and optim.schedule"):
            build_supervised_learner(dataclasses.replace(base, optim=optim), CPU, torch.Generator())
    with pytest.raises(ValueError, match="first_order does not apply to alphamaml"):
        build_supervised_learner(
            dataclasses.replace(base, inner=InnerConfig(first_order=True)), CPU, torch.Generator()
        )
    with pytest.raises(ValueError, match="alphamaml section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="maml"), alphamaml=AlphaMAMLConfig())


def _three_updates_and_two():
    """A fresh-experiment factory, an experiment after 3 updates and one after 2 (same seed)."""
    cfg = _cfg(steps=1, inner_hyper_lr=0.01, outer_hyper_lr=1e-3)
    family = build_family(cfg.task, "train", CPU)

    def experiment():
        learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
        return SupervisedExperiment(cfg, learner, family, CPU)

    straight, first = experiment(), experiment()
    for i in range(3):
        straight.update(i)
    for i in range(2):
        first.update(i)
    return experiment, straight, first


def test_resuming_restores_both_step_sizes():
    experiment, straight, first = _three_updates_and_two()
    state = first.state_dict()
    resumed = experiment()
    resumed.load_state_dict(state)
    resumed.update(2)
    assert resumed.opt.param_groups[0]["lr"] == straight.opt.param_groups[0]["lr"] != 1e-3
    for k, v in straight.params.items():
        torch.testing.assert_close(resumed.params[k], v, rtol=0, atol=0, msg=k)


def test_training_resumes_from_a_checkpoint_saved_with_alpha_as_inner_lr():
    """A checkpoint written while α was ``inner_lr.alpha`` (one optimiser group, α last) resumes
    training exactly: α goes back into θ and the migration's split optimiser group is re-merged."""
    experiment, straight, first = _three_updates_and_two()
    state = first.state_dict()
    assert list(state["params"])[-1] == INNER_LR and not state["inner_lrs"]
    old = {
        **state,
        "params": {
            ("inner_lr." if k == INNER_LR else "") + k: v for k, v in state["params"].items()
        },
    }
    del old["inner_lrs"]
    migrated = migrate_checkpoint(old)
    assert len(migrated["optimizer"]["param_groups"]) == 2  # what the resume has to undo
    resumed = experiment()
    resumed.load_state_dict(migrated)
    assert len(resumed.opt.param_groups) == 1 and resumed.sched.base_lrs == first.sched.base_lrs
    resumed.update(2)
    assert resumed.opt.param_groups[0]["lr"] == straight.opt.param_groups[0]["lr"]
    for k, v in straight.params.items():
        torch.testing.assert_close(resumed.params[k], v, rtol=0, atol=0, msg=k)

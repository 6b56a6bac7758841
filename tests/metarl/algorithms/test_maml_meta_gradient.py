"""Supervised MAML-family meta-gradients against a plain ``torch.autograd`` twin, in float64.

The twin writes the MLP out by hand and runs each task's inner loop as a Python loop over
``torch.autograd.grad`` (``create_graph=True`` for second order), as in Finn et al. 2017, Alg. 2.
It shares nothing with ``metarl.functional`` (no ``vmap``, no ``functional_call``). Each variant's
meta-gradient, including the gradients of learned step sizes, must equal the twin's; second-order
MAML must differ measurably from first-order MAML, so a silent switch to first order fails.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    TaskConfig,
    build_family,
)

CPU = torch.device("cpu")
F64 = torch.float64
STEPS = 2
LR = 0.3  # large enough that the second-order term is far from negligible


def _cfg(name: str) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=(8, 8), activation="tanh"),
        algo=AlgoConfig(name=name),
        inner=InnerConfig(lr=LR, steps=STEPS),
        optim=OptimConfig(iterations=1),
        run=RunConfig(progress=False, checkpoint_every=0),
    )


def _problem(name: str):
    cfg = _cfg(name)
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    params = {k: v.detach().to(F64).requires_grad_() for k, v in learner.init_params().items()}
    lrs = {k: v.detach().to(F64).requires_grad_() for k, v in learner.init_lrs().items()}
    batch = build_family(cfg.task, "train", CPU).sample(3, torch.Generator().manual_seed(1), True)
    batch = dataclasses.replace(
        batch,
        support_x=batch.support_x.to(F64),
        support_y=batch.support_y.to(F64),
        query_x=batch.query_x.to(F64),
        query_y=batch.query_y.to(F64),
    )
    return learner, params, lrs, batch


def _mlp(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The sinusoid MLP by hand: tanh hidden layers ``body.{0,2}``, then ``head``."""
    h = torch.tanh(x @ p["body.0.weight"].T + p["body.0.bias"])
    h = torch.tanh(h @ p["body.2.weight"].T + p["body.2.bias"])
    return h @ p["head.weight"].T + p["head.bias"]


def _twin_outer_loss(name: str, net: dict[str, torch.Tensor], lrs, batch) -> torch.Tensor:
    """The outer loss of ``name`` written as a per-task Python loop over plain autograd."""
    adapted = ["head.weight", "head.bias"] if name == "anil" else list(net)
    first_order = name == "fomaml"
    per_task = []
    for t in range(batch.support_x.shape[0]):
        p = dict(net)
        query_losses = []
        for step in range(STEPS):
            loss = F.mse_loss(_mlp(p, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(loss, [p[k] for k in adapted], create_graph=not first_order)
            for k, g in zip(adapted, grads, strict=True):
                if name == "metasgd":
                    lr = lrs[k]  # one learned rate per weight (Meta-SGD, Eq. 3)
                elif name == "mamlpp":
                    lr = lrs[k][step]  # one per layer and step (LSLR)
                else:
                    lr = LR
                p[k] = p[k] - lr * (g.detach() if first_order else g)
            query_losses.append(F.mse_loss(_mlp(p, batch.query_x[t]), batch.query_y[t]))
        if name == "mamlpp":  # multi-step loss; at iteration 0 the weights are uniform
            per_task.append(torch.stack(query_losses).mean())
        else:
            per_task.append(query_losses[-1])
    return torch.stack(per_task).mean()


def _grads(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(params.items(), grads, strict=True)
    }


def _learner_grads(name: str):
    """Gradients of the learner's and the twin's outer loss, ``{"params.<k>"|"lrs.<k>": grad}``."""
    learner, params, lrs, batch = _problem(name)
    loss = learner.outer_loss(params, batch, 0, lrs=lrs).loss
    twin = _twin_outer_loss(name, params, lrs, batch)
    both = {
        **{f"params.{k}": v for k, v in params.items()},
        **{f"lrs.{k}": v for k, v in lrs.items()},
    }
    return _grads(loss, both), _grads(twin, both), loss, twin, params


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "metasgd", "mamlpp"])
def test_meta_gradient_equals_the_plain_autograd_twin(name):
    got, want, loss, twin, _ = _learner_grads(name)
    torch.testing.assert_close(loss, twin, rtol=1e-12, atol=1e-12)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-12, msg=k)


def test_second_order_maml_differs_from_first_order_maml():
    second, _, _, _, params = _learner_grads("maml")
    _, _, _, batch = _problem("maml")
    first = _grads(_twin_outer_loss("fomaml", params, {}, batch), params)
    for k in ("body.0.weight", "body.2.weight", "head.weight"):
        gap = (second[f"params.{k}"] - first[k]).norm() / first[k].norm()
        assert gap > 0.05, (k, float(gap))


@pytest.mark.parametrize("name", ["metasgd", "mamlpp"])
def test_learned_step_sizes_get_a_nonzero_meta_gradient(name):
    got, _, _, _, _ = _learner_grads(name)
    lr_keys = [k for k in got if k.startswith("lrs.")]
    assert len(lr_keys) == 6
    for k in lr_keys:
        assert got[k].abs().max() > 1e-6, k
    if name == "mamlpp":  # one rate per step, and each step's rate matters
        for k in lr_keys:
            assert got[k].shape == (STEPS,) and bool((got[k].abs() > 1e-8).all()), k


def test_anil_body_learns_only_in_the_outer_loop():
    learner, params, _, batch = _problem("anil")
    adapted = learner._adapt(params, batch, STEPS, first_order=False)
    for k in ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"):
        for t in range(3):  # the inner loop leaves the body as it is...
            torch.testing.assert_close(adapted.params[k][t], params[k], rtol=0, atol=0)
    assert not torch.allclose(adapted.params["head.weight"][0], params["head.weight"])
    got, _, _, _, _ = _learner_grads("anil")
    for k in ("body.0.weight", "body.2.weight"):  # ...and the outer loop moves it
        assert got[f"params.{k}"].abs().max() > 1e-4, k


@pytest.mark.parametrize("name", ["metasgd", "mamlpp"])
def test_a_learner_with_learned_step_sizes_refuses_to_run_without_them(name):
    learner, params, _, batch = _problem(name)
    with pytest.raises(ValueError, match=rf"{name} learns its inner step sizes: pass lrs="):
        learner.outer_loss(params, batch, 0)

"""CAVIA (Zintgraf et al. 2019): context-only inner loop, meta-gradient against a plain twin.

The twin runs each task's inner loop as a Python loop of ``torch.autograd.grad`` steps on a
zero-initialised context (``create_graph=True``), the network written out by hand; the learner's
meta-gradient must equal it in float64. The network never changes in the inner loop, and the
learner learns sinusoid regression in seconds.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.cavia import CONTEXT, with_context
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
from metarl.algorithms.supervised_config import CAVIAConfig

CPU = torch.device("cpu")
F64 = torch.float64


def _cfg(steps=2, lr=0.7, iterations=1, context=3, first_order=False) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=(8, 8), activation="tanh"),
        algo=AlgoConfig(name="cavia"),
        inner=InnerConfig(lr=lr, steps=steps, first_order=first_order),
        cavia=CAVIAConfig(context_size=context),
        optim=OptimConfig(iterations=iterations),
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


def _twin(p, x, c):
    h = torch.cat([x, c.expand(x.shape[0], -1)], -1)
    h = torch.tanh(F.linear(h, p["body.0.weight"], p["body.0.bias"]))
    h = torch.tanh(F.linear(h, p["body.2.weight"], p["body.2.bias"]))
    return F.linear(h, p["head.weight"], p["head.bias"])


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_equals_a_plain_autograd_twin(first_order):
    cfg = _cfg(first_order=first_order)
    learner, params, batch = _problem(cfg)
    got = torch.autograd.grad(learner.outer_loss(params, batch, 0).loss, list(params.values()))
    total = 0.0
    for i in range(3):
        c = torch.zeros(3, dtype=F64, requires_grad=True)
        for _ in range(cfg.inner.steps):
            loss = F.mse_loss(_twin(params, batch.support_x[i], c), batch.support_y[i])
            (g,) = torch.autograd.grad(loss, c, create_graph=not first_order)
            c = c - cfg.inner.lr * g
        total = total + F.mse_loss(_twin(params, batch.query_x[i], c), batch.query_y[i]) / 3
    want = torch.autograd.grad(total, list(params.values()))
    for name, a, b in zip(params, got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_only_the_context_adapts_and_it_starts_at_zero():
    learner, params, batch = _problem(_cfg(steps=3))
    result = learner._adapt(params, batch, 3, first_order=True)
    for name, value in params.items():
        for step in result.trajectory:
            assert torch.equal(step[name], value.expand_as(step[name]))
    assert torch.equal(result.trajectory[0][CONTEXT], torch.zeros(3, 3, dtype=F64))
    assert (result.trajectory[-1][CONTEXT] != 0).all()  # each task got its own context
    assert not torch.allclose(result.trajectory[-1][CONTEXT][0], result.trajectory[-1][CONTEXT][1])


def test_cavia_learns_sinusoid_regression_in_seconds():
    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        _cfg(steps=1, lr=1.0, iterations=300, context=5),
        task=TaskConfig(family="sinusoid", shots=10, query_shots=10, meta_batch_size=10),
        model=ModelConfig(network="mlp", hidden=(40, 40)),
        optim=OptimConfig(lr=3e-3, iterations=300),
    )
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    test = build_family(cfg.task, "test", CPU).sample(50, torch.Generator().manual_seed(9), False)
    before = learner.adaptation_curve(learner.init_params(), test, 1)[:, -1].mean()
    result = train(cfg, learner, build_family(cfg.task, "train", CPU), None, CPU)
    curve = learner.adaptation_curve(result.params, test, 1).mean(0)
    assert curve[1] < 0.5 * before, (before, curve)
    assert curve[1] < 0.8 * curve[0]  # the context step is what fits the task


def test_with_context_concatenates_features_and_image_channels():
    c = torch.tensor([1.0, 2.0])
    assert torch.equal(with_context(torch.zeros(3, 1), c), torch.tensor([[0.0, 1, 2]] * 3))
    images = with_context(torch.zeros(2, 1, 4, 4), c)
    assert images.shape == (2, 3, 4, 4) and torch.equal(images[:, 2], torch.full((2, 4, 4), 2.0))
    with pytest.raises(ValueError, match="context must be a vector"):
        with_context(torch.zeros(3, 1), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="x must be"):
        with_context(torch.zeros(3), c)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="context_size must be >= 1"):
        CAVIAConfig(context_size=0)
    with pytest.raises(ValueError, match="cavia section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="maml"), cavia=CAVIAConfig())
    learner, params, batch = _problem(_cfg())
    with pytest.raises(ValueError, match="must not hold 'context'"):
        learner.outer_loss({**params, CONTEXT: torch.zeros(3, dtype=F64)}, batch, 0)


def test_conv4_context_enters_as_input_channels():
    cfg = SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=2, shots=1, query_shots=1, meta_batch_size=2),
        model=ModelConfig(network="conv4_strided", filters=4),
        algo=AlgoConfig(name="cavia"),
        cavia=CAVIAConfig(context_size=3),
    )
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    first = dict(learner.model.named_parameters())["body.0.conv.weight"]
    assert first.shape[1] == 1 + 3

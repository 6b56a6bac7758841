"""Meta-LSTM (Ravi & Larochelle 2017): the preprocessing, one update by hand, the meta-gradient
against finite differences, and learning sinusoid regression in seconds.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.metalstm import META, lstm_update, preprocess
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
from metarl.algorithms.supervised_config import MetaLSTMConfig

CPU = torch.device("cpu")
F64 = torch.float64


def test_preprocessing_is_andrychowicz_et_al():
    x = torch.tensor([1.0, -math.exp(-5.0), 1e-6, 0.0], dtype=F64)
    want = torch.tensor(
        [[0.0, 1.0], [-0.5, -1.0], [-1.0, math.exp(10.0) * 1e-6], [-1.0, 0.0]], dtype=F64
    )
    torch.testing.assert_close(preprocess(x), want)
    with pytest.raises(ValueError, match="p must be > 0"):
        preprocess(x, p=0.0)


def _meta(hidden: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "w_ih": (2, 4 * hidden),
        "w_hh": (hidden, 4 * hidden),
        "b": (4 * hidden,),
        "w_i": (hidden + 2,),
        "b_i": (),
        "w_f": (hidden + 2,),
        "b_f": (),
    }
    return {k: torch.randn(s, generator=g, dtype=F64) for k, s in shapes.items()}


def test_one_update_equals_the_paper_equations_by_hand():
    hidden, meta = 3, _meta(3)
    update = lstm_update(meta, hidden)
    theta = {"w": torch.tensor([0.5, -1.0], dtype=F64)}
    grad = {"w": torch.tensor([0.2, 3.0], dtype=F64)}
    state = update.init(theta)
    new, _ = update.update(theta, grad, state, 0.0)
    for j in range(2):
        x = preprocess(grad["w"][j])
        z = x @ meta["w_ih"] + meta["b"]  # h_0 = 0, c_0 = 0
        zi, zf, zg, zo = z.split(hidden)
        c = torch.sigmoid(zi) * torch.tanh(zg)
        h = torch.sigmoid(zo) * torch.tanh(c)
        t = theta["w"][j]
        i = torch.sigmoid(h @ meta["w_i"][:hidden] + t * meta["w_i"][hidden] + meta["b_i"])
        f = torch.sigmoid(h @ meta["w_f"][:hidden] + t * meta["w_f"][hidden] + meta["b_f"])
        torch.testing.assert_close(new["w"][j], f * t - i * grad["w"][j])
    with pytest.raises(ValueError, match="'w_hh' must have shape"):
        lstm_update({**meta, "w_hh": torch.zeros(2, 2)}, hidden)


def _cfg(steps=1, iterations=1, hidden=(8,)) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=hidden, activation="tanh"),
        algo=AlgoConfig(name="metalstm"),
        inner=InnerConfig(steps=steps),
        metalstm=MetaLSTMConfig(hidden_size=4),
        optim=OptimConfig(iterations=iterations),
        run=RunConfig(progress=False, checkpoint_every=0),
    )


def test_meta_gradient_matches_finite_differences():
    """One inner step: ∇_0 does not depend on the meta-learner, so its gradient is exact.

    (θ_0's own gradient is first order by design, ∇_0 being an input, so it is left out.)
    """
    cfg = _cfg(steps=1)
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    learner.model = learner.model.to(F64)
    params = {k: v.detach().to(F64).requires_grad_() for k, v in learner.init_params().items()}
    params[META + "b_i"] = torch.tensor(-1.0, dtype=F64, requires_grad=True)  # big enough steps
    batch = build_family(cfg.task, "train", CPU).sample(3, torch.Generator().manual_seed(1), True)
    fields = ("support_x", "support_y", "query_x", "query_y")
    batch = dataclasses.replace(batch, **{f: getattr(batch, f).to(F64) for f in fields})
    names = [META + "b_i", META + "b_f", META + "w_i", META + "w_f", META + "w_ih", META + "b"]
    grads = torch.autograd.grad(
        learner.outer_loss(params, batch, 0).loss, [params[k] for k in names]
    )
    eps = 1e-6
    for name, got in zip(names, grads, strict=True):
        flat = params[name].detach().reshape(-1)
        for j in range(min(flat.numel(), 3)):
            loss = []
            for sign in (1, -1):
                shifted = flat.clone()
                shifted[j] += sign * eps
                moved = {**params, name: shifted.reshape(params[name].shape)}
                with torch.no_grad():
                    loss.append(float(learner.outer_loss(moved, batch, 0).loss))
            want = (loss[0] - loss[1]) / (2 * eps)
            assert got.reshape(-1)[j].item() == pytest.approx(want, rel=1e-5, abs=1e-9), name


def test_metalstm_learns_sinusoid_regression_in_seconds():
    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        _cfg(steps=5, hidden=(40, 40)),
        task=TaskConfig(family="sinusoid", shots=10, query_shots=10, meta_batch_size=10),
        metalstm=MetaLSTMConfig(hidden_size=4, input_bias_range=(-4.0, -3.0)),
        optim=OptimConfig(lr=3e-3, iterations=150),
    )
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    test = build_family(cfg.task, "test", CPU).sample(50, torch.Generator().manual_seed(9), False)
    before = learner.adaptation_curve(learner.init_params(), test, 5)[:, -1].mean()
    result = train(cfg, learner, build_family(cfg.task, "train", CPU), None, CPU)
    curve = learner.adaptation_curve(result.params, test, 5).mean(0)
    assert curve[-1] < 0.6 * before, (before, curve)
    assert curve[-1] < 0.8 * curve[0], curve  # the meta-learner's updates fit each task


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        MetaLSTMConfig(hidden_size=0)
    with pytest.raises(ValueError, match="forget_bias_range must be finite with low <= high"):
        MetaLSTMConfig(forget_bias_range=(6.0, 4.0))
    with pytest.raises(ValueError, match="metalstm section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="maml"), metalstm=MetaLSTMConfig())

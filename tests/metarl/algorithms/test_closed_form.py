"""R2-D2 (ridge regression) and MetaOptNet (SVM, ridge) heads, and their learners."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.testing import assert_close

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.closed_form import (
    _project_rows_to_simplex,
    ridge_logits,
    ridge_weights,
    svm_dual,
    svm_logits,
    svm_weights,
)
from metarl.algorithms.supervised import (
    AlgoConfig,
    ModelConfig,
    OptimConfig,
    SupervisedConfig,
    TaskConfig,
    train,
)
from metarl.algorithms.supervised_config import MetaOptNetConfig, R2D2Config
from metarl.config import RunConfig
from tests.helpers.few_shot import CornerSquareFamily

CPU = torch.device("cpu")
F64 = torch.float64


def _problem(tasks: int = 2, ways: int = 3, shots: int = 2, query: int = 4, dim: int = 5):
    gen = torch.Generator().manual_seed(0)
    support = torch.randn(tasks, ways * shots, dim, generator=gen, dtype=F64)
    labels = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    queries = torch.randn(tasks, query, dim, generator=gen, dtype=F64)
    return support, labels, queries


# --- ridge (R2-D2, MetaOptNet-RR) ---------------------------------------------------------------


def test_ridge_woodbury_equals_the_direct_normal_equations() -> None:
    support, labels, queries = _problem()
    lam = 0.7
    x = torch.cat([support, torch.ones(*support.shape[:2], 1, dtype=F64)], dim=-1)
    y = F.one_hot(labels, 3).to(F64)
    eye = torch.eye(x.shape[-1], dtype=F64)
    direct = torch.linalg.solve(x.transpose(1, 2) @ x + lam * eye, x.transpose(1, 2) @ y)
    assert_close(ridge_weights(support, labels, 3, lam), direct)
    q = torch.cat([queries, torch.ones(*queries.shape[:2], 1, dtype=F64)], dim=-1)
    assert_close(ridge_logits(support, labels, queries, 3, lam), q @ direct)


def test_ridge_gradients_match_finite_differences() -> None:
    support, labels, queries = _problem(tasks=1, ways=2, shots=2, query=2, dim=3)
    lam = torch.tensor(0.5, dtype=F64)
    inputs = (support.requires_grad_(), queries.requires_grad_(), lam.requires_grad_())
    assert torch.autograd.gradcheck(lambda s, q, la: ridge_logits(s, labels, q, 2, la), inputs)


# --- SVM (MetaOptNet) ---------------------------------------------------------------------------


def _primal_and_dual(support, labels, ways, c, steps):
    """Crammer-Singer primal ½‖W‖² + C Σ max_k(1 - δ + s_k - s_y) and dual, at the solver's A."""
    a = svm_dual(support, labels, ways, c, steps)
    w = support.transpose(1, 2) @ a
    y = F.one_hot(labels, ways).to(support.dtype)
    scores = support @ w
    hinge = (1 - y + scores - (scores * y).sum(-1, keepdim=True)).amax(-1)
    primal = 0.5 * w.square().sum((1, 2)) + c * hinge.sum(-1)
    dual = (y * a).sum((1, 2)) - 0.5 * w.square().sum((1, 2))
    return primal, dual, a


@pytest.mark.parametrize("c", [0.1, 1.0])
def test_svm_dual_closes_the_duality_gap(c: float) -> None:
    support, labels, _ = _problem(ways=4, shots=3, dim=6)
    primal, dual, a = _primal_and_dual(support, labels, 4, c, steps=2000)
    assert_close(primal, dual, atol=1e-6, rtol=1e-6)  # strong duality: the optimum
    y = F.one_hot(labels, 4).to(F64)
    # the dual constraints: A_nk <= C δ(y_n, k), Σ_k A_nk = 0
    assert bool((a <= c * y + 1e-12).all())
    assert_close(a.sum(-1), torch.zeros_like(a.sum(-1)))
    # fewer steps: a feasible point with a gap that shrinks
    gaps = [
        (lambda p, d, _: (p - d).max())(*_primal_and_dual(support, labels, 4, c, s))
        for s in (5, 50)
    ]
    assert gaps[0] >= gaps[1] >= -1e-9


def test_svm_known_answer_two_separable_points() -> None:
    # x = ±1 in 1-D, classes 0 and 1, large C: the hard-margin SVM. The solution is w_0 = -1/2,
    # w_1 = +1/2 ... up to the Crammer-Singer scaling: margin w_y·x - w_k·x = 1 at both points.
    support = torch.tensor([[[-1.0], [1.0]]], dtype=F64)
    labels = torch.tensor([[0, 1]])
    w = svm_weights(support, labels, 2, c=100.0, steps=500)
    assert_close(w, torch.tensor([[[-0.5, 0.5]]], dtype=F64), atol=1e-6, rtol=0)


def test_simplex_projection_known_answers() -> None:
    v = torch.tensor([[0.2, 0.3, 0.5], [2.0, 0.0, 0.0], [0.5, 0.5, -3.0]])
    expected = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    assert_close(_project_rows_to_simplex(v), expected)


def test_svm_gradients_match_finite_differences() -> None:
    support, labels, queries = _problem(tasks=1, ways=2, shots=2, query=2, dim=3)
    inputs = (support.requires_grad_(), queries.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda s, q: svm_logits(s, labels, q, 2, c=1.0, steps=10), inputs
    )


def test_heads_reject_bad_inputs() -> None:
    support, labels, queries = _problem()
    with pytest.raises(ValueError, match="support_emb"):
        ridge_weights(support[0], labels, 3, 1.0)
    with pytest.raises(ValueError, match="support_y"):
        ridge_weights(support, labels[:, :3], 3, 1.0)
    with pytest.raises(ValueError, match="support_y"):
        ridge_weights(support, labels.float(), 3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_emb"):
        ridge_logits(support, labels, queries[..., :2], 3, 1.0)
    with pytest.raises(ValueError, match="lam"):
        ridge_weights(support, labels, 3, 0.0)
    with pytest.raises(ValueError, match="c must"):
        svm_dual(support, labels, 3, c=-1.0, steps=5)
    with pytest.raises(ValueError, match="steps"):
        svm_dual(support, labels, 3, c=1.0, steps=0)
    with pytest.raises(ValueError, match="ways"):
        svm_dual(support, labels, 0, c=1.0, steps=1)


# --- the learners -------------------------------------------------------------------------------

HEADS = {
    "r2d2": {"algo": AlgoConfig(name="r2d2")},
    "metaoptnet_svm": {"algo": AlgoConfig(name="metaoptnet")},
    "metaoptnet_ridge": {
        "algo": AlgoConfig(name="metaoptnet"),
        "metaoptnet": MetaOptNetConfig(head="ridge"),
    },
}


def _config(variant: str, **optim: object) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=3, shots=2, query_shots=2, meta_batch_size=4),
        model=ModelConfig(network="conv4_maxpool", filters=8),
        optim=OptimConfig(**optim),  # type: ignore[arg-type]
        run=RunConfig(progress=False, checkpoint_every=0, log_every=1000),
        **HEADS[variant],  # type: ignore[arg-type]
    )


def _learner(cfg: SupervisedConfig):
    return build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("variant", HEADS)
def test_learner_loss_decreases_in_a_few_steps(variant: str) -> None:
    cfg = _config(variant, lr=1e-2, iterations=15)
    learner = _learner(cfg)
    family = CornerSquareFamily()
    batch = family.sample(8, torch.Generator().manual_seed(5), True)
    before = learner.outer_loss(learner.init_params(), batch, 0).loss.item()
    result = train(cfg, learner, family, None, CPU)  # type: ignore[arg-type]
    after = learner.outer_loss(result.params, batch, 0).loss.item()
    assert after < 0.7 * before, (before, after)
    curve = learner.adaptation_curve(result.params, batch, 0)
    assert curve.shape == (8, 1) and float(curve.mean()) > 0.9


@pytest.mark.parametrize("variant", HEADS)
def test_learner_params_are_seeded_and_reach_every_parameter(variant: str) -> None:
    cfg = _config(variant)
    first, again = _learner(cfg).init_params(), _learner(cfg).init_params()
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    learner = _learner(cfg)
    params = learner.init_params()
    batch = CornerSquareFamily().sample(2, torch.Generator().manual_seed(0), True)
    learner.outer_loss(params, batch, 0).loss.backward()
    missing = [k for k, v in params.items() if v.grad is None or not v.grad.isfinite().all()]
    assert missing == []
    heads = {k for k in params if k.startswith("head.")}
    expected = {"r2d2": {"head.log_lam", "head.scale", "head.bias"}}.get(variant, {"head.scale"})
    assert heads == expected


def test_bad_head_configs_raise() -> None:
    with pytest.raises(ValueError, match="c must be > 0"):
        MetaOptNetConfig(c=0.0)
    with pytest.raises(ValueError, match="solver_steps"):
        MetaOptNetConfig(solver_steps=0)
    with pytest.raises(ValueError, match="lam"):
        R2D2Config(lam=-1.0)
    with pytest.raises(ValueError, match="r2d2 section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="metaoptnet"), r2d2=R2D2Config())
    with pytest.raises(ValueError, match="task.family"):
        _learner(SupervisedConfig(algo=AlgoConfig(name="r2d2")))

"""Siamese networks: weighted-L1 pair logits, balanced pair loss, nearest-support test."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.testing import assert_close

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.siamese import nearest_support_scores, pair_logits, pair_loss
from metarl.algorithms.supervised import (
    AlgoConfig,
    ModelConfig,
    OptimConfig,
    SupervisedConfig,
    TaskConfig,
    train,
)
from metarl.config import RunConfig
from tests.helpers.few_shot import CornerSquareFamily

CPU = torch.device("cpu")
F64 = torch.float64


def test_pair_logits_known_answer() -> None:
    support = torch.tensor([[[0.0, 0.0], [1.0, 3.0]]])
    query = torch.tensor([[[1.0, 1.0]]])
    weight, bias = torch.tensor([-1.0, -2.0]), torch.tensor(0.5)
    # |q - s0| = (1, 1) -> -1 - 2 + 0.5 = -2.5; |q - s1| = (0, 2) -> -4 + 0.5 = -3.5
    assert_close(pair_logits(support, query, weight, bias), torch.tensor([[[-2.5, -3.5]]]))


def test_pair_loss_weights_same_and_different_pairs_equally() -> None:
    logits = torch.tensor([[[1.0, -1.0, 2.0], [0.0, 3.0, -2.0]]])
    support_y = torch.tensor([[0, 1, 2]])
    query_y = torch.tensor([[0, 1]])
    same = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    bce = F.binary_cross_entropy_with_logits(logits, same, reduction="none")
    expected = 0.5 * (bce[same.bool()].mean() + bce[~same.bool()].mean())
    assert_close(pair_loss(logits, support_y, query_y), expected)


def test_nearest_support_scores_take_the_most_similar_image_of_each_class() -> None:
    logits = torch.tensor([[[0.1, 0.9, -1.0, 0.3]]])
    labels = torch.tensor([[0, 0, 1, 1]])
    assert_close(nearest_support_scores(logits, labels, 2), torch.tensor([[[0.9, 0.3]]]))


def test_gradients_match_finite_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    support = torch.randn(1, 4, 3, generator=gen, dtype=F64, requires_grad=True)
    query = torch.randn(1, 2, 3, generator=gen, dtype=F64, requires_grad=True)
    weight = torch.randn(3, generator=gen, dtype=F64, requires_grad=True)
    bias = torch.tensor(0.5, dtype=F64, requires_grad=True)
    support_y, query_y = torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 1]])

    def loss(s, q, w, b):
        return pair_loss(pair_logits(s, q, w, b), support_y, query_y)

    assert torch.autograd.gradcheck(loss, (support, query, weight, bias))


def test_bad_inputs_raise() -> None:
    support, query = torch.zeros(1, 4, 3), torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="support_emb"):
        pair_logits(support[0], query, torch.zeros(3), torch.tensor(0.0))
    with pytest.raises(ValueError, match="query_emb"):
        pair_logits(support, query[..., :2], torch.zeros(3), torch.tensor(0.0))
    with pytest.raises(ValueError, match="weight"):
        pair_logits(support, query, torch.zeros(4), torch.tensor(0.0))
    logits = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="both same-class and different-class"):
        pair_loss(
            logits, torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.int64)
        )
    with pytest.raises(ValueError, match="logits"):
        pair_loss(
            logits[..., :3],
            torch.zeros(1, 4, dtype=torch.int64),
            torch.zeros(1, 2, dtype=torch.int64),
        )
    with pytest.raises(ValueError, match="support_y"):
        nearest_support_scores(logits, torch.zeros(1, 3, dtype=torch.int64), 2)


def _config(**optim: object) -> SupervisedConfig:
    return SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=3, shots=2, query_shots=2, meta_batch_size=4),
        model=ModelConfig(network="conv4_maxpool", filters=8),
        algo=AlgoConfig(name="siamese"),
        optim=OptimConfig(**optim),  # type: ignore[arg-type]
        run=RunConfig(progress=False, checkpoint_every=0, log_every=1000),
    )


def test_learner_learns_in_a_few_steps_and_is_seeded() -> None:
    cfg = _config(lr=1e-2, iterations=15)
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    again = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0)).init_params()
    params = learner.init_params()
    assert all(torch.equal(params[k], again[k]) for k in params)
    assert {"head.weight", "head.bias"} <= params.keys()
    batch = CornerSquareFamily().sample(8, torch.Generator().manual_seed(5), True)
    before = learner.outer_loss(params, batch, 0).loss.item()
    result = train(cfg, learner, CornerSquareFamily(), None, CPU)  # type: ignore[arg-type]
    after = learner.outer_loss(result.params, batch, 0).loss.item()
    assert after < 0.7 * before, (before, after)
    curve = learner.adaptation_curve(result.params, batch, 0)
    assert curve.shape == (8, 1) and float(curve.mean()) > 0.9

"""PPO-clip, value and ProMP losses by hand; closed-form distributions vs torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.testing import assert_close

from metarl.rl import (
    PPOLoss,
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    diag_gaussian_entropy,
    diag_gaussian_kl,
    diag_gaussian_log_prob,
    mean_entropy,
    ppo_clip_loss,
    promp_loss,
    value_loss,
)

F64 = torch.float64


def _t(values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# PPO clip loss, eps = 0.2
# ----------------------------------------------------------------------------------------------

RATIOS = [1.1, 1.5, 0.5, 0.5]
ADVANTAGES = [2.0, 1.0, -1.0, 1.0]
# sample 0: r = 1.1 inside the range, A > 0:        min(2.2, 2.2)            = 2.2
# sample 1: r = 1.5 above the range,  A > 0:        min(1.5, 1.2 * 1)        = 1.2  (clipped)
# sample 2: r = 0.5 below the range,  A < 0:        min(-0.5, 0.8 * -1)      = -0.8 (clipped)
# sample 3: r = 0.5 below the range,  A > 0:        min(0.5, 0.8 * 1)        = 0.5  (unclipped)
# loss = -(2.2 + 1.2 - 0.8 + 0.5) / 4 = -0.775


def _ppo_inputs():
    logp_new = torch.log(_t(RATIOS)).requires_grad_(True)
    return logp_new, torch.zeros(4, dtype=F64), _t(ADVANTAGES), torch.ones(4, dtype=torch.bool)


def test_ppo_clip_loss_by_hand():
    logp_new, logp_old, adv, mask = _ppo_inputs()
    out = ppo_clip_loss(logp_new, logp_old, adv, mask, 0.2)
    assert isinstance(out, PPOLoss)
    assert_close(out.loss, _t(-0.775))
    assert_close(out.clip_fraction, _t(0.75))  # |r - 1| > 0.2 for samples 1, 2, 3
    # E[(r - 1) - log r]
    expected_kl = sum((r - 1) - math.log(r) for r in RATIOS) / 4
    assert_close(out.approx_kl, _t(expected_kl))
    assert not out.approx_kl.requires_grad and not out.clip_fraction.requires_grad
    # d loss / d logp_new = -r A / 4 where the unclipped term is the minimum, 0 where clipped.
    (grad,) = torch.autograd.grad(out.loss, logp_new)
    assert_close(grad, _t([-1.1 * 2.0 / 4, 0.0, 0.0, -0.5 * 1.0 / 4]))


def test_ppo_clip_loss_ignores_masked_entries():
    logp_new, logp_old, adv, mask = _ppo_inputs()
    padded = ppo_clip_loss(
        torch.cat([logp_new, _t([float("inf")])]),
        torch.cat([logp_old, _t([0.0])]),
        torch.cat([adv, _t([float("nan")])]),
        torch.cat([mask, torch.tensor([False])]),
        0.2,
    )
    assert_close(padded.loss, _t(-0.775))
    assert_close(padded.clip_fraction, _t(0.75))


def test_per_task_reduction_weighs_tasks_equally():
    # Task 0 has one valid step with surrogate 1, task 1 has three with surrogate 3 (r = 1).
    logp = torch.zeros(2, 3, dtype=F64)
    adv = _t([[1.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    mask = _t([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert_close(ppo_clip_loss(logp, logp, adv, mask, 0.2).loss, _t(-(1 + 9) / 4))
    assert_close(ppo_clip_loss(logp, logp, adv, mask, 0.2, per_task=True).loss, _t(-(1 + 3) / 2))


def test_value_loss_plain_and_clipped_by_hand():
    value, returns, mask = _t([1.0, 2.0, 5.0]), _t([0.0, 4.0, 0.0]), _t([1.0, 1.0, 0.0])
    # 0.5 * mean(1, 4) = 1.25
    assert_close(value_loss(value, returns, mask), _t(1.25))
    # old = [1.5, 1.0]: v - old = [-0.5, 1.0] clipped to +-0.2 -> v_clip = [1.3, 1.2]
    # max(1, 1.69) = 1.69, max(4, 7.84) = 7.84 -> 0.5 * (1.69 + 7.84) / 2 = 2.3825
    old = _t([1.5, 1.0, 0.0])
    assert_close(value_loss(value, returns, mask, old_value=old, clip_eps=0.2), _t(2.3825))
    with pytest.raises(ValueError, match="together"):
        value_loss(value, returns, mask, old_value=old)


def test_mean_entropy_masked():
    entropy, mask = _t([[1.0, 2.0, 100.0]]), _t([[1.0, 1.0, 0.0]])
    assert_close(mean_entropy(entropy, mask), _t(1.5))


def test_promp_loss_adds_the_fixed_inner_kl_penalty():
    logp_new, logp_old, adv, mask = _ppo_inputs()
    inner_kl = _t([0.1, 0.3]).requires_grad_(True)  # one per inner step
    out = promp_loss(
        logp_new.view(1, 4), logp_old.view(1, 4), adv.view(1, 4), mask.view(1, 4), inner_kl
    )
    # eps 0.3: sample 1 clipped at 1.3, sample 2 at 0.7 * -1, sample 3 unclipped 0.5
    # clip loss = -(2.2 + 1.3 - 0.7 + 0.5) / 4 = -0.825; penalty = 5e-4 * mean(0.1, 0.3) = 1e-4
    assert_close(out.clip.loss, _t(-0.825))
    assert_close(out.inner_kl_penalty, _t(1e-4))
    assert_close(out.loss, _t(-0.825 + 1e-4))
    (grad,) = torch.autograd.grad(out.loss, inner_kl)
    assert_close(grad, _t([2.5e-4, 2.5e-4]))
    with pytest.raises(ValueError, match="inner_kl"):
        promp_loss(
            logp_new.view(1, 4),
            logp_old.view(1, 4),
            adv.view(1, 4),
            mask.view(1, 4),
            adv.view(2, 2),
        )


def test_ppo_bad_shapes_name_the_argument():
    x, mask = torch.zeros(2, 5), torch.ones(2, 5)
    with pytest.raises(ValueError, match="logp_old"):
        ppo_clip_loss(x, torch.zeros(5), x, mask, 0.2)
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip_loss(x, x, torch.zeros(2, 4), mask, 0.2)
    with pytest.raises(ValueError, match="mask"):
        ppo_clip_loss(x, x, x, torch.ones(2), 0.2)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_clip_loss(x, x, x, mask, 0.0)
    with pytest.raises(ValueError, match="returns"):
        value_loss(x, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="logp_new"):
        ppo_clip_loss(
            torch.zeros(5), torch.zeros(5), torch.zeros(5), torch.ones(5), 0.2, per_task=True
        )


# ----------------------------------------------------------------------------------------------
# Distributions vs torch.distributions
# ----------------------------------------------------------------------------------------------


def _gaussians():
    gen = torch.Generator().manual_seed(0)
    mean0 = torch.randn(4, 5, 3, generator=gen, dtype=F64)
    mean1 = torch.randn(4, 5, 3, generator=gen, dtype=F64)
    log_std0 = 0.3 * torch.randn(3, generator=gen, dtype=F64)  # state-independent, as in MAML
    log_std1 = 0.3 * torch.randn(4, 5, 3, generator=gen, dtype=F64)  # per state
    action = torch.randn(4, 5, 3, generator=gen, dtype=F64)
    return mean0, log_std0, mean1, log_std1, action


def _normal(mean, log_std):
    return Independent(Normal(mean, log_std.exp().expand_as(mean)), 1)


def test_diag_gaussian_matches_torch_distributions():
    mean0, log_std0, mean1, log_std1, action = _gaussians()
    assert_close(
        diag_gaussian_log_prob(mean0, log_std0, action), _normal(mean0, log_std0).log_prob(action)
    )
    assert_close(
        diag_gaussian_kl(mean0, log_std0, mean1, log_std1),
        kl_divergence(_normal(mean0, log_std0), _normal(mean1, log_std1)),
    )
    assert_close(
        diag_gaussian_kl(mean1, log_std1, mean0, log_std0),
        kl_divergence(_normal(mean1, log_std1), _normal(mean0, log_std0)),
    )
    assert_close(diag_gaussian_entropy(log_std1), _normal(mean1, log_std1).entropy())
    assert_close(diag_gaussian_entropy(log_std0), _normal(mean0[0, 0], log_std0).entropy())


def test_diag_gaussian_kl_gradcheck_and_vmap():
    mean0, log_std0, mean1, log_std1, action = _gaussians()
    inputs = (mean1[0].clone().requires_grad_(True), log_std1[0].clone().requires_grad_(True))
    assert torch.autograd.gradcheck(
        lambda m, s: diag_gaussian_kl(mean0[0], log_std0, m, s).sum(), inputs
    )
    batched = torch.func.vmap(diag_gaussian_log_prob, in_dims=(0, None, 0))(mean0, log_std0, action)
    assert_close(batched, diag_gaussian_log_prob(mean0, log_std0, action))


def test_categorical_matches_torch_distributions():
    gen = torch.Generator().manual_seed(1)
    logits0 = torch.randn(4, 5, 6, generator=gen, dtype=F64)
    logits1 = torch.randn(4, 5, 6, generator=gen, dtype=F64)
    action = torch.randint(0, 6, (4, 5), generator=gen)
    p0, p1 = Categorical(logits=logits0), Categorical(logits=logits1)
    assert_close(categorical_log_prob(logits0, action), p0.log_prob(action))
    assert_close(categorical_kl(logits0, logits1), kl_divergence(p0, p1))
    assert_close(categorical_entropy(logits0), p0.entropy())


def test_categorical_with_impossible_actions_stays_finite():
    logits = _t([[0.0, 1.0, float("-inf")]])
    assert_close(categorical_entropy(logits), Categorical(logits=logits).entropy())
    assert_close(
        categorical_kl(logits, _t([[0.5, 0.0, 2.0]])),
        kl_divergence(Categorical(logits=logits), Categorical(logits=_t([[0.5, 0.0, 2.0]]))),
    )


def test_distribution_bad_shapes_name_the_argument():
    mean = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="action"):
        diag_gaussian_log_prob(mean, torch.zeros(3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="log_std"):
        diag_gaussian_log_prob(mean, torch.zeros(2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="mean1"):
        diag_gaussian_kl(mean, torch.zeros(3), torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="action"):
        categorical_log_prob(torch.zeros(4, 6), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="action"):
        categorical_log_prob(torch.zeros(4, 6), torch.zeros(4))
    with pytest.raises(ValueError, match="logits1"):
        categorical_kl(torch.zeros(4, 6), torch.zeros(4, 5))

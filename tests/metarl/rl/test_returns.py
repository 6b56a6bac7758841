"""Returns, GAE and advantage normalisation: hand-computed answers first, then loop twins."""

import math

import pytest
import torch
from torch.testing import assert_close

from metarl.rl import GAEResult, discounted_returns, gae, masked_mean, normalize_advantages

GAMMA, LAM = 0.9, 0.5  # gamma * lam = 0.45


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Known answers on a 3-step episode: reward [1, 2, 3], value [0.5, 1.0, 1.5]
# ----------------------------------------------------------------------------------------------


def test_discounted_returns_three_steps_by_hand():
    # G2 = 3; G1 = 2 + 0.9 * 3 = 4.7; G0 = 1 + 0.9 * 4.7 = 5.23
    out = discounted_returns(_t([1.0, 2.0, 3.0]), _t([1.0, 1.0, 1.0]), GAMMA)
    assert_close(out, _t([5.23, 4.7, 3.0]))


def test_gae_three_steps_by_hand_terminal():
    # delta2 = 3 - 1.5 = 1.5                  (terminal: no bootstrap)
    # delta1 = 2 + 0.9 * 1.5 - 1.0 = 2.35
    # delta0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    # A2 = 1.5; A1 = 2.35 + 0.45 * 1.5 = 3.025; A0 = 1.4 + 0.45 * 3.025 = 2.76125
    out = gae(_t([1.0, 2.0, 3.0]), _t([0.5, 1.0, 1.5]), _t([1.0, 1.0, 1.0]), GAMMA, LAM)
    assert isinstance(out, GAEResult)
    assert_close(out.advantages, _t([2.76125, 3.025, 1.5]))
    assert_close(out.returns, _t([3.26125, 4.025, 3.0]))


def test_truncation_bootstraps_from_last_value():
    reward, value, mask = _t([1.0, 2.0, 3.0]), _t([0.5, 1.0, 1.5]), _t([1.0, 1.0, 1.0])
    last_value = _t(2.0)
    # G2 = 3 + 0.9 * 2 = 4.8; G1 = 2 + 0.9 * 4.8 = 6.32; G0 = 1 + 0.9 * 6.32 = 6.688
    assert_close(discounted_returns(reward, mask, GAMMA, last_value), _t([6.688, 6.32, 4.8]))
    # delta2 = 3 + 0.9 * 2 - 1.5 = 3.3; A1 = 2.35 + 0.45 * 3.3 = 3.835
    # A0 = 1.4 + 0.45 * 3.835 = 3.12575
    out = gae(reward, value, mask, GAMMA, LAM, last_value=last_value)
    assert_close(out.advantages, _t([3.12575, 3.835, 3.3]))


def test_done_at_last_step_overrides_last_value():
    reward, value, mask = _t([1.0, 2.0, 3.0]), _t([0.5, 1.0, 1.5]), _t([1.0, 1.0, 1.0])
    done = _t([0.0, 0.0, 1.0])
    out = gae(reward, value, mask, GAMMA, LAM, last_value=_t(123.0), done=done)
    assert_close(out.advantages, _t([2.76125, 3.025, 1.5]))
    returns = discounted_returns(reward, mask, GAMMA, last_value=_t(123.0), done=done)
    assert_close(returns, _t([5.23, 4.7, 3.0]))


def test_padding_gives_zeros_and_no_bootstrap():
    # A 2-step episode padded to 3 steps; the padding holds garbage (99, 7, nan) and a
    # last_value for the row is ignored because the row is not running at the last index.
    reward = _t([1.0, 2.0, 99.0])
    value = _t([0.5, 1.0, float("nan")])
    mask = torch.tensor([True, True, False])
    # delta1 = 2 - 1.0 = 1.0; delta0 = 1 + 0.9 * 1.0 - 0.5 = 1.4; A0 = 1.4 + 0.45 * 1.0 = 1.85
    out = gae(reward, value, mask, GAMMA, LAM, last_value=_t(100.0))
    assert_close(out.advantages, _t([1.85, 1.0, 0.0]))
    assert_close(out.returns, _t([2.35, 2.0, 0.0]))
    assert_close(discounted_returns(reward, mask, GAMMA, _t(100.0)), _t([2.8, 2.0, 0.0]))


# ----------------------------------------------------------------------------------------------
# RL² trials: bootstrap across episodes within a trial, never across trials
# ----------------------------------------------------------------------------------------------


def test_rl2_trial_bootstraps_across_episode_boundary():
    # One trial = episode 1 (steps 0, 1) + episode 2 (steps 2, 3), no done passed.
    reward, value = _t([1.0, 2.0, 3.0, 4.0]), _t([0.5, 1.0, 1.5, 2.0])
    mask = torch.ones(4, dtype=torch.bool)
    # delta3 = 4 - 2.0 = 2.0; delta2 = 3 + 0.9 * 2.0 - 1.5 = 3.3
    # delta1 = 2 + 0.9 * 1.5 - 1.0 = 2.35   <- uses value of episode 2's first state (1.5)
    # delta0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    # A3 = 2.0; A2 = 3.3 + 0.45 * 2 = 4.2; A1 = 2.35 + 0.45 * 4.2 = 4.24
    # A0 = 1.4 + 0.45 * 4.24 = 3.308
    out = gae(reward, value, mask, GAMMA, LAM)
    assert_close(out.advantages, _t([3.308, 4.24, 4.2, 2.0]))
    # Changing the value of episode 2's first state changes A at episode 1's last step.
    bumped = gae(reward, _t([0.5, 1.0, 2.5, 2.0]), mask, GAMMA, LAM)
    assert_close(bumped.advantages[1] - out.advantages[1], _t(0.9 * 1.0 + 0.45 * -1.0))


def test_rl2_trials_in_separate_rows_do_not_interact():
    reward = _t([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    value = _t([[0.5, 1.0, 1.5, 2.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.ones(2, 4)
    out = gae(reward, value, mask, GAMMA, LAM)
    assert_close(out.advantages[0], _t([3.308, 4.24, 4.2, 2.0]))
    other = gae(reward, value + _t([[0.0] * 4, [100.0] * 4]), mask, GAMMA, LAM)
    assert_close(other.advantages[0], out.advantages[0])


def test_rl2_two_trials_in_one_row_are_cut_by_done():
    # Trial A = steps 0-3 (two episodes), trial B = steps 4-5; done marks trial A's end only.
    reward = _t([1.0, 2.0, 3.0, 4.0, 50.0, 60.0])
    value = _t([0.5, 1.0, 1.5, 2.0, 70.0, 80.0])
    done = _t([0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    out = gae(reward, value, torch.ones(6), GAMMA, LAM, done=done)
    assert_close(out.advantages[:4], _t([3.308, 4.24, 4.2, 2.0]))
    alone = gae(reward[4:], value[4:], torch.ones(2), GAMMA, LAM)
    assert_close(out.advantages[4:], alone.advantages)


# ----------------------------------------------------------------------------------------------
# Trusted twins
# ----------------------------------------------------------------------------------------------


def _loop_gae(reward, value, length, gamma, lam, last_value, bootstrap):
    """Plain per-episode Python loop over floats."""
    adv = [0.0] * len(reward)
    next_adv, next_value = 0.0, (last_value if bootstrap else 0.0)
    for t in reversed(range(length)):
        delta = reward[t] + gamma * next_value - value[t]
        next_adv = delta + gamma * lam * next_adv
        adv[t], next_value = next_adv, value[t]
    return adv


def _random_batch(gen, tasks=3, episodes=4, horizon=7):
    reward = torch.randn(tasks, episodes, horizon, generator=gen, dtype=torch.float64)
    value = torch.randn(tasks, episodes, horizon, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, horizon + 1, (tasks, episodes), generator=gen)
    mask = torch.arange(horizon) < lengths.unsqueeze(-1)
    last_value = torch.randn(tasks, episodes, generator=gen, dtype=torch.float64)
    return reward, value, lengths, mask, last_value


def test_batched_gae_equals_per_episode_loop():
    gen = torch.Generator().manual_seed(0)
    reward, value, lengths, mask, last_value = _random_batch(gen)
    horizon = reward.shape[-1]
    out = gae(reward, value, mask, 0.99, 0.95, last_value=last_value)
    for k in range(reward.shape[0]):
        for e in range(reward.shape[1]):
            n = int(lengths[k, e])
            expected = _loop_gae(
                reward[k, e].tolist(),
                value[k, e].tolist(),
                n,
                0.99,
                0.95,
                float(last_value[k, e]),
                bootstrap=n == horizon,
            )
            assert_close(out.advantages[k, e], _t(expected))


def test_gae_with_lambda_one_equals_returns_minus_value():
    gen = torch.Generator().manual_seed(1)
    reward, value, _, mask, last_value = _random_batch(gen)
    out = gae(reward, value, mask, 0.97, 1.0, last_value=last_value)
    returns = discounted_returns(reward, mask, 0.97, last_value=last_value)
    assert_close(out.advantages, (returns - value) * mask)
    assert_close(out.returns, returns)


def test_gae_with_lambda_zero_is_td_error():
    reward, value, mask = _t([1.0, 2.0, 3.0]), _t([0.5, 1.0, 1.5]), torch.ones(3)
    assert_close(gae(reward, value, mask, GAMMA, 0.0).advantages, _t([1.4, 2.35, 1.5]))


def test_gae_float32_and_no_argument_mutation():
    reward = torch.ones(2, 3, 5)
    value = torch.zeros(2, 3, 5)
    mask = torch.ones(2, 3, 5)
    copies = [reward.clone(), value.clone(), mask.clone()]
    out = gae(reward, value, mask, 0.99, 1.0)
    assert out.advantages.dtype == torch.float32
    for before, after in zip(copies, [reward, value, mask], strict=True):
        assert torch.equal(before, after)


# ----------------------------------------------------------------------------------------------
# Normalisation and masked means
# ----------------------------------------------------------------------------------------------


def test_normalize_advantages_by_hand_and_padding_zero():
    adv = _t([[1.0, 2.0, 3.0, 1000.0]])
    mask = _t([[1.0, 1.0, 1.0, 0.0]])
    # mean 2, population std sqrt(2/3)
    s = math.sqrt(2.0 / 3.0)
    out = normalize_advantages(adv, mask, eps=0.0)
    assert_close(out, _t([[-1.0 / s, 0.0, 1.0 / s, 0.0]]))


def test_normalize_advantages_per_task_vs_whole_batch():
    gen = torch.Generator().manual_seed(2)
    adv = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64) * _t([1.0, 5.0, 20.0]).view(
        3, 1, 1
    ) + _t([0.0, 3.0, -7.0]).view(3, 1, 1)
    mask = torch.rand(3, 4, 6, generator=gen) > 0.3
    per_task = normalize_advantages(adv, mask)
    for k in range(3):
        valid = per_task[k][mask[k]]
        assert_close(valid.mean(), _t(0.0), atol=1e-12, rtol=0)
        assert_close(valid.std(unbiased=False), _t(1.0))
    whole = normalize_advantages(adv, mask, per_task=False)
    assert_close(whole[mask].mean(), _t(0.0), atol=1e-12, rtol=0)
    assert_close(whole[mask].std(unbiased=False), _t(1.0))
    assert torch.all(whole[~mask] == 0) and torch.all(per_task[~mask] == 0)


def test_masked_mean_ignores_non_finite_padding():
    x = _t([1.0, 3.0, float("inf"), float("nan")])
    mask = torch.tensor([True, True, False, False])
    assert_close(masked_mean(x, mask), _t(2.0))
    assert_close(masked_mean(x.view(2, 2), mask.view(2, 2), dim=1), _t([2.0, 0.0]))


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------


def test_bad_shapes_name_the_argument():
    reward, value, mask = torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(2, 5)
    with pytest.raises(ValueError, match="mask"):
        gae(reward, value, torch.ones(2, 4), 0.99, 1.0)
    with pytest.raises(ValueError, match="value"):
        gae(reward, torch.zeros(5), mask, 0.99, 1.0)
    with pytest.raises(ValueError, match="last_value"):
        gae(reward, value, mask, 0.99, 1.0, last_value=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="done"):
        discounted_returns(reward, mask, 0.99, done=torch.zeros(5))
    with pytest.raises(ValueError, match="reward"):
        discounted_returns(torch.zeros(()), torch.ones(()), 0.99)
    with pytest.raises(ValueError, match="mask"):
        normalize_advantages(reward, torch.ones(5))
    with pytest.raises(ValueError, match="adv"):
        normalize_advantages(torch.zeros(5), torch.ones(5))


def test_bad_hyperparameters_and_dtypes():
    reward, mask = torch.zeros(2, 5), torch.ones(2, 5)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(reward, mask, 1.5)
    with pytest.raises(ValueError, match="lam"):
        gae(reward, reward, mask, 0.99, -0.1)
    with pytest.raises(TypeError, match="reward"):
        discounted_returns(torch.zeros(2, 5, dtype=torch.long), mask, 0.99)
    with pytest.raises(TypeError, match="value"):
        gae(reward, [0.0] * 5, mask, 0.99, 1.0)

"""RewardScaler: the running spread of discounted returns against a hand computation."""

import numpy as np
import pytest
import torch

from metarl.rl.reward_scale import RewardScaler

CPU = torch.device("cpu")


def _returns_by_hand(rewards, mask, gamma):
    out = []
    for row, valid in zip(rewards.tolist(), mask.tolist(), strict=True):
        running = 0.0
        for r, v in zip(row, valid, strict=True):
            if v:
                running = gamma * running + r
                out.append(running)
    return out


def _batch(seed, n=3, length=7):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(n, length, generator=gen) * 3.0 - 1.0
    mask = torch.ones(n, length)
    mask[0, 5:] = 0.0  # an early end
    mask[1, 2] = 0.0  # padding inside a row: neither counted nor discounted
    return rewards * mask, mask


def test_running_variance_and_scale_equal_the_hand_computation_over_two_batches():
    gamma = 0.9
    scaler = RewardScaler(gamma, CPU)
    assert float(scaler.std) == pytest.approx(1.0)  # nothing seen yet: rewards unchanged
    seen = []
    for seed in (0, 1):
        rewards, mask = _batch(seed)
        scaler.update(rewards, mask)
        seen += _returns_by_hand(rewards, mask, gamma)
        expected = np.sqrt(np.var(seen) + 1e-8)
        assert float(scaler.std) == pytest.approx(expected, rel=1e-12)
        assert int(scaler.count) == len(seen)
        torch.testing.assert_close(scaler.scale(rewards), rewards / torch.tensor(expected).float())
    assert scaler.scale(rewards).dtype == torch.float32


def test_reduce_adds_every_ranks_returns():
    rewards, mask = _batch(2)
    twice = RewardScaler(0.99, CPU)
    twice.update(rewards, mask, reduce=lambda tensors: tensors[0].mul_(2))  # two equal ranks
    both = RewardScaler(0.99, CPU)
    both.update(torch.cat([rewards, rewards]), torch.cat([mask, mask]))
    for key, value in both.state_dict().items():
        torch.testing.assert_close(twice.state_dict()[key], value, rtol=1e-12, atol=1e-12)


def test_state_round_trip_and_bad_inputs():
    rewards, mask = _batch(3)
    scaler = RewardScaler(0.97, CPU)
    scaler.update(rewards, mask)
    copy = RewardScaler(0.97, CPU)
    copy.load_state_dict(scaler.state_dict())
    assert float(copy.std) == float(scaler.std) != 1.0
    with pytest.raises(KeyError, match="m2"):
        copy.load_state_dict({"count": 1.0, "mean": 0.0})
    with pytest.raises(ValueError, match="mask must have the shape of rewards"):
        scaler.update(rewards, mask[:, :3])
    with pytest.raises(ValueError, match="gamma must be in"):
        RewardScaler(1.5, CPU)

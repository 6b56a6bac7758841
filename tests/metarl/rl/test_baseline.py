"""Linear feature baseline: exact features, exact recovery, per-task independence, retry rule."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import metarl.rl.baseline as baseline_module
from metarl.rl import (
    discounted_returns,
    fit_linear_baseline,
    linear_baseline_features,
    linear_baseline_values,
    predict_linear_baseline,
)


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def _batch(seed, tasks=2, episodes=3, horizon=10, obs_dim=2):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(tasks, episodes, horizon, obs_dim, generator=gen, dtype=torch.float64)
    lengths = torch.randint(horizon // 2, horizon + 1, (tasks, episodes), generator=gen)
    mask = torch.arange(horizon) < lengths.unsqueeze(-1)
    return obs, mask, gen


def test_features_exactly_as_specified():
    obs = _t([[1.0, -2.0], [3.0, 4.0], [-20.0, 0.5]])  # [time=3, obs_dim=2]
    feats = linear_baseline_features(obs)
    assert feats.shape == (3, 2 * 2 + 4)
    expected = _t(
        [
            # o1,   o2,  o1^2, o2^2, t/100, (t/100)^2, (t/100)^3, 1
            [1.0, -2.0, 1.0, 4.0, 0.00, 0.0000, 0.000000, 1.0],
            [3.0, 4.0, 9.0, 16.0, 0.01, 0.0001, 0.000001, 1.0],
            [-20.0, 0.5, 400.0, 0.25, 0.02, 0.0004, 0.000008, 1.0],
        ]
    )
    assert_close(feats, expected)
    clipped = linear_baseline_features(obs, obs_clip=10.0)  # rllab's clip
    assert_close(clipped[2, :4], _t([-10.0, 0.5, 100.0, 0.25]))
    assert linear_baseline_features(torch.zeros(4, 5, 7, 3)).shape == (4, 5, 7, 10)


def test_fit_recovers_exact_coefficients_and_ignores_padding():
    # A horizon of 100 spans t/100 in [0, 1), so the time features are well conditioned.
    obs, mask, gen = _batch(0, horizon=100)
    coeffs = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    returns = torch.einsum("ketf,kf->ket", linear_baseline_features(obs), coeffs)
    returns = torch.where(mask, returns, _t(1e6))  # garbage on padding must not matter
    fitted = fit_linear_baseline(obs, returns, mask, reg=1e-12)
    assert fitted.shape == (2, 8)
    assert_close(fitted, coeffs, atol=1e-6, rtol=1e-6)
    values = predict_linear_baseline(fitted, obs, mask)
    assert_close(values, torch.where(mask, returns, _t(0.0)), atol=1e-6, rtol=1e-6)


def test_fit_equals_rllab_normal_equations_per_task():
    obs, mask, gen = _batch(1)
    rewards = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64)
    returns = discounted_returns(rewards, mask, 0.99)
    fitted = fit_linear_baseline(obs, returns, mask)
    for k in range(2):
        x = linear_baseline_features(obs[k])[mask[k]].numpy()
        y = returns[k][mask[k]].numpy()
        reference = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(8), x.T @ y, rcond=None)[0]
        assert_close(fitted[k], torch.from_numpy(reference), atol=1e-8, rtol=1e-6)


def test_per_task_fits_are_independent():
    obs, mask, gen = _batch(2)
    returns = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64)
    before = fit_linear_baseline(obs, returns, mask)
    obs2, returns2, mask2 = obs.clone(), returns.clone(), mask.clone()
    obs2[1] = torch.randn(3, 10, 2, generator=gen, dtype=torch.float64)
    returns2[1] = 50.0 * torch.randn(3, 10, generator=gen, dtype=torch.float64)
    mask2[1, 0, 3:] = False
    after = fit_linear_baseline(obs2, returns2, mask2)
    assert torch.equal(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_values_zero_on_padding_and_convenience_matches():
    obs, mask, gen = _batch(3)
    returns = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64)
    values = linear_baseline_values(obs, returns, mask)
    assert values.shape == (2, 3, 10)
    assert torch.all(values[~mask] == 0)
    coeffs = fit_linear_baseline(obs, returns, mask)
    assert_close(values, predict_linear_baseline(coeffs, obs, mask))


def test_float32_batch_stays_float32():
    obs, mask, gen = _batch(4)
    returns = torch.randn(2, 3, 10, generator=gen)
    values = linear_baseline_values(obs.float(), returns, mask)
    assert values.dtype == torch.float32


def test_retry_rule_raises_reg_tenfold_for_failing_tasks_only(monkeypatch):
    obs, mask, gen = _batch(5)
    returns = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64)
    real_solve = baseline_module._solve_ridge
    seen = []

    def flaky_solve(xtx, xty, reg):
        # Task 1 "fails" (non-finite solution) while its reg is below 1e-3.
        seen.append(reg.clone())
        solution, ok = real_solve(xtx, xty, reg)
        bad = torch.tensor([False, True]) & (reg < 1e-3 * (1 - 1e-9))
        solution = torch.where(bad.unsqueeze(-1), torch.full_like(solution, float("nan")), solution)
        return solution, ok & ~bad

    monkeypatch.setattr(baseline_module, "_solve_ridge", flaky_solve)
    fitted = fit_linear_baseline(obs, returns, mask, reg=1e-5)
    # Attempts: reg 1e-5 (task 1 fails), 1e-4 (fails), 1e-3 (succeeds) -> three solves.
    assert len(seen) == 3
    assert_close(seen[-1], _t([1e-5, 1e-3]))
    monkeypatch.undo()
    assert_close(fitted[0], fit_linear_baseline(obs, returns, mask, reg=1e-5)[0])
    assert_close(fitted[1], fit_linear_baseline(obs, returns, mask, reg=1e-3)[1])


def test_no_finite_solution_after_all_attempts_raises():
    obs, mask, gen = _batch(6)
    obs[1, 0, 0, 0] = float("inf")
    returns = torch.randn(2, 3, 10, generator=gen, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"tasks \[1\]"):
        fit_linear_baseline(obs, returns, mask)


def test_bad_shapes_name_the_argument():
    obs, mask = torch.zeros(2, 3, 10, 4), torch.ones(2, 3, 10)
    returns = torch.zeros(2, 3, 10)
    with pytest.raises(ValueError, match="obs"):
        fit_linear_baseline(torch.zeros(2, 30, 4), returns, mask)
    with pytest.raises(ValueError, match="returns"):
        fit_linear_baseline(obs, torch.zeros(2, 3, 9), mask)
    with pytest.raises(ValueError, match="mask"):
        fit_linear_baseline(obs, returns, torch.ones(3, 10))
    with pytest.raises(ValueError, match="coeffs"):
        predict_linear_baseline(torch.zeros(2, 10), obs, mask)  # needs 2 * 4 + 4 = 12
    with pytest.raises(ValueError, match="reg"):
        fit_linear_baseline(obs, returns, mask, reg=0.0)
    with pytest.raises(ValueError, match="obs_clip"):
        linear_baseline_features(obs, obs_clip=-1.0)

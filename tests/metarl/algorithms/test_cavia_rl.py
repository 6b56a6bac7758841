"""CAVIA for RL: MAML-TRPO whose inner step adapts only a context input of the policy.

The inner step through :func:`metarl.algorithms.maml_rl.adapt_policy` must equal a hand-written
``torch.autograd`` step on a zero context (float64), leave the network untouched, and stay
differentiable with respect to θ (second order); the context is no part of θ; bad configs fail.
"""

from __future__ import annotations

import pytest
import torch

from metarl.algorithms import maml_rl as M
from metarl.algorithms.maml_rl import TaskData
from metarl.algorithms.maml_rl_config import (
    AlgoConfig,
    InnerConfig,
    MAMLRLConfig,
    PolicyConfig,
)
from metarl.rl.context import CONTEXT, ContextPolicy
from metarl.rl.policies import GaussianMLPPolicy, policy_forward

F64 = torch.float64
OBS, ACT, CTX, TASKS = 3, 2, 4, 2


def _policy() -> ContextPolicy:
    inner = GaussianMLPPolicy(
        OBS + CTX, ACT, (5,), "tanh", 0.8, generator=torch.Generator().manual_seed(0)
    )
    return ContextPolicy(inner, CTX).double()


def _batch(seed: int) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(TASKS, 3, 4, OBS, generator=g, dtype=F64)
    actions = torch.randn(TASKS, 3, 4, ACT, generator=g, dtype=F64)
    adv = torch.randn(TASKS, 3, 4, generator=g, dtype=F64)
    mask = torch.ones(TASKS, 3, 4, dtype=F64)
    return TaskData(obs, actions, adv, mask, torch.zeros(TASKS, 3, 4, dtype=F64))


def test_context_policy_reads_observation_and_context_and_keeps_the_context_out_of_theta():
    policy = _policy()
    theta = M.init_params(policy)
    assert all(not k.endswith(CONTEXT) for k in theta)  # the outer update never sees it
    obs = torch.randn(6, OBS, dtype=F64)
    want = policy.policy(torch.cat([obs, torch.zeros(6, CTX, dtype=F64)], -1))
    torch.testing.assert_close(policy(obs).loc, want.loc)
    c = torch.arange(CTX, dtype=F64)
    got = policy_forward(policy, {**theta, CONTEXT: c}, obs, False)
    torch.testing.assert_close(got.loc, policy.policy(torch.cat([obs, c.expand(6, CTX)], -1)).loc)


def test_the_inner_step_adapts_only_the_context_and_equals_a_hand_written_step():
    policy, lr = _policy(), 0.7
    theta = M.init_params(policy)
    data = _batch(0)
    path = M.adapt_policy(policy, theta, [data], [lr], first_order=False)
    adapted = path[1]
    for name, value in theta.items():
        assert torch.equal(adapted[name], value.expand_as(adapted[name]))
    for t in range(TASKS):
        c = torch.zeros(CTX, dtype=F64, requires_grad=True)
        one = TaskData(*(x[t] for x in data))
        loss = M.inner_loss(policy, "reinforce", {**theta, CONTEXT: c}, one)
        (g,) = torch.autograd.grad(loss, c)
        torch.testing.assert_close(adapted[CONTEXT][t], -lr * g, rtol=1e-12, atol=1e-12)
    # second order: the adapted context depends on θ
    (dw,) = torch.autograd.grad(adapted[CONTEXT].sum(), [theta["policy.net.head.weight"]])
    assert dw.abs().sum() > 0
    # a later step continues from the per-task contexts (the evaluation's fine-tuning)
    later = M.adapt_policy(policy, adapted, [_batch(1)], [lr], first_order=True, per_task=True)
    assert not torch.allclose(later[1][CONTEXT], adapted[CONTEXT])


def test_cavia_config_needs_a_context_and_maml_refuses_one():
    with pytest.raises(ValueError, match="context_size must be >= 1 for algo.name=cavia_trpo"):
        MAMLRLConfig(algo=AlgoConfig(name="cavia_trpo"))
    with pytest.raises(ValueError, match="context_size must be >= 1 for algo.name=cavia_trpo"):
        MAMLRLConfig(algo=AlgoConfig(name="maml_trpo"), policy=PolicyConfig(context_size=3))
    with pytest.raises(ValueError, match="learn_lr does not apply to cavia_trpo"):
        MAMLRLConfig(
            algo=AlgoConfig(name="cavia_trpo"),
            policy=PolicyConfig(context_size=3),
            inner=InnerConfig(learn_lr=True),
        )
    with pytest.raises(ValueError, match="context_size must be >= 0"):
        PolicyConfig(context_size=-1)
    with pytest.raises(ValueError, match="context_size must be an int >= 1"):
        ContextPolicy(GaussianMLPPolicy(3, 2, (4,)), 0)

"""The sampler against a step-by-step twin: the same episodes, bit for bit.

:func:`~metarl.rl.sampler.sample_episodes` keeps rewards and terminations on the host until the
episode ends, computes the log-probabilities in one call and runs per-task MLP policies with one
``bmm`` per layer (:func:`~metarl.rl.policies.batched_policy_forward`) instead of ``vmap``. The
twin below is the plain loop: ``vmap`` forward, log-probability, reward, mask and termination
tensors built at every step. Every field must be equal exactly, not just close, so learning
results do not move.
"""

import numpy as np
import pytest
import torch

import envs
from envs.vector import TaskVectorEnv, make_vec
from metarl.nn import MLP
from metarl.rl import policies
from metarl.rl.context import ContextPolicy
from metarl.rl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    batched_policy_forward,
    policy_forward,
)
from metarl.rl.sampler import EpisodeBatch, actions_to_env, sample_episodes
from tests.helpers.counting_env import CounterEngine, CounterTask

CPU = torch.device("cpu")


@torch.no_grad()
def _twin(vec, policy, params, tasks, episodes, per_task, generator, seed):
    """The step-by-step sampler (vmap forward, per-step tensors)."""
    num_tasks, num_envs, horizon = len(tasks), vec.num_envs, vec.horizon
    obs_np, _ = vec.reset(seed=seed, options={"tasks": [t for t in tasks for _ in range(episodes)]})
    steps = {k: [] for k in ("obs", "actions", "rewards", "logp", "dones", "mask")}
    alive = torch.ones(num_envs)
    for _ in range(horizon):
        obs = torch.as_tensor(obs_np, dtype=torch.float32)
        if per_task:
            out = policy_forward(policy, params, obs.view(num_tasks, episodes, -1), True)
            out = out.apply(lambda x: x.reshape(num_envs, *x.shape[2:]))
        else:
            out = policy_forward(policy, params, obs, False)
        action = policy.sample(out, generator)
        steps["logp"].append(policy.log_prob(out, action))
        steps["obs"].append(obs)
        steps["actions"].append(action)
        obs_np, reward, terminated, _, _ = vec.step(actions_to_env(action, vec))
        done = torch.as_tensor(terminated, dtype=torch.float32)
        steps["mask"].append(alive)
        steps["rewards"].append(torch.as_tensor(reward, dtype=torch.float32) * alive)
        steps["dones"].append(done * alive)
        alive = alive * (1.0 - done)
    stacked = {k: torch.stack(v, dim=1) for k, v in steps.items()}
    stacked = {k: v.view(num_tasks, episodes, horizon, *v.shape[2:]) for k, v in stacked.items()}
    return EpisodeBatch(
        *(stacked[k] for k in ("obs", "actions", "rewards", "logp", "dones", "mask"))
    )


def _per_task(policy, num_tasks, seed):
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v.detach() + 0.3 * torch.randn(num_tasks, *v.shape, generator=gen)
        for k, v in policy.named_parameters()
    }


def _assert_identical(got, want):
    for name, x, y in zip(EpisodeBatch._fields, got, want, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.equal(x, y), name


POLICIES = {
    "gaussian-tanh": lambda: GaussianMLPPolicy(
        2, 2, (16, 16), "tanh", generator=torch.Generator().manual_seed(0)
    ),
    "gaussian-relu": lambda: GaussianMLPPolicy(
        2, 2, (8,), "relu", init_std=0.5, generator=torch.Generator().manual_seed(0)
    ),
    "context": lambda: ContextPolicy(
        GaussianMLPPolicy(5, 2, (8,), generator=torch.Generator().manual_seed(0)), 3
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("per_task", [False, True])
def test_navigation_episodes_equal_the_step_by_step_twin(name, per_task):
    num_tasks, episodes = 3, 4
    vec = make_vec("metarl/Navigation2D-v0", num_tasks * episodes, horizon=7)
    tasks = envs.get_task_distribution("metarl/Navigation2D-v0").sample(
        num_tasks, np.random.default_rng(0)
    )
    policy = POLICIES[name]()
    shared = {k: v.detach() for k, v in policy.named_parameters()}
    params = _per_task(policy, num_tasks, 1) if per_task else shared
    if name == "context":  # the context is a buffer: give functional_call its per-task values
        params = {**params, "context": torch.zeros(num_tasks, 3) if per_task else torch.zeros(3)}
    kwargs = {"per_task_params": per_task, "device": CPU, "seed": 3}
    got = sample_episodes(
        vec, policy, params, tasks, episodes, generator=torch.Generator().manual_seed(7), **kwargs
    )
    want = _twin(
        vec, policy, params, tasks, episodes, per_task, torch.Generator().manual_seed(7), 3
    )
    _assert_identical(got, want)


def test_terminating_episodes_and_categorical_actions_equal_the_twin():
    """Masks after termination, and a categorical policy (Gumbel-max, integer actions)."""
    vec = TaskVectorEnv(CounterEngine, 6, engine_kwargs={"start_noise": 0.5}, horizon=6)
    tasks = [CounterTask(0.8, limit=2.0), CounterTask(-0.2, limit=1.0), CounterTask(0.4)]
    policy = GaussianMLPPolicy(2, 1, (4,), generator=torch.Generator().manual_seed(0))
    params = _per_task(policy, 3, 2)
    got = sample_episodes(
        vec, policy, params, tasks, 2, per_task_params=True,
        generator=torch.Generator().manual_seed(1), device=CPU, seed=0,
    )  # fmt: skip
    want = _twin(vec, policy, params, tasks, 2, True, torch.Generator().manual_seed(1), 0)
    _assert_identical(got, want)
    assert got.mask.min() == 0 and got.dones.sum() > 0  # some episodes did terminate

    bandit = make_vec("metarl/Bandit-K5-v0", 6, horizon=5)
    cat = CategoricalMLPPolicy(1, 5, (8,), generator=torch.Generator().manual_seed(0))
    tasks = envs.get_task_distribution("metarl/Bandit-K5-v0").sample(3, np.random.default_rng(0))
    params = _per_task(cat, 3, 4)
    got = sample_episodes(
        bandit, cat, params, tasks, 2, per_task_params=True,
        generator=torch.Generator().manual_seed(2), device=CPU, seed=0,
    )  # fmt: skip
    want = _twin(bandit, cat, params, tasks, 2, True, torch.Generator().manual_seed(2), 0)
    _assert_identical(got, want)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_batched_forward_is_vmap_bit_for_bit(activation, monkeypatch):
    """At HalfCheetahVel's sizes (40 tasks × 20 episodes, 17-d observations, 2 × 64 hidden)."""
    policy = GaussianMLPPolicy(
        17, 6, (64, 64), activation, generator=torch.Generator().manual_seed(0)
    )
    params = _per_task(policy, 40, 1)
    obs = 3.0 * torch.randn(40, 20, 17, generator=torch.Generator().manual_seed(2))
    want = policy_forward(policy, params, obs, True)

    def no_vmap(*args, **kwargs):
        raise AssertionError("the MLP policy should not take the vmap path")

    monkeypatch.setattr(policies, "policy_forward", no_vmap)
    got = batched_policy_forward(policy, params, obs)
    assert torch.equal(got.loc, want.loc) and torch.equal(got.log_std, want.log_std)
    assert got.log_std.shape == (40, 20, 6)


def test_batched_forward_falls_back_to_vmap_for_other_nets():
    """A policy whose net is not a plain MLP, or params without a task axis, take vmap's path."""
    policy = GaussianMLPPolicy(3, 2, (4,), generator=torch.Generator().manual_seed(0))
    policy.net = torch.nn.Sequential(MLP(3, [4], 2))  # not an MLP at the top: no fast path
    params = _per_task(policy, 2, 0)
    obs = torch.randn(2, 5, 3)
    got, want = (
        batched_policy_forward(policy, params, obs),
        policy_forward(policy, params, obs, True),
    )
    assert torch.equal(got.loc, want.loc)
    with pytest.raises(ValueError, match="3 tasks on its leading axis but params have 2"):
        batched_policy_forward(policy, params, torch.randn(3, 5, 3))

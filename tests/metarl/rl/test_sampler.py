"""Policies and the episode sampler: shapes, masks, per-task parameters, determinism."""

import numpy as np
import pytest
import torch

import envs
from envs.vector import make_vec
from metarl.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, policy_forward
from metarl.rl.sampler import sample_episodes
from tests.helpers.counting_env import CounterEngine, CounterTask

CPU = torch.device("cpu")


def _nav(num_tasks=3, episodes=2, horizon=6):
    vec = make_vec("metarl/Navigation2D-v0", num_tasks * episodes, horizon=horizon)
    tasks = envs.get_task_distribution("metarl/Navigation2D-v0").sample(
        num_tasks, np.random.default_rng(0)
    )
    policy = GaussianMLPPolicy(2, 2, (8,), generator=torch.Generator().manual_seed(0))
    return vec, tasks, policy


def test_gaussian_policy_log_prob_matches_torch_distributions():
    policy = GaussianMLPPolicy(3, 2, (4,), init_std=0.5, generator=torch.Generator().manual_seed(1))
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    out = policy(obs)
    action = policy.sample(out, torch.Generator().manual_seed(3))
    ref = torch.distributions.Normal(out.loc, out.log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(policy.log_prob(out, action), ref)
    torch.testing.assert_close(out.log_std[0], torch.log(torch.tensor([0.5, 0.5])))


def test_categorical_policy_samples_follow_the_logits():
    policy = CategoricalMLPPolicy(1, 3, (4,), generator=torch.Generator().manual_seed(0))
    params = {k: torch.zeros_like(v) for k, v in policy.named_parameters()}
    params["net.head.bias"] = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    out = policy_forward(policy, params, torch.zeros(20000, 1), batched=False)
    actions = policy.sample(out, torch.Generator().manual_seed(0))
    freq = torch.bincount(actions, minlength=3).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.01, rtol=0)


def test_sampler_shapes_masks_and_task_layout():
    vec, tasks, policy = _nav()
    params = dict(policy.named_parameters())
    batch = sample_episodes(
        vec,
        policy,
        params,
        tasks,
        2,
        per_task_params=False,
        generator=torch.Generator().manual_seed(0),
        device=CPU,
        seed=0,
    )
    assert batch.obs.shape == (3, 2, 6, 2) and batch.actions.shape == (3, 2, 6, 2)
    assert batch.rewards.shape == batch.mask.shape == batch.log_probs.shape == (3, 2, 6)
    assert vec.tasks == [tasks[0], tasks[0], tasks[1], tasks[1], tasks[2], tasks[2]]
    # Navigation2D: the reward is minus the distance to this task's goal after the move.
    goal = torch.tensor(tasks[1].goal, dtype=torch.float32)
    pos = batch.obs[1, 0, 1]  # position after the first step
    torch.testing.assert_close(batch.rewards[1, 0, 0], -(pos - goal).norm(), atol=1e-5, rtol=0)
    assert torch.all(batch.obs[:, :, 0] == 0)


def test_per_task_parameters_equal_shared_ones_when_identical():
    vec, tasks, policy = _nav()
    params = dict(policy.named_parameters())
    stacked = {k: v.detach().expand(3, *v.shape) for k, v in params.items()}
    a = sample_episodes(
        vec,
        policy,
        params,
        tasks,
        2,
        per_task_params=False,
        generator=torch.Generator().manual_seed(5),
        device=CPU,
        seed=1,
    )
    b = sample_episodes(
        vec,
        policy,
        stacked,
        tasks,
        2,
        per_task_params=True,
        generator=torch.Generator().manual_seed(5),
        device=CPU,
        seed=1,
    )
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_mask_stops_at_termination():
    from envs.vector import TaskVectorEnv

    vec = TaskVectorEnv(CounterEngine, 2, engine_kwargs={"start_noise": 0.0}, horizon=5)
    policy = GaussianMLPPolicy(
        2, 1, (4,), init_std=1e-6, generator=torch.Generator().manual_seed(0)
    )
    params = {k: torch.zeros_like(v) for k, v in policy.named_parameters()}
    params["log_std"] = torch.full((1,), -20.0)
    tasks = [CounterTask(1.0, limit=2.5), CounterTask(0.5)]
    batch = sample_episodes(
        vec,
        policy,
        params,
        tasks,
        1,
        per_task_params=False,
        generator=torch.Generator().manual_seed(0),
        device=CPU,
        seed=0,
    )
    assert batch.mask[0, 0].tolist() == [1, 1, 1, 0, 0]
    assert batch.dones[0, 0].tolist() == [0, 0, 1, 0, 0]
    assert batch.mask[1, 0].tolist() == [1, 1, 1, 1, 1]
    torch.testing.assert_close(batch.episode_returns[:, 0], torch.tensor([6.0, 7.5]))


def test_sampler_rejects_mismatched_sizes():
    vec, tasks, policy = _nav()
    with pytest.raises(ValueError, match="3 tasks × 3 episodes need 9"):
        sample_episodes(
            vec,
            policy,
            dict(policy.named_parameters()),
            tasks,
            3,
            per_task_params=False,
            generator=torch.Generator(),
            device=CPU,
        )

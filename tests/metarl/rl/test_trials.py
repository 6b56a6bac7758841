"""RL² trials: the recurrent state across episodes and trials, the inputs, stored chunk states,
trial GAE, both env backends, and bad inputs."""

import math

import numpy as np
import pytest
import torch

import envs
from envs.vector import make_vec
from metarl.rl.recurrent import RecurrentPolicy, recurrent_forward
from metarl.rl.trials import (
    chunk_forward,
    chunk_trials,
    num_chunks,
    sample_trials,
    to_chunks,
    trial_gae,
)

CPU = torch.device("cpu")
Z, V = 0.5, 0.5  # the counting GRU: h_k = V * (1 - Z**k) after k valid steps from h = 0


def _vec(env_id, num, horizon, backend="sync", **kwargs):
    workers = 2 if backend == "process" else None
    return make_vec(
        env_id,
        num,
        horizon=horizon,
        autoreset_mode="disabled",
        backend=backend,
        num_workers=workers,
        **kwargs,
    )


def _policy(vec, hidden=4):
    space = vec.single_action_space
    sizes = {"num_actions": int(space.n)} if hasattr(space, "n") else {"act_dim": 2}
    obs_dim = vec.single_observation_space.shape[0]
    return RecurrentPolicy(
        obs_dim, **sizes, hidden_size=hidden, generator=torch.Generator().manual_seed(0)
    )


def _counting_params(policy):
    """All GRU weights 0; biases make z = Z and n = V, so h_t = (1 - Z) V + Z h_{t-1}."""
    params = {k: v.detach().clone() for k, v in policy.named_parameters()}
    size = policy.hidden_size
    for name in ("gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_hh_l0"):
        params[name].zero_()
    bias = torch.zeros(3 * size)
    bias[size : 2 * size] = math.log(Z / (1 - Z))  # z gate: sigmoid(b) = Z
    bias[2 * size :] = math.atanh(V)  # candidate: tanh(b) = V
    params["gru.bias_ih_l0"] = bias
    return params


def _sample(vec, policy, params, tasks, episodes, seed=0, chunk_len=None):
    return sample_trials(
        vec,
        policy,
        params,
        tasks,
        episodes,
        generator=torch.Generator().manual_seed(seed),
        device=CPU,
        seed=seed,
        chunk_len=chunk_len,
    )


def _tasks(vec, num, seed=0):
    return vec.distribution.sample(num, np.random.default_rng(seed))


def test_state_is_carried_across_episodes_and_zero_at_each_trial_start():
    """Known answer: with chunk_len=1 the batch stores the state before every step."""
    vec = _vec("metarl/Bandit-K5-v0", 3, horizon=1)
    policy = _policy(vec)
    params = _counting_params(policy)
    for seed in (0, 1):  # a second batch of trials starts from zero again (new tasks)
        batch = _sample(vec, policy, params, _tasks(vec, 3, seed), episodes=6, chunk_len=1)
        k = torch.arange(6, dtype=torch.float32)
        expected = (V * (1 - Z**k)).view(1, 6, 1).expand(3, 6, 4)  # 6 one-pull episodes
        torch.testing.assert_close(batch.chunk_h0, expected)
        # were the state reset at episode boundaries, it would be V * (1 - Z) before every pull
    vec.close()


def test_masked_steps_after_early_termination_do_not_advance_the_state():
    vec = _vec("metarl/Navigation2D-v0", 4, horizon=5, success_radius=0.3)
    policy = _policy(vec)
    batch = _sample(vec, policy, _counting_params(policy), _tasks(vec, 4), 3, chunk_len=1)
    mask = batch.flat(batch.mask)
    assert mask.min() == 0  # some episodes terminated early...
    assert batch.mask[:, :, 0].min() == 1  # ...and the next episode of the trial ran again
    before = torch.cumsum(mask, dim=1) - mask  # valid steps before each step, since trial start
    torch.testing.assert_close(batch.chunk_h0[..., 0], V * (1 - Z**before))
    ended = batch.dones.sum(-1)  # one termination flag per episode that terminated
    assert ended.max() == 1 and (ended[batch.mask[..., -1] == 0] == 1).all()
    vec.close()


def test_inputs_carry_the_previous_valid_action_reward_and_episode_end():
    vec = _vec("metarl/Navigation2D-v0", 4, horizon=5, success_radius=0.3)
    policy = _policy(vec)
    params = {k: v.detach() for k, v in policy.named_parameters()}
    batch = _sample(vec, policy, params, _tasks(vec, 4), 3)
    inputs, obs = batch.flat(batch.inputs), batch.flat(batch.obs)
    actions, rewards, mask = (batch.flat(x) for x in (batch.actions, batch.rewards, batch.mask))
    torch.testing.assert_close(inputs[..., :2], obs)
    torch.testing.assert_close(inputs[:, 0, 2:], torch.zeros(4, 4))  # trial start: zeros
    for n in range(4):
        valid = torch.nonzero(mask[n]).flatten().tolist()
        for prev, step in zip(valid[:-1], valid[1:], strict=True):
            torch.testing.assert_close(inputs[n, step, 2:4], actions[n, prev])
            torch.testing.assert_close(inputs[n, step, 4], rewards[n, prev])
            new_episode = float(step % 5 == 0)
            assert inputs[n, step, 5] == new_episode
    torch.testing.assert_close(batch.episode_index[0, :, 0], torch.arange(3))
    vec.close()


def test_stored_chunk_states_reproduce_the_sampling_policy():
    """Truncated BPTT from the stored states recomputes the sampler's log-probs and values."""
    vec = _vec("metarl/Navigation2D-v0", 4, horizon=5, success_radius=0.3)
    policy = _policy(vec, hidden=8)
    params = {k: v.detach() for k, v in policy.named_parameters()}
    batch = _sample(vec, policy, params, _tasks(vec, 4), 3, chunk_len=4)
    assert batch.chunk_h0.shape == (4, num_chunks(15, 4), 8)
    # (the sampling values travel in the "returns" slot, to be compared with the recomputed ones)
    chunks = chunk_trials(batch, batch.rewards, batch.values).flatten()
    out = chunk_forward(policy, params, chunks)
    valid = chunks.mask != 0
    logp = policy.log_prob(out.dist, chunks.actions)
    torch.testing.assert_close(logp[valid], chunks.log_probs[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.value[valid], chunks.returns[valid], rtol=1e-5, atol=1e-5)
    # the whole trial in one sequence gives the same
    whole = recurrent_forward(
        policy, params, batch.flat(batch.inputs), batch.h0, mask=batch.flat(batch.mask)
    )
    torch.testing.assert_close(whole.value * batch.flat(batch.mask), batch.flat(batch.values))
    vec.close()


def test_sync_and_process_backends_give_identical_trials():
    tasks = envs.get_task_distribution("metarl/Navigation2D-v0").sample(4, np.random.default_rng(3))
    batches = []
    for backend in ("sync", "process"):
        vec = _vec("metarl/Navigation2D-v0", 4, horizon=5, backend=backend, success_radius=0.3)
        policy = _policy(vec)
        params = {k: v.detach() for k, v in policy.named_parameters()}
        batches.append(_sample(vec, policy, params, tasks, 3, seed=7, chunk_len=4))
        vec.close()
    for name, a, b in zip(batches[0]._fields, batches[0], batches[1], strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert batches[0].mask.min() == 0


def test_trial_gae_bootstraps_across_episodes_and_padding_but_not_across_trials():
    # two trials [N=2, E=2, H=2]; trial 0's second episode ends after one step, trial 1's first
    rewards = torch.tensor([[[1.0, 2.0], [3.0, 7.0]], [[1.0, 5.0], [2.0, 1.0]]])
    values = torch.tensor([[[0.5, 1.0], [2.0, 9.0]], [[1.0, 9.0], [0.5, 0.25]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]])
    out = trial_gae(rewards, values, mask, gamma=0.5, lam=0.5)
    # trial 0 is r = (1, 2, 3), v = (0.5, 1, 2): deltas (1, 2, 1), A_t = delta_t + 0.25 A_{t+1}
    # trial 1 is r = (1, 2, 1), v = (1, 0.5, 0.25) across the gap: deltas (0.25, 1.625, 0.75)
    expected = torch.tensor([[[1.5625, 2.25], [1.0, 0.0]], [[0.703125, 0.0], [1.8125, 0.75]]])
    torch.testing.assert_close(out.advantages, expected)
    torch.testing.assert_close(out.returns, (expected + values) * mask)
    flat = trial_gae(rewards.flatten(1), values.flatten(1), mask.flatten(1), 0.5, 0.5)
    torch.testing.assert_close(flat.advantages, expected.flatten(1))
    with pytest.raises(ValueError, match="values must have the shape of rewards"):
        trial_gae(rewards, values[:1], mask, 0.5, 0.5)


def test_to_chunks_pads_the_last_chunk_with_zeros():
    x = torch.arange(1.0, 11.0).view(2, 5)
    chunks = to_chunks(x, 2)
    assert chunks.shape == (2, 3, 2)
    torch.testing.assert_close(chunks[0], torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]]))
    assert to_chunks(torch.zeros(2, 6, 3), 3).shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="chunk_len must be an int >= 1"):
        to_chunks(x, 0)


def test_sample_trials_rejects_envs_and_sizes_that_do_not_fit():
    vec = _vec("metarl/Bandit-K5-v0", 3, horizon=1)
    policy = _policy(vec)
    params = dict(policy.named_parameters())
    with pytest.raises(ValueError, match="3 sub-envs but 2 tasks"):
        _sample(vec, policy, params, _tasks(vec, 2), 4)
    with pytest.raises(ValueError, match="episodes_per_trial must be an int >= 1"):
        _sample(vec, policy, params, _tasks(vec, 3), 0)
    with pytest.raises(ValueError, match="chunk_len must be an int >= 1"):
        _sample(vec, policy, params, _tasks(vec, 3), 2, chunk_len=0)
    vec.close()
    unlimited = make_vec("metarl/Bandit-K5-v0", 3, autoreset_mode="disabled")
    with pytest.raises(ValueError, match="needs a horizon"):
        _sample(unlimited, policy, params, _tasks(unlimited, 3), 2)
    unlimited.close()
    autoreset = make_vec("metarl/Bandit-K5-v0", 3, horizon=1)
    with pytest.raises(ValueError, match="autoreset_mode='disabled'"):
        _sample(autoreset, policy, params, _tasks(autoreset, 3), 2)
    autoreset.close()

"""Real task envs through the vector env: every backend gives the same trajectories as sync."""

import numpy as np
import pytest

import envs
from envs.vector import make_vec

pytestmark = pytest.mark.timeout(120)


def _trajectory(env_id, backend, steps=15, n=4, dtype=None):
    dist = envs.get_task_distribution(env_id)
    tasks = dist.sample(n, np.random.default_rng(3))
    kwargs = {"num_workers": 2, "start_method": "fork"} if backend == "process" else {}
    if backend == "thread":
        kwargs = {"num_workers": 3}  # uneven slices of the 4 sub-envs
    vec = make_vec(env_id, n, tasks=tasks, backend=backend, horizon=6, **kwargs)
    try:
        obs, _ = vec.reset(seed=11)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(steps):
            obs, reward, term, trunc, info = vec.step(_actions(vec, rng, dtype))
            out += [obs, reward, term, trunc]
            if "final_obs" in info:
                out.append(info["final_obs"][info["_final_obs"]])
        return out
    finally:
        vec.close()


def _actions(vec, rng, dtype=None):
    space = vec.single_action_space
    if hasattr(space, "n"):
        return rng.integers(space.n, size=vec.num_envs)
    actions = rng.uniform(space.low, space.high, size=(vec.num_envs, *space.shape))
    return actions.astype(dtype or space.dtype)


@pytest.mark.parametrize(
    "env_id",
    [
        "metarl/HalfCheetahVel-v0",
        "metarl/AntDir-v0",
        "metarl/HopperRandParams-v0",
        "metarl/Navigation2D-v0",
        "metarl/Bandit-K5-v0",
        "metarl/TabularMDP-v0",
    ],
)
def test_process_backend_gives_the_same_trajectories_as_sync(env_id):
    sync, proc = _trajectory(env_id, "sync"), _trajectory(env_id, "process")
    assert len(sync) == len(proc)
    for a, b in zip(sync, proc, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntDir-v0"])
def test_process_backend_steps_float64_actions_as_sync_does(env_id):
    """A float64 batch reaches the slices unrounded (the shared array holds checked actions)."""
    sync = _trajectory(env_id, "sync", dtype=np.float64)
    proc = _trajectory(env_id, "process", dtype=np.float64)
    for a, b in zip(sync, proc, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntDir-v0", "metarl/Walker2DRandParams-v0"]
)
def test_thread_backend_gives_the_same_trajectories_as_sync(env_id):
    sync, threaded = _trajectory(env_id, "sync"), _trajectory(env_id, "thread")
    assert len(sync) == len(threaded)
    for a, b in zip(sync, threaded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_thread_backend_rejects_natively_batched_envs_and_bad_thread_counts():
    with pytest.raises(ValueError, match="natively batched"):
        make_vec("metarl/Navigation2D-v0", 4, backend="thread")
    with pytest.raises(ValueError, match="num_threads=5 exceeds num_envs=4"):
        make_vec("metarl/HalfCheetahVel-v0", 4, backend="thread", num_workers=5)
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        make_vec("metarl/HalfCheetahVel-v0", 4, backend="thread", num_workers=0)


def test_every_registered_env_runs_in_the_vector_env_with_its_horizon():
    for env_id in envs.task_env_ids():
        vec = make_vec(env_id, 2)
        obs, _ = vec.reset(seed=0)
        assert obs.shape == (2, *vec.single_observation_space.shape)
        assert vec.horizon == envs.env_info(env_id).max_episode_steps
        obs, reward, *_ = vec.step(_actions(vec, np.random.default_rng(0)))
        assert reward.shape == (2,) and np.all(np.isfinite(reward))
        vec.close()


@pytest.mark.parametrize(
    "env_id",
    [
        "metarl/HalfCheetahVel-v0",
        "metarl/Navigation2D-v0",
        "metarl/Bandit-K5-v0",
        "metarl/TabularMDP-v0",
    ],
)
def test_each_sub_env_follows_its_own_task_as_a_single_gymnasium_env_does(env_id):
    """Sub-env i with task i and seed s + i is the single env with that task and seed."""
    import gymnasium as gym

    n, steps = 3, 4
    tasks = envs.get_task_distribution(env_id).sample(n, np.random.default_rng(3))
    vec = make_vec(env_id, n, tasks=tasks, horizon=6)
    rng = np.random.default_rng(0)
    try:
        obs, _ = vec.reset(seed=11)
        batched = [[obs[i]] for i in range(n)]
        actions = [_actions(vec, rng) for _ in range(steps)]
        for action in actions:
            obs, reward, *_ = vec.step(action)
            for i in range(n):
                batched[i] += [obs[i], reward[i]]
    finally:
        vec.close()
    for i, task in enumerate(tasks):
        env = gym.make(env_id, max_episode_steps=6)
        obs, _ = env.reset(seed=11 + i, options={"task": task})
        single = [obs]
        for action in actions:
            obs, reward, *_ = env.step(action[i])
            single += [obs, reward]
        env.close()
        for a, b in zip(batched[i], single, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=f"sub-env {i}")
    assert any(  # the tasks differ enough to tell the sub-envs apart
        not np.allclose(batched[0][k], batched[1][k]) for k in range(1, 2 * steps + 1)
    )

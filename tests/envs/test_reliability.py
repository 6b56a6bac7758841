"""Issue 15's env findings, each reproduced as it was found: hung workers, non-finite actions.

- A stopped (SIGSTOP) ``process`` worker used to hang the parent forever; a hung ``thread``
  worker likewise. Now every wait for a worker ends after ``worker_timeout`` seconds in a
  ``WorkerError`` naming the worker and the command.
- NaN/inf actions on the MuJoCo envs used to give silent NaN or -inf rewards. Now they raise a
  ``ValueError`` naming the engine, the sub-env and the action, or, with
  ``nonfinite_action="clip"``, act as NaN -> 0 and +-inf -> the action bounds.

Rendering and stable-baselines3's ``make_vec_env`` are in ``test_render_modes.py``.
"""

from __future__ import annotations

import os
import signal
import threading

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.vector import WorkerError, make_vec
from tests.envs.mujoco.common import MUJOCO_IDS

# --------------------------------------------------------------------------------------------
# finding 5: a stopped worker hangs the parent
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)  # the bug was a hang: fail, never wait forever
@pytest.mark.parametrize("command", ["step", "reset"])
@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_sigstopped_process_worker_raises_worker_error_naming_it(env_id, command):
    vec = make_vec(env_id, 4, backend="process", start_method="fork", worker_timeout=2.0)
    pid = vec.engine.worker_pids[0]
    actions = np.zeros(vec.action_space.shape, dtype=vec.action_space.dtype)
    try:
        vec.reset(seed=0)
        vec.step(actions)  # the healthy worker answers
        os.kill(pid, signal.SIGSTOP)
        what = "step" if command == "step" else "ensure_tasks"  # reset's first command
        pattern = (
            rf"worker 0 \(sub-envs 2\.\.3, pid {pid}\) did not answer '{what}' within "
            r"worker_timeout=2\.0 s; it may be stopped \(SIGSTOP\)"
        )
        with pytest.raises(WorkerError, match=pattern):
            vec.step(actions) if command == "step" else vec.reset()
        # the stopped worker was killed and every resource released
        assert vec.engine._procs[0].exitcode == -signal.SIGKILL
        with pytest.raises(RuntimeError, match="closed"):
            vec.step(actions)
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        vec.close()


@pytest.mark.timeout(60)
def test_no_worker_timeout_still_reports_a_killed_worker():
    vec = make_vec(
        "metarl/Navigation2D-v0", 2, backend="process", start_method="fork", worker_timeout=None
    )
    try:
        vec.reset(seed=0)
        os.kill(vec.engine.worker_pids[0], signal.SIGKILL)
        died = r"worker 0 .*(died with exit code -9|closed its pipe)"
        with pytest.raises(WorkerError, match=died):
            vec.step(np.zeros((2, 2), dtype=np.float32))
    finally:
        vec.close()


@pytest.mark.timeout(60)
def test_hung_stepping_thread_raises_worker_error_and_the_engine_stops():
    vec = make_vec("metarl/HalfCheetahVel-v0", 8, backend="thread", worker_timeout=0.5)
    engine = vec.engine
    release = threading.Event()
    original = engine._simulate_slice

    def hangs_off_the_main_thread(actions, part):
        if threading.current_thread() is not threading.main_thread():
            release.wait(30.0)
        original(actions, part)

    try:
        vec.reset(seed=0)
        engine._simulate_slice = hangs_off_the_main_thread
        actions = np.zeros((8, 6))
        with pytest.raises(WorkerError, match=r"stepping thread 1 of 2 did not finish .*'step' "):
            vec.step(actions)
        with pytest.raises(WorkerError, match="worker_timeout=0.5 s"):
            vec.step(actions)  # its MjData may still be in use: no silent second step
    finally:
        release.set()
        vec.close()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "60"])
def test_worker_timeout_must_be_a_positive_number_or_none(bad):
    with pytest.raises(ValueError, match=r"worker_timeout must be a positive number of seconds"):
        make_vec("metarl/Navigation2D-v0", 2, worker_timeout=bad)


def test_worker_timeout_reaches_the_engine():
    vec = make_vec("metarl/HalfCheetahVel-v0", 4, backend="thread", worker_timeout=7.5)
    assert vec.engine._threads.worker_timeout == 7.5
    vec.close()
    vec = make_vec("metarl/Navigation2D-v0", 2, backend="process", start_method="fork")
    assert vec.engine.worker_timeout == 60.0  # generous default
    vec.close()


# --------------------------------------------------------------------------------------------
# finding 6: NaN/inf actions give silent NaN or -inf rewards
# --------------------------------------------------------------------------------------------


def _bad_action(space: gym.spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """An action with NaN, +inf and -inf entries, and what ``clip`` makes of it."""
    bad = np.zeros(space.shape, dtype=np.float64)
    bad[:3] = [np.nan, np.inf, -np.inf]
    expected = np.zeros(space.shape, dtype=np.float64)
    expected[1], expected[2] = space.high[1], space.low[2]
    return bad, expected


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_mujoco_env_rejects_a_non_finite_action(env_id, value):
    env = gym.make(env_id)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    action[1] = value
    engine = type(env.unwrapped.engine).__name__
    with pytest.raises(ValueError, match=rf"{engine}: actions must be finite; sub-env\(s\) \[0\]"):
        env.step(action)
    with pytest.raises(ValueError, match=r"\[0\.0, (nan|inf|-inf), 0\.0.*nonfinite_action='clip'"):
        env.step(action)
    # the failed step changed nothing: the episode goes on as if it had not been tried
    twin = gym.make(env_id)
    twin.reset(seed=0)
    ok = np.full(env.action_space.shape, 0.3, dtype=np.float32)
    np.testing.assert_array_equal(env.step(ok)[0], twin.step(ok)[0])


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_clip_maps_nan_to_zero_and_inf_to_the_bounds(env_id):
    env = gym.make(env_id, nonfinite_action="clip")
    twin = gym.make(env_id)
    bad, expected = _bad_action(env.action_space)
    env.reset(seed=3)
    twin.reset(seed=3)
    for _ in range(3):
        obs, reward, terminated, _, info = env.step(bad)
        obs_t, reward_t, terminated_t, _, info_t = twin.step(expected)
        assert np.isfinite(reward) and np.isfinite(obs).all()
        np.testing.assert_array_equal(obs, obs_t)
        assert reward == reward_t and terminated == terminated_t and info == info_t


def test_clip_with_action_scale_uses_the_scaled_bounds():
    env = gym.make("metarl/HalfCheetahVel-v0", nonfinite_action="clip", action_scale=10.0)
    twin = gym.make("metarl/HalfCheetahVel-v0", action_scale=10.0)
    bad, expected = _bad_action(env.action_space)
    assert expected[1] == 10.0 and expected[2] == -10.0
    env.reset(seed=0)
    twin.reset(seed=0)
    np.testing.assert_array_equal(env.step(bad)[0], twin.step(expected)[0])


def test_unknown_nonfinite_action_mode_is_a_clear_error():
    with pytest.raises(ValueError, match=r"nonfinite_action must be one of \('raise', 'clip'\)"):
        gym.make("metarl/AntGoal-v0", nonfinite_action="zero")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sync", "thread", "process"])
def test_vector_env_rejects_non_finite_actions_and_keeps_working(backend):
    extra = {"start_method": "fork"} if backend == "process" else {}
    vec = make_vec("metarl/HalfCheetahVel-v0", 4, backend=backend, **extra)
    twin = make_vec("metarl/HalfCheetahVel-v0", 4)
    try:
        vec.reset(seed=0)
        twin.reset(seed=0)
        actions = np.full((4, 6), 0.25)
        actions[3, 4] = np.nan  # sub-env 3 is in the worker's slice of the process backend
        with pytest.raises(ValueError, match=r"HalfCheetahVelEngine: .*sub-env\(s\) \[3\]"):
            vec.step(actions)
        actions[3, 4] = 0.25
        obs, reward, *_ = vec.step(actions)  # a ValueError, not a lost worker
        obs_t, reward_t, *_ = twin.step(actions)
        np.testing.assert_array_equal(obs, obs_t)
        np.testing.assert_array_equal(reward, reward_t)
    finally:
        vec.close()
        twin.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sync", "process"])
def test_vector_env_clip_equals_the_replaced_actions(backend):
    extra = {"start_method": "fork"} if backend == "process" else {}
    vec = make_vec("metarl/AntDir-v0", 3, backend=backend, nonfinite_action="clip", **extra)
    twin = make_vec("metarl/AntDir-v0", 3)
    bad, expected = _bad_action(twin.single_action_space)
    try:
        vec.reset(seed=1)
        twin.reset(seed=1)
        for _ in range(3):
            out = vec.step(np.stack([bad, expected, bad]))
            out_t = twin.step(np.stack([expected, expected, expected]))
            for x, y in zip(out[:4], out_t[:4], strict=True):
                np.testing.assert_array_equal(x, y)
    finally:
        vec.close()
        twin.close()


def test_every_mujoco_id_is_covered():
    mujoco_ids = [i for i in envs.task_env_ids() if "mujoco" in envs.env_info(i).entry_point]
    assert sorted(mujoco_ids) == sorted(MUJOCO_IDS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("env_id", "bad", "good", "message"),
    [
        ("metarl/Navigation2D-v0", [[0.0, 0.0], [np.nan, 0.0]], [[0.1, 0.0]] * 2, "NaN or inf"),
        ("metarl/Bandit-K5-v0", [0, 5], [0, 4], r"must lie in \[0, 5\)"),
        ("metarl/TabularMDP-v0", [0, -1], [0, 4], r"must lie in \[0, 5\)"),
    ],
)
def test_process_backend_bad_light_action_is_a_value_error_not_a_lost_worker(
    env_id, bad, good, message
):
    # sub-env 1 is stepped by the worker process: its check used to fail there, as a WorkerError
    vec = make_vec(env_id, 2, backend="process", start_method="fork")
    try:
        vec.reset(seed=0)
        dtype = vec.single_action_space.dtype
        with pytest.raises(ValueError, match=message):
            vec.step(np.asarray(bad, dtype=dtype))
        vec.step(np.asarray(good, dtype=dtype))  # still working
    finally:
        vec.close()


@pytest.mark.timeout(60)
def test_close_ends_a_stopped_worker_instead_of_leaking_it():
    vec = make_vec("metarl/Navigation2D-v0", 2, backend="process", start_method="fork")
    proc = vec.engine._procs[0]
    try:
        vec.reset(seed=0)
        os.kill(proc.pid, signal.SIGSTOP)
        vec.close()  # SIGTERM stays pending on a stopped process; SIGKILL does not
        assert proc.exitcode == -signal.SIGKILL
    finally:
        if proc.exitcode is None:
            os.kill(proc.pid, signal.SIGKILL)

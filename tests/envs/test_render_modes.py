"""Issue 15, finding 8: stable-baselines3's ``make_vec_env`` failed on our envs.

SB3 makes every env with ``render_mode="rgb_array"`` and falls back only on ``TypeError``; the
envs raised ``ValueError`` for any render mode. Now the MuJoCo envs accept gymnasium's MuJoCo
render modes, render where an OpenGL context exists, and raise a clear error at ``render()``
time (naming ``MUJOCO_GL``) where none does; the light envs render a small ``"rgb_array"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env

import envs
from tests.envs.mujoco.common import MUJOCO_IDS

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Box observation space.*infinity"),
    pytest.mark.filterwarnings("ignore::UserWarning:glfw"),  # glfw warns before it fails
]

NO_CONTEXT = r"needs an OpenGL context and none could be made \(MUJOCO_GL="


def test_sb3_make_vec_env_builds_and_steps_halfcheetah_vel():
    # the exact reproduction of the finding (n_envs=64 there; 4 keeps the test small)
    vec = make_vec_env("metarl/HalfCheetahVel-v0", n_envs=4, seed=0)
    try:
        assert vec.render_mode == "rgb_array"
        obs = vec.reset()
        assert obs.shape == (4, 17)
        actions = np.stack([vec.action_space.sample() for _ in range(4)])
        obs, rewards, dones, infos = vec.step(actions)
        assert obs.shape == (4, 17) and rewards.shape == (4,) and np.isfinite(rewards).all()
        assert {"reward_forward", "reward_ctrl"} <= set(infos[0])
    finally:
        vec.close()


@pytest.mark.parametrize("env_id", envs.task_env_ids())
def test_sb3_make_vec_env_works_on_every_registered_id(env_id):
    vec = make_vec_env(env_id, n_envs=2, seed=0)
    try:
        vec.reset()
        obs, rewards, _, _ = vec.step(np.stack([vec.action_space.sample() for _ in range(2)]))
        assert len(obs) == 2 and np.isfinite(rewards).all()
    finally:
        vec.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_every_render_mode_builds_and_passes_both_checkers(env_id):
    for mode in (None, "human", "rgb_array", "depth_array"):
        env = gym.make(env_id, render_mode=mode)
        assert env.unwrapped.render_mode == mode
        env.close()
    env = gym.make(env_id, render_mode="rgb_array")  # what SB3's helpers ask for
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env)
    env.close()


@pytest.mark.parametrize("mode", ["rgb_array", "depth_array"])
@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahDir-v0", "metarl/Walker2DRandParams-v0"])
def test_render_gives_a_frame_or_a_clear_error_naming_mujoco_gl(env_id, mode):
    env = gym.make(env_id, render_mode=mode)
    env.reset(seed=0)
    try:
        frame = env.render()
    except RuntimeError as err:  # no OpenGL context on this machine
        assert "Set MUJOCO_GL=egl" in str(err)
        with pytest.raises(RuntimeError, match=NO_CONTEXT):
            env.render()  # again: the same error, and MuJoCo is not asked twice (it aborts)
    else:  # a context exists: a real frame
        assert frame.shape[:2] == (480, 480)
        assert frame.shape == ((480, 480, 3) if mode == "rgb_array" else (480, 480))
    finally:
        env.close()


_RENDER_SCRIPT = """
import gymnasium as gym, envs
env = gym.make("metarl/HopperRandParams-v0", render_mode="rgb_array")
env.reset(seed=0)
try:
    frame = env.render()
except RuntimeError as err:
    print("ERROR", err)
else:
    print("FRAME", frame.shape, frame.dtype, int(frame.std() > 1))
"""


@pytest.mark.timeout(120)
def test_egl_renders_a_frame_where_egl_exists():
    # a fresh process: MuJoCo's GL backend is fixed at the first context a process makes
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(Path(__file__).parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", _RENDER_SCRIPT], env=env, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    if line.startswith("ERROR"):  # no EGL library here: the clear error, naming the backend
        assert "(MUJOCO_GL='egl')" in line and "Set MUJOCO_GL=egl" in line
    else:  # a non-blank 480x480 RGB image
        assert line == "FRAME (480, 480, 3) uint8 1"


def test_human_mode_draws_at_reset_or_says_why_it_cannot():
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        pytest.skip("a display exists: this would open a window")
    env = gym.make("metarl/HalfCheetahVel-v0", render_mode="human")
    with pytest.raises(RuntimeError, match=NO_CONTEXT):
        env.reset(seed=0)  # gymnasium's "human" mode draws at every reset and step
    env.close()


def test_render_without_render_mode_returns_none():
    env = gym.make("metarl/AntGoal-v0")
    env.reset(seed=0)
    assert env.unwrapped.render() is None
    env.close()


@pytest.mark.parametrize(
    ("env_id", "mode"),
    [("metarl/HalfCheetahVel-v0", "rgb"), ("metarl/AntDir-v0", "rgbd_tuple")],
)
@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
def test_unknown_render_mode_is_a_clear_value_error(env_id, mode):
    pattern = rf"render_mode='{mode}' is not supported; expected None or one of \['human'"
    with pytest.raises(ValueError, match=pattern):
        gym.make(env_id, render_mode=mode)


def test_mujoco_envs_declare_their_render_modes_and_fps():
    for env_id in MUJOCO_IDS:
        env = gym.make(env_id)
        metadata = env.unwrapped.metadata
        assert metadata["render_modes"] == ["human", "rgb_array", "depth_array"]
        assert metadata["render_fps"] == round(1.0 / env.unwrapped.engine.dt)
        env.close()


LIGHT_IDS = ["metarl/Navigation2D-v0", "metarl/Bandit-K5-v0", "metarl/TabularMDP-v0"]


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
@pytest.mark.filterwarnings("ignore:.*maximum and minimum values are equal")
@pytest.mark.parametrize("env_id", LIGHT_IDS)
def test_light_envs_render_rgb_frames_and_pass_the_render_checks(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)  # with its render checks
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    with pytest.raises(ValueError, match=r"render_mode='depth_array' is not supported"):
        gym.make(env_id, render_mode="depth_array")
    env.close()


def test_navigation_frame_shows_the_point_where_it_is():
    env = gym.make("metarl/Navigation2D-v0", render_mode="rgb_array")
    env.reset(seed=0, options={"task": envs.light.navigation.Navigation2DTask(goal=(0.4, 0.4))})

    def point_column():
        blue = np.all(env.render() == (40, 80, 220), axis=2)
        return np.nonzero(blue)[1].mean()

    start = point_column()  # the origin: the middle of the view [-0.6, 0.6]
    assert start == pytest.approx(63.5)
    env.step(np.array([0.1, 0.0], dtype=np.float32))  # 0.1 right = 0.1 / 1.2 of 127 pixels
    assert point_column() - start == pytest.approx(0.1 / 1.2 * 127, abs=0.5)


def test_tabular_mdp_frame_marks_the_current_state():
    env = gym.make("metarl/TabularMDP-v0", render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(4):
        obs = env.step(env.action_space.sample())[0]
        state = int(np.argmax(obs))  # the one-hot observation
        blue = np.all(env.render() == (40, 80, 220), axis=2)
        assert set(np.nonzero(blue.any(axis=0))[0] // 12) == {state}

"""``step_into`` (what the process backend's slices call) writes exactly what ``step`` returns."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from tests.envs.mujoco.common import MUJOCO_IDS


def _outputs(step) -> dict[str, np.ndarray]:
    """Arrays of ``step``'s shapes and dtypes, filled with garbage a missed write would show."""
    out = {"obs": np.full_like(step.obs, np.nan), "reward": np.full_like(step.reward, np.nan)}
    out["terminated"] = np.ones_like(step.terminated)
    for key, value in (*step.reward_terms.items(), *step.extras.items()):
        out[key] = np.full_like(value, np.nan)
    return out


def _twins(env_id: str, n: int, **kwargs):
    pair = []
    for _ in range(2):
        engine = envs.make_engine(env_id, n, **kwargs)
        engine.seed(list(range(n)))
        engine.reset(np.arange(n))
        pair.append(engine)
    return pair


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(env_id, {}) for env_id in MUJOCO_IDS]
    + [("metarl/HalfCheetahVel-v0", {"include_torso_com": True})]
    + [("metarl/HalfCheetahDir-v0", {"exclude_current_positions_from_observation": False})],
)
def test_step_into_writes_the_bits_step_returns(env_id, kwargs):
    n = 5
    by_step, by_into = _twins(env_id, n, **kwargs)
    rng = np.random.default_rng(0)
    out = None
    for _ in range(12):
        actions = rng.uniform(-1.5, 1.5, (n, *by_step.action_space.shape))
        step = by_step.step(actions)
        out = out or _outputs(step)
        by_into.step_into(by_into.check_actions(actions), out)
        np.testing.assert_array_equal(out["obs"], step.obs)
        np.testing.assert_array_equal(out["reward"], step.reward)
        np.testing.assert_array_equal(out["terminated"], step.terminated)
        for key, value in (*step.reward_terms.items(), *step.extras.items()):
            np.testing.assert_array_equal(out[key], value, err_msg=key)
        # the observation returned is the caller's: writing it changes nothing in the engine
        step.obs[...] = 7.0
        assert not np.any(by_step.state["qpos"] == 7.0)
    by_step.close()
    by_into.close()


def test_the_default_step_into_copies_step_for_engines_without_their_own():
    by_step, by_into = _twins("metarl/Navigation2D-v0", 3)
    actions = np.full((3, 2), 0.05)
    step = by_step.step(actions)
    out = _outputs(step)
    by_into.step_into(actions, out)
    np.testing.assert_array_equal(out["obs"], step.obs)
    np.testing.assert_array_equal(out["reward"], step.reward)
    for key, value in step.reward_terms.items():
        np.testing.assert_array_equal(out[key], value)


def test_every_field_is_a_view_of_the_one_block_a_step_fills():
    engine = envs.make_engine("metarl/AntDir-v0", 3)  # qpos, qvel, torso position, contacts
    engine.seed([0, 1, 2])
    engine.reset(np.arange(3))
    engine.step(np.full((3, 8), 0.3))
    for name in ("qpos", "qvel", "torso_xpos", "cfrc_ext"):
        assert np.shares_memory(engine.state[name], engine._block)
    for i, data in enumerate(engine.datas):
        np.testing.assert_array_equal(engine.state["qpos"][i], data.qpos)
        np.testing.assert_array_equal(engine.state["qvel"][i], data.qvel)
        np.testing.assert_array_equal(engine.state["torso_xpos"][i], data.xpos[1])
        np.testing.assert_array_equal(engine.state["cfrc_ext"][i], data.cfrc_ext)
    engine.close()


@pytest.mark.parametrize("env_id", ["metarl/HalfCheetahVel-v0", "metarl/AntDir-v0"])
def test_one_action_array_refilled_every_step_steps_as_fresh_arrays_do(env_id):
    # a process slice steps from the same shared array each step: the engine keeps its row views,
    # which must see every new fill, and must drop them for another array
    n = 4
    fresh, reused = _twins(env_id, n)
    shape = (n, *fresh.action_space.shape)
    buffer, other = np.zeros(shape), np.zeros(shape)
    rng = np.random.default_rng(1)
    for t in range(10):
        actions = rng.uniform(-1.0, 1.0, shape)
        step = fresh.step(actions.copy())
        given = other if t in (4, 5) else buffer  # another array for two steps, then back
        given[...] = actions
        mine = reused.step(given)
        np.testing.assert_array_equal(mine.obs, step.obs, err_msg=f"step {t}")
        np.testing.assert_array_equal(mine.reward, step.reward, err_msg=f"step {t}")
    fresh.close()
    reused.close()

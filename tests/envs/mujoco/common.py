"""Shared ids and helpers of the MuJoCo task-env tests."""

from __future__ import annotations

import mujoco
import numpy as np

import envs
from envs.mujoco import ASSETS_DIR, MujocoEngine

MUJOCO_IDS = [
    "metarl/HalfCheetahVel-v0",
    "metarl/HalfCheetahDir-v0",
    "metarl/AntDir-v0",
    "metarl/AntDir2D-v0",
    "metarl/AntVel-v0",
    "metarl/AntGoal-v0",
    "metarl/HopperRandParams-v0",
    "metarl/Walker2DRandParams-v0",
]

HOPPER, WALKER = "metarl/HopperRandParams-v0", "metarl/Walker2DRandParams-v0"

# Observation and action sizes of every env (README table; gymnasium v5 layouts).
SIZES = {
    "metarl/HalfCheetahVel-v0": (17, 6),
    "metarl/HalfCheetahDir-v0": (17, 6),
    "metarl/AntDir-v0": (105, 8),
    "metarl/AntDir2D-v0": (105, 8),
    "metarl/AntVel-v0": (105, 8),
    "metarl/AntGoal-v0": (107, 8),
    "metarl/HopperRandParams-v0": (11, 3),
    "metarl/Walker2DRandParams-v0": (17, 6),
}


def new_engine(engine: type[MujocoEngine] | str, num_envs: int, **kwargs) -> MujocoEngine:
    """An engine of a class, or of a registered id (with the id's registered defaults)."""
    if isinstance(engine, str):
        return envs.make_engine(engine, num_envs, **kwargs)
    return engine(num_envs, **kwargs)


def started_engine(engine_cls: type[MujocoEngine] | str, tasks: list, seed: int = 0, **kwargs):
    """Builds an engine with one sub-env per task, seeded ``seed + i``, and resets it."""
    engine = new_engine(engine_cls, len(tasks), **kwargs)
    engine.seed([seed + i for i in range(len(tasks))])
    engine.set_tasks(tasks)
    engine.reset(np.arange(len(tasks)))
    return engine


def twin_data(engine: MujocoEngine, index: int = 0, model: mujoco.MjModel | None = None):
    """A fresh MjModel/MjData of the engine's XML holding sub-env ``index``'s current state."""
    if model is None:
        model = mujoco.MjModel.from_xml_path(str(engine.xml_path))
    data = mujoco.MjData(model)
    src = engine.datas[index]
    data.qpos[:] = src.qpos
    data.qvel[:] = src.qvel
    mujoco.mj_forward(model, data)
    return model, data


def xml(name: str) -> str:
    return str(ASSETS_DIR / name)

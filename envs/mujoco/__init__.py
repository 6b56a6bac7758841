"""MuJoCo task envs (HalfCheetah, Ant, Hopper/Walker2D RandParams) as batched engines.

Each family is a :class:`~envs.mujoco.base.MujocoEngine` stepping ``num_envs`` MjData in one
loop, with observations and rewards computed for the whole batch in numpy, and a thin
:class:`~envs.core.TaskEnv` registered with gymnasium as ``metarl/<Name>-v0``.
"""

from envs.mujoco.ant import (
    AntDir2DEngine,
    AntDir2DEnv,
    AntDirEngine,
    AntDirEnv,
    AntEngine,
    AntGoalEngine,
    AntGoalEnv,
    AntVelEngine,
    AntVelEnv,
)
from envs.mujoco.base import ASSETS_DIR, MujocoEngine
from envs.mujoco.half_cheetah import (
    HalfCheetahDirEngine,
    HalfCheetahDirEnv,
    HalfCheetahEngine,
    HalfCheetahVelEngine,
    HalfCheetahVelEnv,
)
from envs.mujoco.rand_params import (
    RAND_PARAMS,
    DynamicsDistribution,
    DynamicsTask,
    HopperRandParamsEngine,
    HopperRandParamsEnv,
    RandParamsEngine,
    Walker2DRandParamsEngine,
    Walker2DRandParamsEnv,
)
from envs.mujoco.tasks import (
    Direction2DDistribution,
    Direction2DTask,
    DirectionDistribution,
    DirectionTask,
    GoalDistribution,
    GoalTask,
    GoalVelocityDistribution,
    GoalVelocityTask,
)

__all__ = [
    "ASSETS_DIR",
    "RAND_PARAMS",
    "AntDir2DEngine",
    "AntDir2DEnv",
    "AntDirEngine",
    "AntDirEnv",
    "AntEngine",
    "AntGoalEngine",
    "AntGoalEnv",
    "AntVelEngine",
    "AntVelEnv",
    "Direction2DDistribution",
    "Direction2DTask",
    "DirectionDistribution",
    "DirectionTask",
    "DynamicsDistribution",
    "DynamicsTask",
    "GoalDistribution",
    "GoalTask",
    "GoalVelocityDistribution",
    "GoalVelocityTask",
    "HalfCheetahDirEngine",
    "HalfCheetahDirEnv",
    "HalfCheetahEngine",
    "HalfCheetahVelEngine",
    "HalfCheetahVelEnv",
    "HopperRandParamsEngine",
    "HopperRandParamsEnv",
    "MujocoEngine",
    "RandParamsEngine",
    "Walker2DRandParamsEngine",
    "Walker2DRandParamsEnv",
]

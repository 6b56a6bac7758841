"""MuJoCo task envs (HalfCheetah, Ant, Hopper/Walker2D RandParams) as batched engines.

Each family is a :class:`~envs.mujoco.base.MujocoEngine` stepping ``num_envs`` MjData in one
loop, with observations and rewards computed for the whole batch in numpy; the registry serves
each engine as a gymnasium env (``metarl/<Name>-v0``).
"""

from envs.mujoco.ant import (
    AntDir2DEngine,
    AntDirEngine,
    AntEngine,
    AntGoalEngine,
    AntVelEngine,
)
from envs.mujoco.base import ASSETS_DIR, MujocoEngine
from envs.mujoco.half_cheetah import (
    HalfCheetahDirEngine,
    HalfCheetahEngine,
    HalfCheetahVelEngine,
)
from envs.mujoco.rand_params import (
    RAND_PARAMS,
    DynamicsDistribution,
    DynamicsTask,
    RandParamsEngine,
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
    "AntDirEngine",
    "AntEngine",
    "AntGoalEngine",
    "AntVelEngine",
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
    "HalfCheetahEngine",
    "HalfCheetahVelEngine",
    "MujocoEngine",
    "RandParamsEngine",
]

"""metarl's environment layer: task distributions, task envs, the vectorized task env.

Importing this package registers every task env with gymnasium under ``metarl/<Name>-v0``.
The RL part imports numpy, gymnasium and mujoco only; ``envs.supervised`` adds torch.
"""

from envs.checks import check_range, check_vector
from envs.core import BatchedTaskEngine, EngineStep, Task, TaskDistribution, TaskEnv
from envs.registration import (
    EnvInfo,
    env_info,
    get_engine_class,
    get_env_class,
    get_task_distribution,
    make_engine,
    register_task_env,
    task_env_ids,
)
from envs.vector import ProcessEngine, TaskVectorEnv, WorkerError, make_vec

__all__ = [
    "BatchedTaskEngine",
    "EngineStep",
    "EnvInfo",
    "ProcessEngine",
    "Task",
    "TaskDistribution",
    "TaskEnv",
    "TaskVectorEnv",
    "WorkerError",
    "check_range",
    "check_vector",
    "env_info",
    "get_engine_class",
    "get_env_class",
    "get_task_distribution",
    "make_engine",
    "make_vec",
    "register_task_env",
    "task_env_ids",
]

"""The registry of task envs: gymnasium ids, horizons, defaults and where each comes from."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import gymnasium as gym

from envs.core import BatchedTaskEngine, TaskDistribution, TaskEnv

__all__ = [
    "EnvInfo",
    "env_info",
    "get_engine_class",
    "get_env_class",
    "get_task_distribution",
    "register_task_env",
    "task_env_ids",
]


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """What the registry knows about one task env.

    Attributes:
        env_id: gymnasium id, ``metarl/<Name>-v0``.
        entry_point: ``module:Class`` of the :class:`~envs.core.TaskEnv` subclass.
        max_episode_steps: the horizon H (None: episodes end only by termination).
        kwargs: constructor defaults registered with the id.
        source: where the definition comes from (REFERENCE.md section and repositories).
    """

    env_id: str
    entry_point: str
    max_episode_steps: int | None
    kwargs: dict[str, Any]
    source: str


_REGISTRY: dict[str, EnvInfo] = {}


def register_task_env(
    env_id: str,
    entry_point: str,
    max_episode_steps: int | None,
    source: str,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Registers a task env with gymnasium and with metarl's registry (idempotent)."""
    info = EnvInfo(env_id, entry_point, max_episode_steps, dict(kwargs or {}), source)
    _REGISTRY[env_id] = info
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=entry_point,
            max_episode_steps=max_episode_steps,
            kwargs=dict(kwargs or {}),
            disable_env_checker=True,
        )


def task_env_ids() -> list[str]:
    """Returns the ids of every registered task env, in registration order."""
    return list(_REGISTRY)


def env_info(env_id: str) -> EnvInfo:
    """Returns the registry entry of ``env_id``.

    Raises:
        ValueError: if the id is not a registered task env (the message lists the known ids).
    """
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise ValueError(
            f"unknown task env id {env_id!r}; registered ids: {', '.join(_REGISTRY)}"
        ) from None


def get_env_class(env_id: str) -> type[TaskEnv]:
    """Imports and returns the :class:`~envs.core.TaskEnv` subclass registered as ``env_id``."""
    module_name, _, attr = env_info(env_id).entry_point.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def get_engine_class(env_id: str) -> type[BatchedTaskEngine]:
    """Returns the batched engine class behind ``env_id``."""
    return get_env_class(env_id).engine_cls


def get_task_distribution(env_id: str, **kwargs: Any) -> TaskDistribution:
    """Returns the task distribution of a registered env.

    Args:
        env_id: a registered id such as ``"metarl/HalfCheetahVel-v0"``.
        **kwargs: constructor arguments overriding the registered defaults (for example
            ``low=0.0, high=3.0`` for ProMP's velocity range).
    """
    merged = {**env_info(env_id).kwargs, **kwargs}
    return get_engine_class(env_id).make_distribution(**merged)


register_task_env(
    "metarl/HalfCheetahVel-v0",
    "envs.mujoco.half_cheetah:HalfCheetahVelEnv",
    100,
    "MAML §5.3; pytorch-maml-rl half_cheetah.py (REFERENCE A.1)",
)
register_task_env(
    "metarl/HalfCheetahDir-v0",
    "envs.mujoco.half_cheetah:HalfCheetahDirEnv",
    100,
    "MAML §5.3; pytorch-maml-rl, ProMP, learn2learn (REFERENCE A.1)",
)
register_task_env(
    "metarl/AntDir-v0",
    "envs.mujoco.ant:AntDirEnv",
    100,
    "MAML rllab ant_env_rand_direc.py; pytorch-maml-rl ant.py (REFERENCE A.1)",
)
register_task_env(
    "metarl/AntDir2D-v0",
    "envs.mujoco.ant:AntDir2DEnv",
    100,
    "ProMP ant_rand_direc_2d.py; learn2learn ant_direction.py (REFERENCE A.1)",
)
register_task_env(
    "metarl/AntVel-v0",
    "envs.mujoco.ant:AntVelEnv",
    100,
    "MAML rllab ant_env_rand.py; pytorch-maml-rl ant.py (REFERENCE A.1)",
)
register_task_env(
    "metarl/AntGoal-v0",
    "envs.mujoco.ant:AntGoalEnv",
    100,
    "MAML rllab ant_env_rand_goal.py; pytorch-maml-rl AntPos (REFERENCE A.1)",
)
register_task_env(
    "metarl/HopperRandParams-v0",
    "envs.mujoco.rand_params:HopperRandParamsEnv",
    200,
    "rand_param_envs hopper_rand_params.py, used by PEARL/ProMP (REFERENCE A.4)",
)
register_task_env(
    "metarl/Walker2DRandParams-v0",
    "envs.mujoco.rand_params:Walker2DRandParamsEnv",
    200,
    "rand_param_envs walker2d_rand_params.py, used by PEARL/ProMP (REFERENCE A.4)",
)
register_task_env(
    "metarl/Navigation2D-v0",
    "envs.light.navigation:Navigation2DEnv",
    100,
    "MAML point_env_randgoal.py; pytorch-maml-rl navigation.py (REFERENCE A.3)",
)
for _k in (5, 10, 50):
    register_task_env(
        f"metarl/Bandit-K{_k}-v0",
        "envs.light.bandit:BanditEnv",
        None,
        "RL² §3.1; pytorch-maml-rl bandit.py (REFERENCE A.5)",
        kwargs={"num_arms": _k},
    )
register_task_env(
    "metarl/TabularMDP-v0",
    "envs.light.tabular_mdp:TabularMDPEnv",
    10,
    "RL² §3.2; pytorch-maml-rl mdp.py (REFERENCE A.5)",
)

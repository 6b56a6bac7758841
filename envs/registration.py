"""The registry of task envs: gymnasium ids, engines, horizons, defaults and sources.

Every id is the one generic :class:`~envs.core.TaskEnv` configured for a batched engine, with the
id's default keyword arguments: ``gym.make(id, **kwargs)`` builds it, :func:`make_engine` builds
the engine with ``num_envs`` sub-environments, and :func:`~envs.vector.make_vec` the vector env.
Engines are imported on first use, so ``import envs`` does not import MuJoCo.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from typing import Any

import gymnasium as gym

from envs.core import BatchedTaskEngine, TaskDistribution, TaskEnv

__all__ = [
    "METAWORLD_IDS",
    "EnvInfo",
    "env_info",
    "get_engine_class",
    "get_env_class",
    "get_task_distribution",
    "make_engine",
    "register_task_env",
    "task_env_ids",
]


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """What the registry knows about one task env.

    Attributes:
        env_id: gymnasium id, ``metarl/<Name>-v0``.
        entry_point: ``module:Class`` of the batched engine behind the id (gymnasium's entry point
            is the :class:`~envs.core.TaskEnv` configured for it, :func:`get_env_class`).
        max_episode_steps: the horizon H (None: episodes end only by termination).
        kwargs: constructor defaults registered with the id.
        source: where the definition comes from (paper sections and repositories).
    """

    env_id: str
    entry_point: str
    max_episode_steps: int | None
    kwargs: dict[str, Any]
    source: str


_REGISTRY: dict[str, EnvInfo] = {}


def _env_class_name(engine_entry_point: str) -> str:
    """``"pkg.mod:HalfCheetahVelEngine"`` -> ``"HalfCheetahVelEnv"``."""
    return engine_entry_point.partition(":")[2].removesuffix("Engine") + "Env"


def register_task_env(
    env_id: str,
    engine: str,
    max_episode_steps: int | None,
    source: str,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Registers a task env with gymnasium and with metarl's registry (idempotent).

    Args:
        env_id: gymnasium id, ``metarl/<Name>-v0``.
        engine: ``module:Class`` of its :class:`~envs.core.BatchedTaskEngine`.
        max_episode_steps: the horizon H (None: episodes end only by termination).
        source: where the definition comes from.
        kwargs: the id's default engine and task-distribution arguments.
    """
    info = EnvInfo(env_id, engine, max_episode_steps, dict(kwargs or {}), source)
    _REGISTRY[env_id] = info
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=f"{__name__}:{_env_class_name(engine)}",
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
        if env_id in METAWORLD_IDS:
            raise ImportError(
                f"{env_id} needs Meta-World, an optional extra: pip install 'metarl[metaworld]'"
            ) from None
        raise ValueError(
            f"unknown task env id {env_id!r}; registered ids: {', '.join(_REGISTRY)}"
        ) from None


def get_engine_class(env_id: str) -> type[BatchedTaskEngine]:
    """Imports and returns the batched engine class behind ``env_id``."""
    module_name, _, attr = env_info(env_id).entry_point.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@functools.cache
def _task_env_class(engine_cls: type[BatchedTaskEngine]) -> type[TaskEnv]:
    name = engine_cls.__name__.removesuffix("Engine") + "Env"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"The gymnasium env over one sub-environment of :class:`{engine_cls.__name__}`.",
        "engine_cls": engine_cls,
        "metadata": dict(engine_cls.metadata),
    }
    return type(name, (TaskEnv,), namespace)


def get_env_class(env_id: str) -> type[TaskEnv]:
    """Returns the :class:`~envs.core.TaskEnv` configured for the engine of ``env_id``.

    The class carries the engine and its gymnasium ``metadata`` (render modes), which
    ``gym.make`` reads before it builds the env; the id's default arguments are not part of it
    (``gym.make`` passes them).
    """
    return _task_env_class(get_engine_class(env_id))


def __getattr__(name: str) -> type[TaskEnv]:
    """Resolves gymnasium's entry points ``envs.registration:<Name>Env`` (and unpickling)."""
    for info in _REGISTRY.values():
        if _env_class_name(info.entry_point) == name:
            return get_env_class(info.env_id)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_engine(env_id: str, num_envs: int, **kwargs: Any) -> BatchedTaskEngine:
    """Builds the engine of ``env_id`` with ``num_envs`` sub-environments.

    Args:
        env_id: a registered id such as ``"metarl/HopperRandParams-v0"``.
        num_envs: number of sub-environments.
        **kwargs: constructor arguments overriding the registered defaults.
    """
    return get_engine_class(env_id)(num_envs, **{**env_info(env_id).kwargs, **kwargs})


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
    "envs.mujoco.half_cheetah:HalfCheetahVelEngine",
    100,
    "MAML §5.3; pytorch-maml-rl half_cheetah.py",
)
register_task_env(
    "metarl/HalfCheetahDir-v0",
    "envs.mujoco.half_cheetah:HalfCheetahDirEngine",
    100,
    "MAML §5.3; pytorch-maml-rl, ProMP, learn2learn",
)
register_task_env(
    "metarl/AntDir-v0",
    "envs.mujoco.ant:AntDirEngine",
    100,
    "MAML rllab ant_env_rand_direc.py; pytorch-maml-rl ant.py",
)
register_task_env(
    "metarl/AntDir2D-v0",
    "envs.mujoco.ant:AntDir2DEngine",
    100,
    "ProMP ant_rand_direc_2d.py; learn2learn ant_direction.py",
)
register_task_env(
    "metarl/AntVel-v0",
    "envs.mujoco.ant:AntVelEngine",
    100,
    "MAML rllab ant_env_rand.py; pytorch-maml-rl ant.py",
)
register_task_env(
    "metarl/AntGoal-v0",
    "envs.mujoco.ant:AntGoalEngine",
    100,
    "MAML rllab ant_env_rand_goal.py; pytorch-maml-rl AntPos",
)
register_task_env(
    "metarl/HopperRandParams-v0",
    "envs.mujoco.rand_params:RandParamsEngine",
    200,
    "dennisl88/rand_param_envs hopper_rand_params.py, used by PEARL/ProMP",
    kwargs={  # healthy while |(qpos[2:], qvel)| < 100, height > 0.7 and |angle| < 0.2
        "xml_file": "hopper.xml",
        "healthy_state_range": (-100.0, 100.0),
        "healthy_z_range": (0.7, float("inf")),
        "healthy_angle_range": (-0.2, 0.2),
    },
)
register_task_env(
    "metarl/Walker2DRandParams-v0",
    "envs.mujoco.rand_params:RandParamsEngine",
    200,
    "dennisl88/rand_param_envs walker2d_rand_params.py, used by PEARL/ProMP",
    kwargs={  # healthy while height in (0.8, 2.0) and angle in (-1, 1)
        "xml_file": "walker2d_v5.xml",
        "healthy_state_range": None,
        "healthy_z_range": (0.8, 2.0),
        "healthy_angle_range": (-1.0, 1.0),
    },
)
register_task_env(
    "metarl/Navigation2D-v0",
    "envs.light.navigation:Navigation2DEngine",
    100,
    "MAML point_env_randgoal.py; pytorch-maml-rl navigation.py",
)
for _k in (5, 10, 50):
    register_task_env(
        f"metarl/Bandit-K{_k}-v0",
        "envs.light.bandit:BanditEngine",
        None,
        "RL² §3.1; pytorch-maml-rl bandit.py (Duan et al. 2016, arXiv 1611.02779)",
        kwargs={"num_arms": _k},
    )
register_task_env(
    "metarl/TabularMDP-v0",
    "envs.light.tabular_mdp:TabularMDPEngine",
    10,
    "RL² §3.2; pytorch-maml-rl mdp.py (Duan et al. 2016, arXiv 1611.02779)",
)

#: Meta-World's meta-learning benchmarks (registered when the ``metaworld`` extra is installed).
#: ML45 is ``benchmark="ML45"`` on the ML10 id: building its task lists takes a minute, too long
#: for an id that every generic check of the registry builds.
METAWORLD_IDS = {
    "metarl/MetaWorldML1-v0": {"benchmark": "ML1", "task_name": "reach-v3"},
    "metarl/MetaWorldML10-v0": {"benchmark": "ML10"},
}


def _has_metaworld() -> bool:
    try:
        return importlib.util.find_spec("metaworld") is not None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return False


if _has_metaworld():
    for _id, _kwargs in METAWORLD_IDS.items():
        register_task_env(
            _id,
            "envs.meta_world:MetaWorldEngine",
            500,
            "Meta-World (arXiv 1910.10897), v3 envs of Meta-World+ (arXiv 2505.11289); "
            "github.com/Farama-Foundation/Metaworld",
            kwargs=_kwargs,
        )

"""The vector-env section shared by the RL configs (MAML-RL's and RL²'s ``env:``).

Each algorithm's ``EnvConfig`` subclasses :class:`VecEnvConfig` and adds how its batch is laid
out (MAML-RL: tasks × episodes per task; RL²: trials × episodes per trial).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from envs.vector import TaskVectorEnv, make_vec
from metarl.config_checks import check_positive

__all__ = ["VecEnvConfig", "available_cpus", "preflight_env"]


@dataclasses.dataclass(frozen=True)
class VecEnvConfig:
    """The task env and how its vector env steps."""

    id: str = "metarl/Navigation2D-v0"
    """Registered task env id (``metarl envs`` lists them)."""
    horizon: int | None = None
    """Episode length H in steps (None: the registered horizon; bandits need 1)."""
    backend: Literal["sync", "thread", "process", "auto"] = "sync"
    """Vector-env backend: one process; MuJoCo stepped on threads; worker processes; or auto (one
    of them from the env's measured step cost and the free cores; same results)."""
    num_workers: int = 2
    """Slices of the thread or process backend (this thread/process steps one); auto: the most."""
    action_scale: float | None = None
    """MuJoCo: policy acts in [-s, s], divided by s before the env (pytorch-maml-rl, garage and
    ProMP use 10); None: as is."""
    ctrl_cost_weight: float | None = None
    """MuJoCo control-cost weight (None: the env's default)."""
    worker_timeout: float | None = 60.0
    """Seconds one wait for a thread/process worker may last before WorkerError (None: no limit)."""
    task_name: str | None = None
    """Meta-World ML1: the task class, e.g. reach-v3 (None: the env's default)."""

    def __post_init__(self) -> None:
        check_positive(self, "horizon", "num_workers", "action_scale", "worker_timeout")
        if self.worker_timeout is not None and not math.isfinite(self.worker_timeout):
            raise ValueError(f"worker_timeout must be finite or None, got {self.worker_timeout}")
        if self.ctrl_cost_weight is not None and not self.ctrl_cost_weight >= 0:
            raise ValueError(f"ctrl_cost_weight must be >= 0, got {self.ctrl_cost_weight}")

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The env constructor options that are set (None fields keep the env's default)."""
        chosen = {
            "action_scale": self.action_scale,
            "ctrl_cost_weight": self.ctrl_cost_weight,
            "task_name": self.task_name,
        }
        return {k: v for k, v in chosen.items() if v is not None}

    @property
    def vec_kwargs(self) -> dict[str, Any]:
        """Options of ``make_vec`` itself (``gym.make`` would reject them as env options)."""
        return {"worker_timeout": self.worker_timeout}

    def make_vec(self, num_envs: int, **options: Any) -> TaskVectorEnv:
        """The vector env of ``num_envs`` sub-envs this section describes.

        ``num_workers`` goes to the thread, process and auto backends only (sync has none);
        ``options`` are more ``envs.make_vec`` arguments, e.g. ``autoreset_mode``.
        """
        workers = self.num_workers if self.backend in ("thread", "process", "auto") else None
        return make_vec(
            self.id,
            num_envs,
            backend=self.backend,
            num_workers=workers,
            horizon=self.horizon,
            **options,
            **self.vec_kwargs,
            **self.env_kwargs,
        )


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def preflight_env(env: VecEnvConfig, sizes: Mapping[str, int]) -> None:
    """Resolve and build the env of an RL config, and check its workers, before any work.

    Builds one sub-env in this process with the config's horizon and env options, so that an
    unknown id or an option the env does not take is refused before the run directory exists.

    Args:
        env: The config's env section.
        sizes: Sub-env counts of each vector env the run builds, by what it is for (e.g.
            ``{"training": 400, "evaluation": 160}``); the workers split each of them.

    Raises:
        ValueError: Naming the offending ``env.*`` field.
    """
    import envs  # Registers the task envs.
    from envs.vector import make_vec

    if env.id in envs.registration.METAWORLD_IDS:
        envs.env_info(env.id)  # ImportError naming the extra where Meta-World is not installed
    if env.id not in envs.task_env_ids():
        hint = difflib.get_close_matches(env.id, envs.task_env_ids(), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(
            f"env.id={env.id!r} is not a registered task env{suggestion}; 'metarl envs' lists them"
        )
    try:
        make_vec(env.id, 1, horizon=env.horizon, **env.env_kwargs).close()
    except TypeError as err:  # An option the env's constructor does not take.
        options = ", ".join(f"env.{k}" for k in env.env_kwargs) or "its registered options"
        raise ValueError(f"{env.id} does not accept {options}: {err}") from None
    if env.backend in ("sync", "auto"):  # auto caps its workers at the usable cores itself
        return
    if env.backend == "thread" and not hasattr(envs.get_engine_class(env.id), "set_num_threads"):
        raise ValueError(
            f"env.backend='thread' steps MuJoCo envs on threads; {env.id} is natively batched "
            "in numpy: use env.backend=sync"
        )
    cpus = available_cpus()
    if env.num_workers > cpus:
        raise ValueError(
            f"env.num_workers={env.num_workers} exceeds the {cpus} CPUs this process may use; "
            f"set env.num_workers <= {cpus}"
        )
    for purpose, count in sizes.items():
        if env.num_workers > count:
            raise ValueError(
                f"env.num_workers={env.num_workers} exceeds the {count} sub-envs of the "
                f"{purpose} vector env, which the workers split; set env.num_workers <= {count}"
            )

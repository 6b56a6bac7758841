"""The vector-env section shared by the RL configs (MAML-RL's and RL²'s ``env:``).

Each algorithm's ``EnvConfig`` subclasses :class:`VecEnvConfig` and adds how its batch is laid
out (MAML-RL: tasks × episodes per task; RL²: trials × episodes per trial).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from metarl.config_checks import check_positive

__all__ = ["VecEnvConfig"]


@dataclasses.dataclass(frozen=True)
class VecEnvConfig:
    """The task env and how its vector env steps."""

    id: str = "metarl/Navigation2D-v0"
    """Registered task env id (``metarl envs`` lists them)."""
    horizon: int | None = None
    """Episode length H in steps (None: the registered horizon; bandits need 1)."""
    backend: Literal["sync", "thread", "process"] = "sync"
    """Vector-env backend: one process; MuJoCo stepped on threads; or worker processes."""
    num_workers: int = 2
    """Slices of the thread or process backend (this thread/process steps one)."""
    action_scale: float | None = None
    """MuJoCo: policy acts in [-s, s], divided by s before the env (REFERENCE D.8); None: as is."""
    ctrl_cost_weight: float | None = None
    """MuJoCo control-cost weight (None: the env's default)."""
    worker_timeout: float | None = 60.0
    """Seconds one wait for a thread/process worker may last before WorkerError (None: no limit)."""

    def __post_init__(self) -> None:
        check_positive(self, "horizon", "num_workers", "worker_timeout")
        if self.worker_timeout is not None and not math.isfinite(self.worker_timeout):
            raise ValueError(f"worker_timeout must be finite or None, got {self.worker_timeout}")

    @property
    def env_kwargs(self) -> dict[str, float]:
        """The env constructor options that are set (None fields keep the env's default)."""
        chosen = {"action_scale": self.action_scale, "ctrl_cost_weight": self.ctrl_cost_weight}
        return {k: v for k, v in chosen.items() if v is not None}

    @property
    def vec_kwargs(self) -> dict[str, float | None]:
        """Options of ``make_vec`` itself (``gym.make`` would reject them as env options)."""
        return {"worker_timeout": self.worker_timeout}

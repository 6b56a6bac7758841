"""The ``run`` section every experiment config shares: seed, device, run directory, logging."""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["RunConfig"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every run shares, nested by algorithm configs as their ``run`` section."""

    seed: int = 0
    """Seed of every random number generator of the run (scripts seed global RNGs from it once)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Compute device: "auto" picks CUDA when available, else CPU."""
    run_dir: str = "runs/default"
    """Directory for the resolved config, metrics, checkpoints and eval results."""
    resume: bool = False
    """Continue from the latest checkpoint in run_dir instead of refusing a non-empty run_dir."""
    log_every: int = 1
    """Outer iterations between metric writes."""
    checkpoint_every: int = 50
    """Outer iterations between checkpoints; 0 disables periodic checkpoints."""
    keep_checkpoints: int = 3
    """Number of most recent checkpoints kept on disk."""
    num_eval_tasks: int = 40
    """Number of held-out tasks the evaluation averages over (confidence intervals over tasks)."""
    log_backends: tuple[Literal["tensorboard", "csv"], ...] = ("tensorboard", "csv")
    """Metric writers to open in the run directory."""
    progress: bool = True
    """Show a progress bar (only when stderr is a terminal and the CI variable is unset)."""
    num_threads: int = 0
    """CPU threads for torch's intra-op parallelism (0: torch's default). Tiny models run
    fastest with 1, since thread hand-offs cost more than the arithmetic they split."""
    init_from: str | None = None
    """A checkpoint to start this new run from, as a second stage of training (e.g. larger
    batches at a lower learning rate): its parameters, optimiser moments, running statistics,
    random state and iteration count carry over, while this config's settings apply from there
    on (each optimiser's learning rate and other settings are this config's). Used only until
    the run has a checkpoint of its own, which ``resume`` then continues from."""
    collective_timeout: float = 120.0
    """Seconds a rank waits at a collective (and a launch waits for its rendezvous) before the
    run stops with an error: a dead or hung rank becomes an error instead of a hang."""

    def __post_init__(self) -> None:
        lows = {"log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 1}
        for name, low in {**lows, "num_eval_tasks": 1, "num_threads": 0, "seed": 0}.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not self.collective_timeout > 0:  # also refuses NaN
            raise ValueError(f"collective_timeout must be > 0 s, got {self.collective_timeout}")

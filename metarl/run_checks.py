"""The checks a run directory passes before a run writes anything: resume and init_from.

`check_resume` compares a resumed run's stored config with the new one and refuses the
differences that change what the run computes; `check_init_from` checks the checkpoint a new run
starts from (``run.init_from``). :mod:`metarl.runs` calls both before it writes the config.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from metarl import checkpoint as ckpt
from metarl.config import ConfigError, config_to_dict, load_config, load_yaml
from metarl.config_renames import migrate_config

__all__ = [
    "CONFIG_FILENAME",
    "RESUMABLE_CHANGES",
    "IncompatibleResumeError",
    "check_init_from",
    "check_resume",
]

logger = logging.getLogger("metarl.runs")  # the messages users have seen under this name

CONFIG_FILENAME = "config.yaml"


class IncompatibleResumeError(ValueError):
    """Resuming would continue a run with a config that changes its computation.

    Attributes:
        run_dir: The run directory.
        differences: One ``"key: old -> new"`` line per refused difference.
    """

    def __init__(self, run_dir: Path, differences: Sequence[str]) -> None:
        self.run_dir, self.differences = run_dir, list(differences)
        stored = run_dir / CONFIG_FILENAME
        super().__init__(
            f"cannot resume {run_dir}: these settings differ from the run's stored config and "
            "change what it computes:\n  "
            + "\n  ".join(self.differences)
            + f"\nresume with the stored config (metarl train {stored} --resume), "
            "or start a new run_dir"
        )


RESUMABLE_CHANGES = frozenset(
    {
        "optim.iterations",
        "run.run_dir",
        "run.resume",
        "run.init_from",
        "run.device",
        "run.num_threads",
        "run.collective_timeout",
        "run.log_every",
        "run.log_backends",
        "run.checkpoint_every",
        "run.keep_checkpoints",
        "run.num_eval_tasks",
        "run.progress",
        "env.backend",
        "env.num_workers",
        "task.data_root",
    }
)
"""Dotted config keys a resumed run may change: they leave the trained numbers alone (the vector
env's backends give identical trajectories; ``task.data_root`` only says where the data lives).
``optim.iterations`` is refused too when a cosine or linear schedule depends on it."""

_LENGTH_DEPENDENT_SCHEDULES = ("cosine", "linear")


def _config_differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in dict.fromkeys([*old, *new]):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            found += _config_differences(old.get(key), new.get(key), dotted)
        return found
    return [] if old == new else [(prefix, old, new)]


def _stored_config(config_path: Path, config: Any) -> dict[str, Any]:
    """The stored config with defaults filled in, as the current config class reads it."""
    try:
        raw = load_yaml(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ConfigError) as err:
        raise ConfigError([f"{config_path}: the stored config is not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{config_path}: the stored config is not a mapping"])
    raw, _ = migrate_config(type(config), raw)  # Keys renamed since the run was written.
    try:  # Fields added since the run was written take their defaults, as the run did.
        return config_to_dict(load_config(type(config), raw))
    except (ConfigError, TypeError, ValueError):
        return raw  # Another experiment kind, or an older layout: compare the raw mapping.


_LATE_SCHEDULES = ("ppo.entropy_coef_final", "ppo.entropy_decay_start", "ppo.entropy_decay_end")
"""Keys of a schedule that acts only from ``ppo.entropy_decay_start`` on: a resumed run may change
them while neither the stored schedule (off, or starting at or after the checkpoint) nor the new
one has acted on the iterations already done."""


def _not_started(config: dict[str, Any], done: int) -> bool:
    ppo = config.get("ppo") or {}
    return ppo.get("entropy_coef_final") is None or (ppo.get("entropy_decay_start") or 0) >= done


def _changes_computation(key: str, old: dict[str, Any], new: dict[str, Any], done: int) -> bool:
    if key in _LATE_SCHEDULES:
        return not (_not_started(old, done) and _not_started(new, done))
    if key not in RESUMABLE_CHANGES:
        return True
    schedule = (new.get("optim") or {}).get("schedule")
    return key == "optim.iterations" and schedule in _LENGTH_DEPENDENT_SCHEDULES


def check_resume(run_dir: str | os.PathLike[str], config: Any) -> Path | None:
    """Check that ``config`` may continue the run in ``run_dir``, before anything is written.

    The stored ``config.yaml`` is compared with ``config`` field by field. When the run has a
    checkpoint, any difference outside `RESUMABLE_CHANGES` (the model, the algorithm, the seed,
    learning rates, the task family, ...) is refused, since the checkpoint's weights and
    optimiser state belong to the stored config; the allowed differences are logged. Without a
    checkpoint the resumed run starts again from iteration 0, so every difference is allowed
    and logged. A damaged newer checkpoint is named in a warning and skipped.

    Args:
        run_dir: The run directory (it need not exist: then there is nothing to check).
        config: The resolved config of the resuming process.

    Returns:
        The newest intact checkpoint the run resumes from, or None.

    Raises:
        IncompatibleResumeError: Listing each computation-changing difference.
        CorruptCheckpointError: If the run has checkpoints and all are damaged.
        ConfigError: If the stored config is not valid YAML, or ``optim.iterations`` is below
            the iteration of the checkpoint the run would resume from.
    """
    run_dir = Path(run_dir)
    latest = ckpt.latest_intact_checkpoint(run_dir) if run_dir.is_dir() else None
    iterations = (config_to_dict(config).get("optim") or {}).get("iterations")
    if latest is not None and isinstance(iterations, int):
        done = ckpt.checkpoint_iteration(latest)
        if done > iterations:  # the loop would not run and the state would be saved as `iterations`
            raise ConfigError(
                [
                    f"optim.iterations: {iterations} is below the iteration of the checkpoint "
                    f"the run resumes from ({latest}, iteration {done}); resume with "
                    f"optim.iterations >= {done}, or evaluate it with 'metarl eval {run_dir}'"
                ]
            )
    config_path = run_dir / CONFIG_FILENAME
    if not config_path.is_file():
        return latest
    new, stored = config_to_dict(config), _stored_config(config_path, config)
    changes = _config_differences(stored, new)
    lines = [f"{key}: {old!r} -> {value!r}" for key, old, value in changes]
    done = ckpt.checkpoint_iteration(latest) if latest is not None else 0
    refused = [
        line
        for line, c in zip(lines, changes, strict=True)
        if _changes_computation(c[0], stored, new, done)
    ]
    if refused and latest is not None:
        raise IncompatibleResumeError(run_dir, refused)
    shown = [line for line in lines if not line.startswith(("run.resume:", "run.run_dir:"))]
    if shown:
        logger.warning("resuming %s with a changed config: %s", run_dir, "; ".join(shown))
    return latest


def check_init_from(path: str | os.PathLike[str], config: Any) -> int:
    """Check that a new run can start from the checkpoint ``path`` (``run.init_from``).

    Args:
        path: The checkpoint file.
        config: The new run's resolved config (its ``optim.iterations`` must exceed the
            checkpoint's iteration).

    Returns:
        The checkpoint's iteration.

    Raises:
        FileNotFoundError: If there is no such file.
        CheckpointError: If it is damaged or cannot be loaded safely.
        ConfigError: If it holds no iteration count, or ``optim.iterations`` does not exceed it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run.init_from: no checkpoint file at {path}")
    state = ckpt.load_checkpoint(path, map_location="cpu")
    done = state.get("iteration")
    if not isinstance(done, int) or "params" not in state:
        raise ConfigError([f"run.init_from: {path} is not a metarl training checkpoint"])
    iterations = (config_to_dict(config).get("optim") or {}).get("iterations")
    if isinstance(iterations, int) and iterations <= done:
        raise ConfigError(
            [
                f"optim.iterations: {iterations} does not exceed the iteration of run.init_from "
                f"({path}, iteration {done}): set optim.iterations above {done}"
            ]
        )
    return done

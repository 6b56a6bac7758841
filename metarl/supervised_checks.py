"""Checks of a supervised config that need more than one field or the machine, run before any work.

`preflight` is called by the command line (through :func:`metarl.experiments.preflight`) after the
config has loaded and before the run directory is created, so that a config the machine cannot run
is refused with one message instead of failing (or being killed for memory) mid-run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from metarl.supervised import SupervisedConfig

__all__ = ["activation_bytes", "device_memory_bytes", "preflight"]

_FLOAT_BYTES = 4
_OMNIGLOT_PIXELS = 28 * 28
_SECOND_ORDER_LEARNERS = ("maml", "metasgd", "mamlpp")
"""Learners whose meta-gradient runs back through every inner step."""


def _features_per_example(cfg: SupervisedConfig) -> int:
    """Floats one example produces through the network: its input and every layer's output."""
    model, task = cfg.model, cfg.task
    if task.family == "sinusoid":
        return 1 + sum(model.hidden) + 1
    if model.network == "mlp":
        return _OMNIGLOT_PIXELS + sum(model.hidden) + task.ways
    # conv4 on 28x28: four 3x3 conv blocks, each halving the side (stride 2, or a 2x2 max-pool
    # after a full-resolution convolution).
    sides = (28, 14, 7, 4) if model.network == "conv4_maxpool" else (14, 7, 4, 2)
    return _OMNIGLOT_PIXELS + model.filters * sum(side * side for side in sides)


def activation_bytes(cfg: SupervisedConfig) -> int:
    """A lower bound on the memory one outer step holds for its meta-gradient, in bytes.

    Counts each example's input and layer outputs once per inner step plus the query pass for
    second-order learners (their meta-gradient runs back through every step), once for the
    others, for every task of the meta-batch. Real use is higher (pre-activations, gradients,
    second-order terms), so a config above the device's memory cannot run.

    Args:
        cfg: The supervised config.

    Returns:
        The estimate in bytes.
    """
    task = cfg.task
    if task.family == "sinusoid":
        examples = task.shots + task.query_shots
    else:
        examples = (task.train_ways or task.ways) * (task.shots + task.query_shots)
    second_order = cfg.algo.name in _SECOND_ORDER_LEARNERS and not cfg.algo.first_order
    passes = cfg.algo.inner_steps + 1 if second_order else 1
    per_task = examples * _features_per_example(cfg) * passes * _FLOAT_BYTES
    return task.meta_batch_size * per_task


def device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device`` (host RAM for the CPU), or None where it cannot be read."""
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        return int(torch.cuda.get_device_properties(device).total_memory)
    except (RuntimeError, AssertionError, ValueError):
        return None


def preflight(cfg: SupervisedConfig, device: torch.device) -> None:
    """Refuse a supervised config that cannot run on ``device``, before anything is written.

    Args:
        cfg: The loaded config (each section has already checked its own fields).
        device: The device the run will use.

    Raises:
        ValueError: If the model does not fit the task family, or one outer step needs more
            memory than the device has.
    """
    if cfg.task.family == "sinusoid" and cfg.model.network != "mlp":
        raise ValueError(
            f"model.network={cfg.model.network!r} needs an image task family; sinusoid uses mlp"
        )
    need, have = activation_bytes(cfg), device_memory_bytes(device)
    if have is not None and need > have:
        raise ValueError(
            f"task.meta_batch_size={cfg.task.meta_batch_size} needs at least "
            f"{need / 2**30:.1f} GiB for one outer step's activations, more than the "
            f"{have / 2**30:.1f} GiB of the {device.type} device; lower task.meta_batch_size "
            "(or the shots per task)"
        )

"""Checks of a supervised config, run before any work.

The ``check_*`` functions are the range checks of each section (called from its
``__post_init__``, so a bad value is refused when the config loads). `preflight` checks what needs
more than one section or the machine; the command line calls it (through
:func:`metarl.algorithms.preflight`) after the config has loaded and before the run directory is
created, so that a config the machine cannot run is refused with one message instead of failing
(or being killed for memory) mid-run.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import torch

from metarl.algorithms.registry import sequence_learners
from metarl.config_checks import check_positive

if TYPE_CHECKING:
    from metarl.algorithms.supervised_config import (
        AlgoConfig,
        ModelConfig,
        OptimConfig,
        SupervisedConfig,
        TaskConfig,
    )

__all__ = [
    "activation_bytes",
    "check_algo",
    "check_model",
    "check_optim",
    "check_task",
    "device_memory_bytes",
    "preflight",
]

_FLOAT_BYTES = 4
_OMNIGLOT_PIXELS = 28 * 28
_SECOND_ORDER_LEARNERS = ("maml", "metasgd", "mamlpp", "alphamaml", "cavia", "metalstm")
"""Learners whose meta-gradient runs back through every inner step."""


def check_task(task: TaskConfig) -> None:
    """Raises ``ValueError`` naming the first bad field of the ``task`` section."""
    check_positive(task, "ways", "shots", "query_shots", "meta_batch_size")
    check_positive(task, "train_ways", "test_shots", "test_query_shots", "num_characters")
    if task.num_characters is not None and task.family != "omniglot":
        raise ValueError(f"num_characters applies to the omniglot family, not {task.family!r}")
    if task.split_dir is not None and task.family != "miniimagenet":
        raise ValueError(f"split_dir applies to the miniimagenet family, not {task.family!r}")
    low, high = task.phase_range
    if not -math.inf < low <= high < math.inf:
        raise ValueError(f"phase_range must be finite with low <= high, got {[low, high]}")


def check_model(model: ModelConfig) -> None:
    """Raises ``ValueError`` naming the first bad field of the ``model`` section."""
    if not model.hidden or min(model.hidden) < 1:
        raise ValueError(f"hidden must be one or more widths >= 1, got {list(model.hidden)}")
    check_positive(model, "filters")


def check_algo(algo: AlgoConfig) -> None:
    """Raises ``ValueError`` naming the first bad field of the ``algo`` section."""
    from metarl.algorithms.registry import supervised_learners

    if algo.name not in supervised_learners():
        raise ValueError(
            f"name must be a supervised learner, one of {supervised_learners()}; got {algo.name!r}"
        )


def check_optim(optim: OptimConfig) -> None:
    """Raises ``ValueError`` naming the first bad field of the ``optim`` section.

    Comparisons are negated so that NaN fails them too: a negative rate, decay or clip would
    turn the outer step into gradient ascent without any error.
    """
    if optim.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {optim.iterations}")
    check_positive(optim, "lr", "step_size", "grad_clip")
    top = optim.lr if optim.schedule == "cosine" else math.inf
    if not 0 <= optim.min_lr <= top:
        raise ValueError(
            f"min_lr must be in [0, lr={optim.lr}] (the final rate of the cosine "
            f"schedule), got {optim.min_lr}"
        )
    if not 0 < optim.gamma <= 1:
        raise ValueError(
            f"gamma must be in (0, 1] (the step schedule's decay factor), got {optim.gamma}"
        )


def _features_per_example(cfg: SupervisedConfig) -> int:
    """Floats one example produces through the network: its input and every layer's output."""
    model, task = cfg.model, cfg.task
    if task.family == "sinusoid":
        return 1 + sum(model.hidden) + 1
    channels, side = (3, 84) if task.family == "miniimagenet" else (1, 28)
    pixels = channels * side * side
    if model.network == "mlp":
        return pixels + sum(model.hidden) + task.ways
    if model.network == "flat":
        return pixels
    # conv4: four 3x3 conv blocks, each halving the side (stride 2, or a 2x2 max-pool after a
    # full-resolution convolution).
    sides = [side]
    for _ in range(4):
        sides.append((sides[-1] + 1) // 2)
    sides = sides[:4] if model.network == "conv4_maxpool" else sides[1:]  # 28: (28, 14, 7, 4)
    return pixels + model.filters * sum(s * s for s in sides)


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
    inner = cfg.inner
    second_order = inner is not None and not inner.first_order
    second_order = second_order and cfg.algo.name in _SECOND_ORDER_LEARNERS
    passes = inner.steps + 1 if inner is not None and second_order else 1
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
    sequence = sequence_learners()
    if cfg.model.network == "flat" and cfg.algo.name not in sequence:
        raise ValueError(
            f"model.network='flat' (the raw pixels, no learned layers) is an input for "
            f"{' and '.join(sequence)} only, not {cfg.algo.name}; use conv4_maxpool or "
            "conv4_strided"
        )
    need, have = activation_bytes(cfg), device_memory_bytes(device)
    if have is not None and need > have:
        raise ValueError(
            f"task.meta_batch_size={cfg.task.meta_batch_size} needs at least "
            f"{need / 2**30:.1f} GiB for one outer step's activations, more than the "
            f"{have / 2**30:.1f} GiB of the {device.type} device; lower task.meta_batch_size "
            "(or the shots per task)"
        )

"""Argument checks shared by the supervised task families (private)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise.

    Args:
        name: Argument name, used in the error message.
        value: The value received. ``bool`` is rejected even though it is an ``int``.

    Returns:
        ``int(value)``.

    Raises:
        ValueError: If ``value`` is not an integer or is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def check_interval(name: str, value: object) -> tuple[float, float]:
    """Return ``value`` as a ``(low, high)`` float pair with finite ``low < high``, else raise.

    Args:
        name: Argument name, used in the error message.
        value: A length-2 sequence of real numbers.

    Returns:
        ``(float(low), float(high))``.

    Raises:
        ValueError: If ``value`` is not a pair of finite reals with ``low < high``.
    """
    expected = f"{name} must be a (low, high) pair of real numbers, got {value!r}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(expected)
    items = list(value)
    if len(items) != 2:
        raise ValueError(expected)
    try:
        low, high = float(items[0]), float(items[1])
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{name} must be finite with low < high, got {value!r}")
    return low, high


def check_generator(value: object) -> torch.Generator:
    """Return ``value`` if it is a ``torch.Generator``, else raise.

    Args:
        value: The ``generator`` argument received.

    Returns:
        The generator.

    Raises:
        TypeError: If ``value`` is not a ``torch.Generator``.
    """
    if not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(value).__name__}")
    return value


def check_episode_args(
    num_tasks: object,
    ways: object,
    shots: object,
    query_shots: object,
    generator: object,
    *,
    num_classes: int,
    classes_in: str,
    max_per_class: int,
    per_class_in: str,
) -> tuple[int, int, int, int, torch.Generator]:
    """Checks the arguments of an image family's ``sample`` (Omniglot, miniImageNet).

    Args:
        num_tasks: Tasks (a positive int).
        ways: Classes per task (a positive int).
        shots: Support images per class (a positive int).
        query_shots: Query images per class (a positive int).
        generator: A ``torch.Generator``.
        num_classes: The most ``ways`` the split allows.
        classes_in: What the classes are, for the message (e.g. "classes in the train split").
        max_per_class: The most ``shots + query_shots`` a class allows.
        per_class_in: What limits them, for the message (e.g. "images per class").

    Returns:
        ``(num_tasks, ways, shots, query_shots, generator)``, the counts as ``int``.

    Raises:
        ValueError: If a count is not a positive int or exceeds its limit.
        TypeError: If ``generator`` is not a ``torch.Generator``.
    """
    counts = {"num_tasks": num_tasks, "ways": ways, "shots": shots, "query_shots": query_shots}
    t, w, k, q = (check_positive_int(name, value) for name, value in counts.items())
    gen = check_generator(generator)
    if w > num_classes:
        raise ValueError(f"ways must be <= {num_classes} ({classes_in}), got {w}")
    if k + q > max_per_class:
        raise ValueError(
            f"shots + query_shots must be <= {max_per_class} ({per_class_in}), got {k} + {q} = "
            f"{k + q}"
        )
    return t, w, k, q, gen

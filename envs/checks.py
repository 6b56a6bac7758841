"""Checks of constructor arguments and task parameters, shared by every env (numpy only).

Constructor arguments (``check_number``, ``check_positive_int``, ``check_interval``,
``check_low_high``) raise ``TypeError`` for a value of the wrong type and ``ValueError`` for one out
of range. Task parameters (``check_range``, ``check_vector``) raise ``ValueError`` for both, since a
task that fails them is outside the distribution. Every message names the argument or parameter,
the value received and what was expected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "check_interval",
    "check_low_high",
    "check_number",
    "check_positive_int",
    "check_range",
    "check_vector",
]


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _outside(value: float, low: float, high: float, open_low: bool) -> bool:
    too_low = value <= low if open_low else value < low
    return not math.isfinite(value) or too_low or value > high


def check_number(
    name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False
) -> float:
    """Checks a constructor argument that must be a finite real number in ``[low, high]``.

    Args:
        name: argument name, used in the error message.
        value: the value received.
        low: smallest allowed value.
        high: largest allowed value.
        open_low: if True, ``low`` itself is not allowed (the range is ``(low, high]``).

    Returns:
        ``value`` as a float.

    Raises:
        TypeError: if ``value`` is not a real number (bools are rejected).
        ValueError: naming the argument, its value and the allowed range.
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if _outside(value, low, high, open_low):
        bracket = "(" if open_low else "["
        raise ValueError(f"{name}={value!r} is outside the allowed range {bracket}{low}, {high}]")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """Checks a constructor argument that must be a positive int.

    Raises:
        TypeError: if ``value`` is not an int (bools are rejected).
        ValueError: if ``value`` < 1.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def check_interval(name: str, value: Any) -> tuple[float, float]:
    """Checks a ``(low, high)`` pair with ``low <= high`` (infinite bounds allowed).

    Raises:
        ValueError: naming the argument and its value.
    """
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"{name}={value!r} must satisfy low <= high")
    return low, high


def check_low_high(low: Any, high: Any, *, strict: bool = False) -> tuple[float, float]:
    """Checks the finite bounds ``low`` and ``high`` of a uniform range.

    Args:
        low: the lower bound.
        high: the upper bound.
        strict: require ``low < high`` (else ``low <= high``).

    Raises:
        TypeError: if a bound is not a real number.
        ValueError: if a bound is not finite or the bounds are in the wrong order.
    """
    low, high = check_number("low", low), check_number("high", high)
    if low > high or (strict and low == high):
        relation = "<" if strict else "<="
        raise ValueError(f"low must be {relation} high, got low={low!r}, high={high!r}")
    return low, high


def check_range(name: str, value: Any, low: float, high: float) -> float:
    """Checks that a scalar task parameter is a finite number in ``[low, high]``.

    Raises:
        ValueError: naming the parameter, its value and the allowed range.
    """
    if not _is_real(value):
        raise ValueError(f"task parameter {name!r} must be a number, got {value!r}")
    value = float(value)
    if _outside(value, low, high, open_low=False):
        raise ValueError(
            f"task parameter {name!r}={value!r} is outside the allowed range [{low}, {high}]"
        )
    return value


def check_vector(
    name: str, value: Any, shape: tuple[int, ...], low: float = -np.inf, high: float = np.inf
) -> np.ndarray:
    """Checks that a vector task parameter has ``shape`` and all entries in ``[low, high]``.

    Returns:
        The parameter as a float64 array.

    Raises:
        ValueError: naming the parameter, its value or shape and the allowed shape or range.
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"task parameter {name!r} must be numeric, got {value!r}") from err
    if array.shape != shape:
        raise ValueError(
            f"task parameter {name!r} must have shape {shape}, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"task parameter {name!r}={_shown(array)} must be finite")
    if np.any(array < low) or np.any(array > high):
        raise ValueError(
            f"task parameter {name!r}={_shown(array)} has entries outside the allowed range "
            f"[{low}, {high}]"
        )
    return array


def _shown(array: np.ndarray) -> str:
    return np.array2string(array, precision=4, threshold=8)

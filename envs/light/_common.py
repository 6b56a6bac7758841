"""Helpers shared by the natively batched light engines (numpy only).

Every engine in :mod:`envs.light` steps all of its sub-environments with one numpy computation.
The only per-sub-environment Python is the draw of one random number from each sub-environment's
own generator (:func:`draw_uniform`, :func:`draw_standard_normal`), which keeps a sub-environment's
trajectory independent of how a batch is split across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.core import BatchedTaskEngine

__all__ = [
    "LIGHT_RENDER_METADATA",
    "SubEnvStatus",
    "bar_image",
    "check_rgb_mode",
    "as_continuous_actions",
    "as_discrete_actions",
    "check_discrete_batch",
    "as_indices",
    "draw_standard_normal",
    "draw_uniform",
]

#: Render modes of the light envs: ``"rgb_array"``, a small uint8 picture of the state
#: (``"human"`` through gymnasium's ``HumanRendering`` wrapper, which ``gym.make`` adds).
LIGHT_RENDER_METADATA: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}


def check_rgb_mode(engine: object, render_mode: str) -> None:
    """Raises ``ValueError`` unless ``render_mode`` is ``"rgb_array"``, naming the engine."""
    if render_mode != "rgb_array":
        raise ValueError(
            f"{type(engine).__name__} renders render_mode='rgb_array' only, got {render_mode!r}"
        )


def bar_image(heights: np.ndarray, highlight: int | None = None, width: int = 12) -> np.ndarray:
    """A ``[64, width * len(heights), 3]`` uint8 picture of bars of ``heights`` in ``[0, 1]``.

    Bar ``highlight`` (if any) is blue, the others grey, on white.
    """
    rows = 64
    image = np.full((rows, width * len(heights), 3), 255, dtype=np.uint8)
    tops = rows - np.round(np.clip(heights, 0.0, 1.0) * rows).astype(np.int64)
    for k, top in enumerate(tops.tolist()):
        image[top:, k * width : (k + 1) * width - 1] = (40, 80, 220) if k == highlight else 150
    return image


def as_indices(indices: Sequence[int] | np.ndarray, num_envs: int) -> np.ndarray:
    """Converts sub-environment indices to a checked ``[m]`` int64 array.

    Raises:
        ValueError: if ``indices`` is not 1-D integer data or has an entry outside
            ``[0, num_envs)``.
    """
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"indices must be a 1-D integer array, got dtype {idx.dtype} and shape {idx.shape}"
        )
    if idx.min() < 0 or idx.max() >= num_envs:
        raise ValueError(f"indices must lie in [0, {num_envs}), got {idx.tolist()}")
    return idx.astype(np.int64, copy=False)


def as_continuous_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Checks a batch of continuous actions: numeric, of ``shape``, finite.

    Args:
        actions: ``[num_envs, action_dim]`` array-like.
        shape: the expected shape.

    Returns:
        ``actions`` as an array (no copy when it already is one).

    Raises:
        ValueError: on a wrong shape, non-numeric data, or NaN/inf entries.
    """
    array = np.asarray(actions)
    if array.shape != shape:
        raise ValueError(f"actions must have shape {shape}, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"actions must be numeric, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("actions contain NaN or inf")
    return array


def as_discrete_actions(actions: Any, num_envs: int, num_actions: int) -> np.ndarray:
    """Checks a batch of discrete actions: integers of shape ``[num_envs]`` in ``[0, num_actions)``.

    Returns:
        ``[num_envs]`` int64 array.

    Raises:
        ValueError: on a wrong shape, non-integer dtype or an out-of-range action.
    """
    array = np.asarray(actions)
    if array.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= num_actions:
        raise ValueError(
            f"actions must lie in [0, {num_actions}), "
            f"got values from {array.min()} to {array.max()}"
        )
    return array.astype(np.int64, copy=False)


def check_discrete_batch(actions: Any, num_actions: int) -> np.ndarray:
    """Checks a batch ``[n]`` of discrete actions (any ``n``), as the ``process`` backend needs.

    Raises:
        ValueError: on a wrong shape, a non-integer dtype or an action out of range.
    """
    array = np.asarray(actions)
    return as_discrete_actions(array, len(array) if array.ndim else 1, num_actions)


def _shared(rngs: Sequence[np.random.Generator]) -> np.random.Generator | None:
    """The generator all sub-envs share, if they do (one vectorised draw = the scalar draws)."""
    if len(rngs) > 1 and rngs[0] is rngs[-1] and all(rng is rngs[0] for rng in rngs):
        return rngs[0]
    return None


def draw_uniform(rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Draws one U[0, 1) number from each generator: ``[len(rngs)]``, entry ``i`` from it."""
    shared = _shared(rngs)
    if shared is not None:
        return shared.random(len(rngs))
    return np.array([rng.random() for rng in rngs], dtype=np.float64)


def draw_standard_normal(rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Draws one N(0, 1) number from each generator (as :func:`draw_uniform`)."""
    shared = _shared(rngs)
    return (
        shared.standard_normal(len(rngs))
        if shared is not None
        else np.array([rng.standard_normal() for rng in rngs], dtype=np.float64)
    )


class SubEnvStatus:
    """Which sub-environments have a task and which have been reset at least once.

    Lets ``reset`` sample missing tasks and ``step`` refuse to run before every sub-environment
    was reset, with O(1) cost in the common case.

    Args:
        num_envs: number of sub-environments.
    """

    def __init__(self, num_envs: int) -> None:
        self.has_task = np.zeros(num_envs, dtype=bool)
        self.was_reset = np.zeros(num_envs, dtype=bool)
        self._all_reset = False

    def loaded_tasks(self, engine: BatchedTaskEngine, indices: np.ndarray) -> list[Any]:
        """The tasks of the listed sub-environments, which ``engine`` copies into its arrays now.

        For ``_apply_tasks``: marks them as having a task.
        """
        self.has_task[indices] = True
        return [engine.tasks[int(i)] for i in indices]

    def begin_reset(
        self, engine: BatchedTaskEngine, indices: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Checks ``indices``, samples a task for each listed sub-env without one, marks them reset.

        Returns:
            The indices as a ``[m]`` int64 array, for the engine to reset its state there.

        Raises:
            ValueError: if ``indices`` is not 1-D integer data in ``[0, num_envs)``.
        """
        idx = as_indices(indices, engine.num_envs)
        if not self.has_task[idx].all():
            engine.ensure_tasks(idx)
        self.mark_reset(idx)
        return idx

    def mark_reset(self, indices: np.ndarray) -> None:
        """Records that the sub-environments in ``indices`` (``[m]`` int) were reset."""
        if not self._all_reset:
            self.was_reset[indices] = True
            self._all_reset = bool(self.was_reset.all())

    def check_ready(self) -> None:
        """Raises RuntimeError if some sub-environment was never reset."""
        if not self._all_reset:
            missing = np.flatnonzero(~self.was_reset).tolist()
            raise RuntimeError(f"reset sub-environment(s) {missing} before calling step()")

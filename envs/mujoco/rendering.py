"""Rendering one sub-environment of a MuJoCo engine with gymnasium's ``MujocoRenderer``.

``render_mode`` takes gymnasium's MuJoCo values (``"human"``, ``"rgb_array"``, ``"depth_array"``).
MuJoCo renders through an OpenGL context chosen by the ``MUJOCO_GL`` environment variable
(``glfw``: a window system; ``egl``: a GPU without a display; ``osmesa``: software). Where no
context can be made, :func:`render_frame` raises a ``RuntimeError`` naming ``MUJOCO_GL`` and the
underlying error, at ``render()`` time, so envs can still be built with a render mode (as
stable-baselines3's ``make_vec_env`` does) on machines that never render.

A failed attempt is remembered for the rest of the process: MuJoCo aborts the whole process
(``__cxa_guard_acquire detected recursive initialization``) when a context is made again after
one failed, so later calls raise the same error without trying. On Linux, the ``glfw`` backend
(MuJoCo's default) without ``DISPLAY`` or ``WAYLAND_DISPLAY`` is known to fail and is not tried.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import mujoco

__all__ = ["DEFAULT_CAMERA", "RENDER_SIZE", "make_renderer", "render_frame"]

#: Width and height of rendered frames in pixels (gymnasium v5's default).
RENDER_SIZE = 480

#: Free camera following the torso (body 1), like gymnasium v5's locomotion envs.
DEFAULT_CAMERA: dict[str, Any] = {"trackbodyid": 1, "distance": 4.0, "elevation": -20.0}

# The first failure to make an OpenGL context in this process (trying again would abort it).
_FAILURE: list[RuntimeError] = []


def make_renderer(model: mujoco.MjModel, data: mujoco.MjData) -> Any:
    """Returns gymnasium's ``MujocoRenderer`` over one ``(model, data)`` (no context made yet).

    Raises:
        RuntimeError: if gymnasium's renderer cannot be imported (see :func:`render_frame`).
    """
    try:
        from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer
    except Exception as err:  # noqa: BLE001 - a missing GL library surfaces as many types
        raise _no_context_error("any", err) from err
    return MujocoRenderer(
        model,
        data,
        default_cam_config=dict(DEFAULT_CAMERA),
        width=RENDER_SIZE,
        height=RENDER_SIZE,
    )


def render_frame(renderer: Any, render_mode: str) -> Any:
    """Renders one frame in ``render_mode`` (``None`` for ``"human"``).

    Raises:
        RuntimeError: if no OpenGL context can be made; the message names ``MUJOCO_GL``, the
            error MuJoCo gave, and how to get a context.
    """
    if _FAILURE:
        raise _FAILURE[0]
    backend = os.environ.get("MUJOCO_GL")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and backend in (None, "", "glfw") and not display:
        raise _no_context_error(render_mode, OSError("glfw needs DISPLAY, which is not set"))
    try:
        return renderer.render(render_mode)
    except Exception as err:  # noqa: BLE001 - GL failures come as FatalError, ImportError, ...
        _FAILURE.append(_no_context_error(render_mode, err))
        raise _FAILURE[0] from err


def _no_context_error(render_mode: str, err: BaseException) -> RuntimeError:
    backend = os.environ.get("MUJOCO_GL")
    return RuntimeError(
        f"render_mode={render_mode!r} needs an OpenGL context and none could be made "
        f"(MUJOCO_GL={backend!r}): {type(err).__name__}: {err}. Set MUJOCO_GL=egl (GPU, no "
        "display) or MUJOCO_GL=osmesa (CPU software rendering) with that library installed, "
        "or run with a display for glfw; or make the env with render_mode=None."
    )

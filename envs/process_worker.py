"""The worker side of the ``process`` backend (:mod:`envs.process_engine`): one slice per process.

A worker builds the engine of its slice ``[start, stop)`` of the sub-envs, maps the shared arrays
(actions, observations, rewards, terminations, the reset and truncation masks, the observations
before an autoreset and the packed reward terms and extras), and loops: wait for its ``go``
semaphore, read how the command came from its control word (``step``, ``step_autoreset`` and
``reset`` carry their data in shared memory; other commands come through its pipe), run it,
answer through ``done`` (and the pipe, for a reply or an error). The parent steps its own slice
with the same :func:`_run_command`.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from envs.core import BatchedTaskEngine
from envs.spin_wait import AdaptiveSpin

# Seconds a waiting side polls its semaphore before it blocks. Waking a blocked process costs a
# scheduler round trip (hundreds of microseconds on a virtual machine), comparable to stepping a
# slice of a cheap model; a short spin keeps the lockstep loop awake at the cost of at most this
# much CPU per wait.
_SPIN_SECONDS = 0.002

# Seconds between a blocked worker's checks that its parent still lives (it exits when not).
_PARENT_CHECK_SECONDS = 0.5

# ctl[worker, 0]: how the command arrived; ctl[worker, 1]: how the answer travels
_CMD_STEP, _CMD_PIPE, _CMD_RESET, _CMD_STEP_AUTORESET = 0, 1, 2, 3
_ANSWER_DONE, _ANSWER_PIPE = 0, 1
# the commands whose data is in shared memory (actions, the reset mask, the truncation mask) and
# that answer without a message
_SHARED_COMMANDS = {
    "step": _CMD_STEP,
    "reset": _CMD_RESET,
    "step_autoreset": _CMD_STEP_AUTORESET,
}
#: each shared command by its control word
_SHARED_BY_CODE = {code: cmd for cmd, code in _SHARED_COMMANDS.items()}
# a step's control word carries, above these bits, the dtype (``dtype.char``) its actions are
# cast to in the slices (0: none)
_CAST_SHIFT = 8


def _shm_array(shm: shared_memory.SharedMemory, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.ndarray(shape, dtype=dtype, buffer=shm.buf)


#: The shared block whose rows are the reward terms and extras of one float64 per sub-env.
_PACKED = "info"


def _shared_arrays(
    layout: dict[str, tuple[str, tuple[int, ...], str]],
    blocks: dict[str, shared_memory.SharedMemory],
    packed: Sequence[str],
) -> dict[str, np.ndarray]:
    """The arrays of ``layout`` over ``blocks``; ``info/<key>`` of a ``packed`` key is its row."""
    arrays = {k: _shm_array(blocks[k], v[1], v[2]) for k, v in layout.items()}
    for row, key in enumerate(packed):
        arrays["info/" + key] = arrays[_PACKED][row]
    return arrays


def _slice_view(arrays: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Sub-envs ``[start, stop)`` of every shared array (the packed block's columns)."""
    return {k: a[..., start:stop] if k == _PACKED else a[start:stop] for k, a in arrays.items()}


def _step_outputs(view: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``view`` a step writes, named as :meth:`BatchedTaskEngine.step_into` wants."""
    out = {k: view[k] for k in ("obs", "reward", "terminated")}
    out.update({k.removeprefix("info/"): a for k, a in view.items() if k.startswith("info/")})
    return out


def _run_command(
    engine: BatchedTaskEngine,
    view: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    cmd: str,
    data: Any,
) -> Any:
    """Executes one command on the engine of a slice whose shared arrays are ``view``.

    ``outputs``: :func:`_step_outputs` of ``view`` (built once per slice). ``data``: the
    command's data; for ``step`` and ``step_autoreset``, 0 or the ``dtype.char`` code of the
    dtype the shared actions are cast to before the step.
    """
    if cmd in ("step", "step_autoreset"):  # the parent checked the batch (ProcessEngine.step)
        actions = view["actions"] if not data else view["actions"].astype(chr(data))
        engine.step_into(actions, outputs)
        if cmd == "step":
            return None
        # ProcessEngine.step_autoreset: the ended sub-envs reset right after the step
        ended = np.logical_or(view["terminated"], view["truncated"])
        if ended.any():
            local = np.flatnonzero(ended)
            np.copyto(view["final_obs"], view["obs"])
            view["obs"][local] = engine.reset(local)
        return None
    if cmd in ("reset", "reset_listed"):
        local = np.asarray(data, dtype=np.int64)
        view["obs"][local] = engine.reset(local)
        return None
    if cmd == "seed":
        engine.seed(data)
        return None
    if cmd == "set_tasks":
        tasks, local = data
        engine.set_tasks(tasks, local)
        return None
    if cmd == "ensure_tasks":
        engine.ensure_tasks(np.asarray(data, dtype=np.int64))
        return list(engine.tasks)
    raise ValueError(f"unknown worker command {cmd!r}")


def _answer(conn: Connection, ctl: np.ndarray, done: Any, message: Any) -> None:
    """Signals ``done``; a ``message`` (not None) follows through the pipe, and ctl says so.

    The semaphore goes first so that a reply larger than the pipe's buffer cannot deadlock: the
    parent reads the pipe as soon as it sees ``ctl[1] == _ANSWER_PIPE``.
    """
    ctl[1] = _ANSWER_DONE if message is None else _ANSWER_PIPE
    done.release()
    if message is not None:
        conn.send(message)


def _worker_main(
    conn: Connection,
    go: Any,
    done: Any,
    ctl_name: str,
    index: int,
    engine_cls: type[BatchedTaskEngine],
    engine_kwargs: dict[str, Any],
    start: int,
    stop: int,
    layout: dict[str, tuple[str, tuple[int, ...], str]],
    packed: Sequence[str] = (),
    spin_seconds: float = _SPIN_SECONDS,
) -> None:
    """Runs one slice ``[start, stop)`` of the sub-envs until told to close.

    It exits by itself when its parent is gone (checked every ``_PARENT_CHECK_SECONDS`` while it
    waits), as it would on a closed pipe.
    """
    parent = os.getppid()
    blocks = {k: shared_memory.SharedMemory(name=v[0]) for k, v in layout.items()}
    ctl_block = shared_memory.SharedMemory(name=ctl_name)
    ctl = np.ndarray((index + 1, 2), dtype=np.int64, buffer=ctl_block.buf)[index]
    try:
        full = _shared_arrays(layout, blocks, packed)
        view = _slice_view(full, start, stop)
        outputs = _step_outputs(view)
        engine = engine_cls(stop - start, **engine_kwargs)
        _answer(conn, ctl, done, ("ok", None))
        spin = AdaptiveSpin(spin_seconds)
        try_go = functools.partial(go.acquire, False)
        while True:
            if not spin.poll(try_go):
                while not go.acquire(timeout=_PARENT_CHECK_SECONDS):
                    if os.getppid() != parent:
                        return
            word = int(ctl[0])
            code = word & ((1 << _CAST_SHIFT) - 1)
            data: Any
            if code == _CMD_RESET:  # the sub-envs to reset are marked in shared memory
                cmd, data = "reset", np.flatnonzero(view["reset_mask"])
            elif code in _SHARED_BY_CODE:  # a step: its data is in shared memory
                cmd, data = _SHARED_BY_CODE[code], word >> _CAST_SHIFT
            else:
                cmd, data = conn.recv()
            if cmd == "close":
                engine.close()
                _answer(conn, ctl, done, ("ok", None))
                break
            try:
                reply = spin.work(functools.partial(_run_command, engine, view, outputs, cmd, data))
            except Exception:  # noqa: BLE001 - every error goes back to the parent
                _answer(conn, ctl, done, ("error", traceback.format_exc()))
            else:
                _answer(conn, ctl, done, None if cmd in _SHARED_COMMANDS else ("ok", reply))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except Exception:  # noqa: BLE001 - construction errors go back to the parent too
        try:
            _answer(conn, ctl, done, ("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        del ctl
        for block in (*blocks.values(), ctl_block):
            block.close()
        conn.close()

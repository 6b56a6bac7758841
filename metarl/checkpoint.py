"""Atomic checkpoints that load with ``torch.load(weights_only=True)``, RNG state included.

A checkpoint is a plain dict. By convention it holds ``"iteration"`` (the number of completed outer
iterations, i.e. the step the resumed run starts at), the parameter and optimiser state dicts, and
``"rng"`` from `capture_rng_state`; anything else is up to the algorithm. Every value must be a
tensor, a number, a string, None, or a dict/list/tuple of those, so that the file loads with
``weights_only=True`` (no pickled code runs on load). `save_checkpoint` checks this before writing.

Checkpoints of a run live in ``<run_dir>/checkpoints/checkpoint_<iteration:08d>.pt``.
`load_checkpoint` first checks the CRC32 that ``torch.save`` stores for every record of its zip
archive (``torch.load`` itself does not), so a truncated or bit-flipped file raises
`CorruptCheckpointError` instead of loading wrong numbers; `latest_intact_checkpoint` skips
damaged files, naming each in a warning.

Example:
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     state = {"iteration": 3, "rng": capture_rng_state(np_rng=rng)}
    ...     path = save_checkpoint(checkpoint_path(run_dir, 3), state)
    ...     loaded = load_checkpoint(latest_checkpoint(run_dir))
    >>> path.name
    'checkpoint_00000003.pt'
    >>> expected = rng.random()
    >>> restored = restore_rng_state(loaded["rng"])  # Also resets the global RNGs.
    >>> restored.numpy.random() == expected
    True
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from metarl.config_renames import migrate_checkpoint
from metarl.device import cuda_available

__all__ = [
    "CHECKPOINT_DIRNAME",
    "CheckpointError",
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "RestoredRNG",
    "capture_rng_state",
    "checkpoint_dir",
    "checkpoint_iteration",
    "checkpoint_path",
    "generator_from_state",
    "generator_state",
    "latest_checkpoint",
    "latest_intact_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "restore_rng_state",
    "rotate_checkpoints",
    "save_checkpoint",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_DIRNAME = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")
_STALE_TEMP = re.compile(r"^\.checkpoint_\d+\.pt\..*\.tmp$")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_RNG_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: it is damaged, or loading it could run code."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated, empty or fails its CRC32 checks (a damaged file)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects that ``torch.load(weights_only=True)`` refuses."""


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


def checkpoint_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Return the directory holding a run's checkpoints.

    Args:
        run_dir: The run directory.

    Returns:
        ``run_dir / "checkpoints"``.
    """
    return Path(run_dir) / CHECKPOINT_DIRNAME


def checkpoint_path(run_dir: str | os.PathLike[str], iteration: int) -> Path:
    """Return the path of the checkpoint written after ``iteration`` completed outer iterations.

    Args:
        run_dir: The run directory.
        iteration: Number of completed outer iterations, >= 0.

    Returns:
        ``run_dir/checkpoints/checkpoint_<iteration:08d>.pt``.

    Raises:
        ValueError: If ``iteration`` is negative or not an int.
    """
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be an int >= 0, got {iteration!r}")
    return checkpoint_dir(run_dir) / f"checkpoint_{iteration:08d}.pt"


def checkpoint_iteration(path: str | os.PathLike[str]) -> int:
    """Return the iteration encoded in a checkpoint file name.

    Args:
        path: A path named like ``checkpoint_00000042.pt``.

    Returns:
        The iteration (42).

    Raises:
        ValueError: If the name does not follow the checkpoint pattern.
    """
    match = _CHECKPOINT_NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like checkpoint_<iteration>.pt")
    return int(match.group(1))


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Return a run's checkpoints, oldest iteration first (temporary files are ignored).

    Args:
        run_dir: The run directory.

    Returns:
        Checkpoint paths sorted by iteration; empty if there are none.
    """
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _CHECKPOINT_NAME.match(p.name) and p.is_file()]
    return sorted(found, key=checkpoint_iteration)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """Return the checkpoint with the highest iteration, or None.

    Args:
        run_dir: The run directory.

    Returns:
        The newest checkpoint path, or None if the run has none.
    """
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def final_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """Return the checkpoint of a run's last iteration, from a run or results folder.

    A results folder may keep, beside its final checkpoint, earlier ones that other runs start
    from, and one of those may carry a higher iteration than a shorter rerun's final. So the
    final is the checkpoint named for ``optim.iterations`` in the folder's ``config.yaml``; the
    highest iteration only where the config names none or no file matches it.

    Args:
        folder: A folder holding ``checkpoint_*.pt`` files itself or in ``checkpoints/``.

    Returns:
        The final checkpoint's path, or None if the folder holds no checkpoint.
    """
    from metarl.config import load_yaml  # the project's safe YAML reader (imports no torch)

    folder = Path(folder)
    beside = [p for p in folder.glob("checkpoint_*.pt") if _CHECKPOINT_NAME.match(p.name)]
    found = [*beside, *list_checkpoints(folder)]  # a results folder's, and a run folder's
    if not found:
        return None
    config = folder / "config.yaml"
    if config.is_file():
        optim = (load_yaml(config.read_text(encoding="utf-8")) or {}).get("optim") or {}
        iterations = optim.get("iterations") if isinstance(optim, dict) else None
        named = [p for p in found if checkpoint_iteration(p) == iterations]
        if isinstance(iterations, int) and named:
            return named[0]
    return max(found, key=checkpoint_iteration)


def rotate_checkpoints(run_dir: str | os.PathLike[str], keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints, and temp files left by a crash.

    Args:
        run_dir: The run directory.
        keep_last: Number of newest checkpoints to keep, >= 1.

    Returns:
        The checkpoint paths deleted.

    Raises:
        ValueError: If ``keep_last`` < 1.
    """
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    directory = checkpoint_dir(run_dir)
    if directory.is_dir():
        for path in directory.iterdir():
            if _STALE_TEMP.match(path.name):
                path.unlink(missing_ok=True)
    removed = list_checkpoints(run_dir)[:-keep_last]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------

# Exact types: subclasses such as numpy.float64 pickle as numpy objects, which weights_only rejects.
_PLAIN_TYPES = (bool, int, float, str, bytes, type(None))
_TORCH_TYPES = (torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_weights_only_safe(obj: Any, where: str) -> None:
    """Raise TypeError naming the first value that ``torch.load(weights_only=True)`` rejects."""
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in _PLAIN_TYPES:
                raise TypeError(f"state{where} has a key of type {type(key).__name__}: {key!r}")
            _check_weights_only_safe(value, f"{where}[{key!r}]")
    elif type(obj) in (list, tuple):
        for index, value in enumerate(obj):
            _check_weights_only_safe(value, f"{where}[{index}]")
    elif type(obj) not in _PLAIN_TYPES and not isinstance(obj, _TORCH_TYPES):
        raise TypeError(
            f"state{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
            "torch.load(weights_only=True) cannot read; store tensors, numbers, strings, None and "
            "dicts/lists/tuples of them (numpy arrays: torch.from_numpy; numpy scalars: .item())"
        )


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The state is written to a temporary file in the same directory, flushed and fsync'ed, then
    renamed over ``path`` with `os.replace`: a crash at any point leaves either the old file or
    the new one, never a partial one, and no temporary file behind.

    Args:
        path: Destination file; parent directories are created.
        state: String-keyed dict of tensors, numbers, strings, None and containers of them.

    Returns:
        The path written.

    Raises:
        TypeError: If ``state`` holds a value that ``torch.load(weights_only=True)`` cannot read.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {type(state).__name__}")
    state = dict(state)
    _check_weights_only_safe(state, "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    logger.debug("saved checkpoint %s", path)
    return path


def verify_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check a checkpoint file against the CRC32 that ``torch.save`` stores for every record.

    ``torch.save`` writes a zip archive with a CRC32 per record, but ``torch.load`` does not check
    them: a flipped bit in a tensor loads silently as a wrong number. This reads the whole file
    and checks every record, so a truncated, empty or bit-flipped file is caught here.

    Args:
        path: Checkpoint file.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        CorruptCheckpointError: If the file is not a readable zip archive or a record fails its
            CRC32 check.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, UnicodeDecodeError, ValueError) as err:
        reason = str(err) or type(err).__name__
        raise CorruptCheckpointError(
            f"checkpoint {path} is damaged (not a readable zip archive: {reason})"
        ) from err
    if bad is not None:
        raise CorruptCheckpointError(
            f"checkpoint {path} is damaged (record {bad!r} fails its CRC32 check)"
        )


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Verify a checkpoint (`verify_checkpoint`), then load it with ``weights_only=True``.

    Args:
        path: Checkpoint file.
        map_location: Device to load tensors onto (e.g. ``"cpu"`` to resume a GPU run on CPU).

    Returns:
        The saved state dict, in the current layout (an older checkpoint is migrated by
        `metarl.config_renames.migrate_checkpoint`).

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        CorruptCheckpointError: If the file is damaged.
        UnsafeCheckpointError: If it holds pickled objects that weights-only loading refuses
            (loading them could run code).
        CheckpointError: If it cannot be loaded for another reason, or is not a dict.
    """
    path = Path(path)
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message opens with advice to retry with weights_only=False; keep only the line
        # that names what was refused ("unsupported GLOBAL posix.system ...").
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
        reason = (named or lines or [type(err).__name__])[0].rstrip(".")
        raise UnsafeCheckpointError(
            f"checkpoint {path} refused: it holds pickled objects that weights-only loading will "
            f"not run ({reason}); load only checkpoints that metarl wrote"
        ) from err
    except (RuntimeError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {reason}") from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a metarl checkpoint dict"
        )
    return migrate_checkpoint(state)


def latest_intact_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """Return the newest checkpoint that passes `verify_checkpoint`, warning about damaged ones.

    A checkpoint newer than the one returned is damaged; each is named in a warning (logged on
    ``metarl.checkpoint``), so that resume and evaluation continue from the newest good state.

    Args:
        run_dir: The run directory.

    Returns:
        The newest intact checkpoint, or None if the run has no checkpoint at all.

    Raises:
        CorruptCheckpointError: If the run has checkpoints and every one of them is damaged.
    """
    damaged: list[Path] = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError as err:
            logger.warning("%s; falling back to the next older checkpoint", err)
            damaged.append(path)
            continue
        return path
    if damaged:
        names = ", ".join(p.name for p in damaged)
        raise CorruptCheckpointError(
            f"every checkpoint in {checkpoint_dir(run_dir)} is damaged ({names}); remove them to "
            "start the run again from iteration 0, or use another run directory"
        )
    return None


# --------------------------------------------------------------------------------------------------
# Random number generator state
# --------------------------------------------------------------------------------------------------


def _encode_numpy(obj: Any) -> Any:
    """Encode a numpy bit-generator state with tensors and plain types, exactly."""
    if isinstance(obj, Mapping):
        return {str(key): _encode_numpy(value) for key, value in obj.items()}
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        if array.dtype.kind == "u" and array.dtype.itemsize > 1:  # torch lacks most uint types.
            array = array.view(np.dtype(f"i{array.dtype.itemsize}"))
        return {"__ndarray__": torch.from_numpy(array.copy()), "dtype": obj.dtype.str}
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        value = int(obj)
        # PCG64 states are 128-bit integers; a decimal string is exact on every torch version.
        return value if _INT64_MIN <= value <= _INT64_MAX else {"__int__": str(value)}
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, str) or obj is None:
        return obj
    raise TypeError(f"cannot encode numpy RNG state value of type {type(obj).__name__}")


def _decode_numpy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy().view(np.dtype(obj["dtype"])).copy()
        if "__int__" in obj:
            return int(obj["__int__"])
        return {key: _decode_numpy(value) for key, value in obj.items()}
    return obj


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return a numpy Generator's bit-generator state in a ``weights_only``-loadable form.

    Args:
        rng: Any `numpy.random.Generator` (PCG64, PCG64DXSM, MT19937, Philox, SFC64).

    Returns:
        The encoded state; `generator_from_state` rebuilds an identical generator.
    """
    return _encode_numpy(rng.bit_generator.state)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """Build a new numpy Generator from `generator_state` output.

    Args:
        state: Encoded bit-generator state.

    Returns:
        A generator whose next draws equal those of the captured one.

    Raises:
        ValueError: If the state names an unknown bit generator.
    """
    decoded = _decode_numpy(state)
    name = decoded.get("bit_generator")
    bit_generator_cls = getattr(np.random, str(name), None)
    if not (
        isinstance(bit_generator_cls, type)
        and issubclass(bit_generator_cls, np.random.BitGenerator)
    ):
        raise ValueError(f"unknown numpy bit generator {name!r} in RNG state")
    bit_generator = bit_generator_cls()
    bit_generator.state = decoded
    return np.random.Generator(bit_generator)


def capture_rng_state(
    np_rng: np.random.Generator | None = None, torch_gen: torch.Generator | None = None
) -> dict[str, Any]:
    """Capture every random number generator a run draws from, for a checkpoint.

    Captures Python's `random`, numpy's global RNG, torch's CPU RNG, the CUDA RNGs when CUDA has
    been initialised in this process, and optionally a numpy Generator and a torch Generator.
    Everything is stored as tensors and plain types, so the checkpoint loads with
    ``weights_only=True`` and round-trips exactly.

    Args:
        np_rng: The run's numpy Generator, if it has one.
        torch_gen: The run's torch Generator, if it has one.

    Returns:
        A dict for the checkpoint's ``"rng"`` entry.
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "format": _RNG_FORMAT,
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy_global": _encode_numpy(np.random.get_state(legacy=False)),
        "torch_cpu": torch.get_rng_state(),
    }
    # Only devices this process has used; asking for the state of others would initialise CUDA.
    if torch.cuda.is_initialized():
        state["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    if np_rng is not None:
        state["numpy_generator"] = generator_state(np_rng)
    if torch_gen is not None:
        state["torch_generator"] = {"device": str(torch_gen.device), "state": torch_gen.get_state()}
    return state


class RestoredRNG(NamedTuple):
    """Generators rebuilt by `restore_rng_state` (None where none was captured)."""

    numpy: np.random.Generator | None
    """The run's numpy Generator."""
    torch: torch.Generator | None
    """The run's torch Generator."""


def _restore_cuda(states: list[torch.Tensor]) -> None:
    if not cuda_available():
        logger.warning("checkpoint holds CUDA RNG states but CUDA is not available; skipped")
        return
    count = torch.cuda.device_count()
    if count != len(states):
        logger.warning(
            "checkpoint holds %d CUDA RNG states, %d devices visible", len(states), count
        )
    for index, device_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(device_state.cpu(), index)


def restore_rng_state(state: Mapping[str, Any]) -> RestoredRNG:
    """Restore global RNG states and rebuild the run's generators from `capture_rng_state` output.

    Sets Python's `random`, numpy's global RNG, torch's CPU RNG and (when available) the CUDA
    RNGs; call it from the entry point only, like global seeding. The numpy and torch Generators
    are returned as new objects rather than modified in place.

    Args:
        state: The checkpoint's ``"rng"`` entry.

    Returns:
        The rebuilt numpy and torch Generators.

    Raises:
        ValueError: If ``state`` was not produced by `capture_rng_state`.
    """
    if not isinstance(state, Mapping) or state.get("format") != _RNG_FORMAT:
        raise ValueError("state is not an RNG state written by capture_rng_state")
    python = state["python"]
    internal = tuple(int(x) for x in python["internal"].tolist())
    random.setstate((python["version"], internal, python["gauss_next"]))
    np.random.set_state(_decode_numpy(state["numpy_global"]))
    torch.set_rng_state(state["torch_cpu"].cpu())
    if "torch_cuda" in state:
        _restore_cuda(state["torch_cuda"])
    np_rng = None
    if "numpy_generator" in state:
        np_rng = generator_from_state(state["numpy_generator"])
    torch_gen = None
    if "torch_generator" in state:
        torch_gen = torch.Generator(device=state["torch_generator"]["device"])
        torch_gen.set_state(state["torch_generator"]["state"].cpu())
    return RestoredRNG(numpy=np_rng, torch=torch_gen)

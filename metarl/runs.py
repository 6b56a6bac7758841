"""Run directories, non-finite-loss guards and the progress bar.

A run directory holds everything a run produces::

    <run_dir>/config.yaml          resolved config (written by `open_run`)
    <run_dir>/metrics.csv          step,key,value rows (`metarl.logger.CSVLogger`)
    <run_dir>/tensorboard/         TensorBoard event files
    <run_dir>/checkpoints/         checkpoint_<iteration:08d>.pt, newest `keep_checkpoints` kept
    <run_dir>/eval/                evaluation JSON/CSV/PNG (`metarl.evaluation`)

With several ranks (:mod:`metarl.distributed`) rank 0 alone writes the directory: the config,
the metrics, the checkpoints. The other ranks get a read-only view (its logger does nothing, its
checkpoint saves are skipped) and receive rank 0's checkpoint through a broadcast, so they never
read a file before rank 0 wrote it and need no shared file system.

Reopening a run with ``resume=True`` first compares the stored config with the new one
(`check_resume`: computation-changing differences are refused before anything is written) and sets
damaged checkpoints aside; `Run.load_latest_checkpoint` loads the newest intact checkpoint.

A driver loop uses it like this (the checkpoint's ``"iteration"`` is the number of completed
outer iterations, and metrics of iteration ``i`` are logged at step ``i``)::

    with open_run_from_config(cfg, cfg.run) as run:
        state = run.load_latest_checkpoint()
        start = 0 if state is None else state["iteration"]
        enabled = None if cfg.run.progress else False  # None: only on a terminal, outside CI.
        bar = progress_bar(range(start, num_iterations), enabled=enabled)
        for iteration in bar:
            ...
            check_finite(iteration, outer_loss=loss)   # raises before a bad checkpoint is saved
            bar.set_postfix(run.logger.log(iteration, {"train/outer_loss": loss}), refresh=False)
            run.save_checkpoint(iteration + 1, {...})
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from metarl import checkpoint as ckpt
from metarl import distributed
from metarl.config import (
    RunConfig,
    save_config,
)
from metarl.logger import CSVLogger, Logger, MultiLogger, ScalarLike, TensorBoardLogger
from metarl.run_checks import (
    CONFIG_FILENAME,
    RESUMABLE_CHANGES,
    IncompatibleResumeError,
    check_init_from,
    check_resume,
)

__all__ = [
    "IncompatibleResumeError",
    "NonFiniteLossError",
    "RESUMABLE_CHANGES",
    "Run",
    "RunDirExistsError",
    "check_finite",
    "check_init_from",
    "check_resume",
    "open_run",
    "open_run_from_config",
    "progress_bar",
    "progress_enabled",
    "run_dir_occupied",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Backend = Literal["tensorboard", "csv"]


class RunDirExistsError(FileExistsError):
    """The run directory already holds a run and ``resume`` was not requested."""


class NonFiniteLossError(FloatingPointError):
    """A loss or metric became NaN or infinite.

    Raised before the step's checkpoint is saved, so no checkpoint holds the bad state. Whether
    an earlier checkpoint exists is for the caller to say (the command line names it, if any).

    Attributes:
        step: The step at which it happened.
        name: The quantity's name.
        value: Its value (a float, or None for a multi-element tensor).
    """

    def __init__(self, step: int, name: str, value: float | None) -> None:
        self.step, self.name, self.value = step, name, value
        shown = "" if value is None else f" = {value}"
        super().__init__(
            f"non-finite {name}{shown} at step {step}; training stopped before saving this step"
        )


def check_finite(step: int, **scalars: ScalarLike) -> None:
    """Raise if any quantity is NaN or infinite (arrays and tensors: any element).

    Call it before saving a checkpoint, so the last checkpoint on disk stays the last good state.
    Tensor checks are gathered so that each device syncs once, however many tensors are passed.

    Args:
        step: The current step, named in the error.
        **scalars: Quantities to check, by name (e.g. ``outer_loss=loss, kl=kl``; a metric key
            with a slash can be passed as ``**{"train/loss": loss}``).

    Raises:
        NonFiniteLossError: Naming the first non-finite quantity, its value and the step.
    """
    tensors = {name: value for name, value in scalars.items() if isinstance(value, torch.Tensor)}
    finite: dict[str, bool] = {}
    by_device: dict[torch.device, list[str]] = {}
    for name, tensor in tensors.items():
        by_device.setdefault(tensor.device, []).append(name)
    for names in by_device.values():
        values = [tensors[n].detach() for n in names]
        if all(v.dim() == 0 for v in values):  # metrics: one stack, one isfinite, one sync
            flags = torch.isfinite(torch.stack(values)).tolist()
        else:
            flags = torch.stack([torch.isfinite(v).all() for v in values]).tolist()
        finite.update(zip(names, flags, strict=True))
    for name, value in scalars.items():
        if name in finite:
            if not finite[name]:
                tensor = tensors[name]
                shown = float(tensor.detach().reshape(())) if tensor.numel() == 1 else None
                raise NonFiniteLossError(step, name, shown)
        elif isinstance(value, float) and math.isfinite(value):
            continue
        elif not np.isfinite(value).all():
            array = np.asarray(value)
            shown = float(array.reshape(())) if array.size == 1 else None
            raise NonFiniteLossError(step, name, shown)


# --------------------------------------------------------------------------------------------------
# Run directory
# --------------------------------------------------------------------------------------------------

CSV_FILENAME = "metrics.csv"
TENSORBOARD_DIRNAME = "tensorboard"
EVAL_DIRNAME = "eval"


@dataclasses.dataclass(frozen=True)
class Run:
    """An open run directory: paths, the metric logger and checkpoint saving.

    Create it with `open_run`; close it (or use it as a context manager) to flush the logger.

    Attributes:
        run_dir: The run directory.
        logger: Fan-out logger over the requested backends.
        keep_checkpoints: Number of newest checkpoints kept on disk.
        resumed_from: Latest checkpoint found when the run was opened with ``resume=True``.
        read_only: A rank other than 0 of a distributed run: nothing is written.
        init_from: The checkpoint a new run starts from (``run.init_from``), None once the run
            has a checkpoint of its own.
        new_dir: A new run in a missing or empty directory (what `discard` may remove).
        created_dir: Opening the run created its directory.
    """

    run_dir: Path
    logger: Logger
    keep_checkpoints: int = 3
    resumed_from: Path | None = None
    read_only: bool = False
    init_from: Path | None = None
    new_dir: bool = False
    created_dir: bool = False

    @property
    def config_path(self) -> Path:
        """The resolved config file."""
        return self.run_dir / CONFIG_FILENAME

    @property
    def csv_path(self) -> Path:
        """The CSV metrics file."""
        return self.run_dir / CSV_FILENAME

    @property
    def tensorboard_dir(self) -> Path:
        """The TensorBoard event directory."""
        return self.run_dir / TENSORBOARD_DIRNAME

    @property
    def checkpoint_dir(self) -> Path:
        """The checkpoint directory."""
        return ckpt.checkpoint_dir(self.run_dir)

    @property
    def eval_dir(self) -> Path:
        """The directory for evaluation results."""
        return self.run_dir / EVAL_DIRNAME

    def save_checkpoint(self, iteration: int, state: Mapping[str, Any]) -> Path:
        """Save ``{**state, "iteration": iteration}`` atomically, then drop old checkpoints.

        Args:
            iteration: Number of completed outer iterations (the step a resume starts at).
            state: Parameters, optimiser state, ``capture_rng_state()`` output, ...

        Returns:
            The checkpoint path (not written by a read-only view).

        Raises:
            ValueError: If ``state`` holds a different ``"iteration"``.
        """
        if "iteration" in state and state["iteration"] != iteration:
            raise ValueError(
                f"state['iteration'] = {state['iteration']!r} disagrees with iteration={iteration}"
            )
        if self.read_only:
            return ckpt.checkpoint_path(self.run_dir, iteration)
        path = ckpt.save_checkpoint(
            ckpt.checkpoint_path(self.run_dir, iteration), {**state, "iteration": iteration}
        )
        ckpt.rotate_checkpoints(self.run_dir, self.keep_checkpoints)
        return path

    def latest_checkpoint(self) -> Path | None:
        """Return the newest intact checkpoint path, or None (damaged ones are named in warnings).

        Raises:
            CorruptCheckpointError: If every checkpoint of the run is damaged.
        """
        return ckpt.latest_intact_checkpoint(self.run_dir)

    def load_latest_checkpoint(
        self, map_location: str | torch.device | None = None
    ) -> dict[str, Any] | None:
        """Load the newest intact checkpoint (``weights_only=True``), or None if there is none.

        A damaged newer checkpoint is skipped with a warning naming it (see `latest_checkpoint`).
        With several ranks, rank 0 reads the file and broadcasts it: every rank gets the same
        state.

        Args:
            map_location: Device to load tensors onto.

        Returns:
            The checkpoint state, or None.

        Raises:
            CheckpointError: If every checkpoint is damaged, or the newest intact one cannot be
                loaded safely.
        """
        return _load_on_main(self.latest_checkpoint, map_location)

    def load_initial_checkpoint(
        self, map_location: str | torch.device | None = None
    ) -> dict[str, Any] | None:
        """Load ``init_from`` (``weights_only=True``; rank 0 reads it and broadcasts), or None."""
        return _load_on_main(lambda: self.init_from, map_location)

    def close(self) -> None:
        """Flush and close the logger."""
        self.logger.close()

    def discard(self) -> None:
        """Undo the opening of a new run that failed before its first iteration.

        Closes the logger and, for a new run in a directory that was missing or empty, removes
        what opening wrote (the config, the metrics CSV, the TensorBoard events) and the
        directory when the run created it; a resumed run (or any other rank than 0) is left as
        it is.
        """
        self.close()
        if self.read_only or not self.new_dir:
            return
        for path in (self.config_path, self.csv_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
        if self.created_dir and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _load_on_main(
    find: Callable[[], Path | None], map_location: str | torch.device | None
) -> dict[str, Any] | None:
    """The checkpoint ``find()`` names, loaded (on rank 0 and broadcast with several ranks)."""
    if not distributed.world().distributed:
        path = find()
        return None if path is None else ckpt.load_checkpoint(path, map_location=map_location)

    def load_on_main() -> dict[str, Any] | None:
        path = find()
        return None if path is None else ckpt.load_checkpoint(path, map_location="cpu")

    state = distributed.on_main(load_on_main)
    return None if state is None else _to_device(state, map_location)


def _to_device(obj: Any, device: str | torch.device | None) -> Any:
    """``obj`` (a checkpoint's nested containers) with every tensor moved to ``device``."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):  # checkpoints hold dicts, lists and tuples (weights_only)
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def run_dir_occupied(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds anything: a fresh run into it is refused (resume it instead)."""
    path = Path(run_dir)
    return path.is_dir() and any(path.iterdir())


def _prepare_run_dir(
    run_dir: Path, config: Any, resume: bool, init_from: str | None = None
) -> None:
    """Check the run directory, set damaged checkpoints aside on resume, write the config.

    Refuses to clobber an existing run, to resume one with a computation-changing config
    (`check_resume`) and to start from a checkpoint it cannot continue (`check_init_from`);
    nothing is written before these checks pass.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run_dir {run_dir} exists and is not a directory")
    if run_dir_occupied(run_dir) and not resume:
        raise RunDirExistsError(
            f"run_dir {run_dir} already holds a run; pass resume=True (run.resume=true) to "
            "continue it, or choose another run_dir"
        )
    latest = None
    if resume:
        latest = check_resume(run_dir, config)
        # Damaged checkpoints newer than the one resumed from are renamed out of the way, so
        # that every reader (metric purge, rotation, evaluation) sees the good state as latest.
        newest_good = -1 if latest is None else ckpt.checkpoint_iteration(latest)
        for path in ckpt.list_checkpoints(run_dir):
            if ckpt.checkpoint_iteration(path) > newest_good:
                damaged = path.with_name(path.name + ".damaged")
                os.replace(path, damaged)
                logger.warning("set the damaged checkpoint %s aside as %s", path, damaged.name)
    if init_from is not None and latest is None:
        check_init_from(init_from, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILENAME)


def open_run(
    run_dir: str | os.PathLike[str],
    config: Any,
    *,
    resume: bool = False,
    log_backends: Sequence[Backend] = ("tensorboard", "csv"),
    keep_checkpoints: int = 3,
    init_from: str | None = None,
) -> Run:
    """Create (or, with ``resume``, reopen) a run directory and open its logger.

    Writes the resolved config to ``config.yaml``. When resuming from a checkpoint of iteration
    ``k``, metrics the interrupted process logged at steps ``>= k`` are purged from the CSV and
    hidden in TensorBoard, so the resumed run's curves have no duplicated steps.

    Args:
        run_dir: The run directory.
        config: The resolved config dataclass.
        resume: Continue an existing run; an empty or missing ``run_dir`` starts a new one.
        log_backends: Metric writers to open.
        keep_checkpoints: Number of newest checkpoints kept on disk, >= 1.
        init_from: A checkpoint the run starts from while it has none of its own
            (``run.init_from``; checked by `check_init_from` before anything is written).

    Returns:
        The open run: with several ranks, rank 0 opens it and the others get a read-only view.

    Raises:
        RunDirExistsError: If ``run_dir`` is non-empty and ``resume`` is False.
        ValueError: If a backend name is unknown or ``keep_checkpoints`` < 1.
        RankZeroError: On a rank other than 0, when rank 0 failed to open the run.
    """
    run_dir = Path(run_dir)
    args = (run_dir, config, resume, log_backends, keep_checkpoints, init_from)
    if not distributed.world().distributed:
        return _open_run(*args)
    opened: list[Run] = []

    def open_on_main() -> Path | None:  # rank 0 alone; the other ranks wait for it
        opened.append(_open_run(*args))
        return opened[0].resumed_from

    resumed_from = distributed.on_main(open_on_main)
    if opened:
        return opened[0]
    start = Path(init_from) if init_from is not None and resumed_from is None else None
    return Run(
        run_dir, MultiLogger([]), keep_checkpoints, resumed_from, read_only=True, init_from=start
    )


def _open_run(
    run_dir: Path,
    config: Any,
    resume: bool,
    log_backends: Sequence[Backend],
    keep_checkpoints: int,
    init_from: str | None = None,
) -> Run:
    unknown = [b for b in log_backends if b not in ("tensorboard", "csv")]
    if unknown:
        raise ValueError(f"log_backends must be 'tensorboard' or 'csv', got {unknown}")
    if keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be >= 1, got {keep_checkpoints}")
    new_dir = not (run_dir.is_dir() and any(run_dir.iterdir()))
    created = not run_dir.exists()
    _prepare_run_dir(run_dir, config, resume, init_from)
    latest = ckpt.latest_checkpoint(run_dir) if resume else None
    start = Path(init_from) if init_from is not None and latest is None else None
    if start is not None:
        logger.info("starting %s from %s", run_dir, start)
    # Metrics logged after the latest checkpoint (all of them, if there is none) will be logged
    # again by the resumed process.
    purge_from = None
    if resume:
        purge_from = 0 if latest is None else ckpt.checkpoint_iteration(latest)
        logger.info("resuming %s at iteration %d (checkpoint: %s)", run_dir, purge_from, latest)
    loggers: list[Logger] = []
    if "csv" in log_backends:
        loggers.append(CSVLogger(run_dir / CSV_FILENAME, purge_from=purge_from))
    if "tensorboard" in log_backends:
        loggers.append(TensorBoardLogger(run_dir / TENSORBOARD_DIRNAME, purge_from=purge_from))
    return Run(
        run_dir,
        MultiLogger(loggers),
        keep_checkpoints,
        resumed_from=latest,
        init_from=start,
        new_dir=new_dir and not resume,
        created_dir=created and not resume,
    )


def open_run_from_config(config: Any, run_config: RunConfig) -> Run:
    """Open the run described by a config's run section.

    Args:
        config: The resolved config, written to ``config.yaml``.
        run_config: Its run section (``config.run``): run_dir, resume, log_backends,
            keep_checkpoints and init_from are used.

    Returns:
        The open run.
    """
    return open_run(
        run_config.run_dir,
        config,
        resume=run_config.resume,
        log_backends=run_config.log_backends,
        keep_checkpoints=run_config.keep_checkpoints,
        init_from=run_config.init_from,
    )


# --------------------------------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------------------------------


def progress_enabled() -> bool:
    """Return whether a live progress bar makes sense: stderr is a terminal and ``CI`` is unset.

    Returns:
        True for an interactive terminal outside CI.
    """
    ci = os.environ.get("CI", "").strip().lower()
    return sys.stderr.isatty() and ci in ("", "0", "false")


def progress_bar(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool | None = None,
) -> tqdm:
    """Wrap an iterable in a tqdm bar for the driver loop.

    Show live metrics with ``bar.set_postfix(run.logger.log(step, metrics), refresh=False)``:
    `Logger.log` returns the values it converted, so the bar costs no extra device sync.

    Args:
        iterable: What the driver loop iterates over (e.g. ``range(start, num_iterations)``).
        total: Number of items, if ``iterable`` has no ``len``.
        desc: Label shown before the bar.
        enabled: Force the bar on or off; None decides with `progress_enabled`.

    Returns:
        The tqdm iterator (a silent pass-through when disabled).
    """
    show = progress_enabled() if enabled is None else enabled
    return tqdm(iterable, total=total, desc=desc, disable=not show, dynamic_ncols=True)

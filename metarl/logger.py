"""One metric-logger interface with TensorBoard and CSV writers behind it.

Every key is namespaced: ``train/`` (outer-loop quantities), ``adapt/`` (inner loop), ``eval/``
(held-out tasks) or ``time/`` (wall-clock and throughput). A call to `Logger.log` validates the
keys and converts all values to Python floats once (one device-to-host transfer per device for
tensor values), then hands plain floats to the writer(s).

The CSV writer uses the *long* format ``step,key,value``: one row per scalar. New keys can appear
at any step without rewriting the file, rows are appended and flushed as they are logged (a crash
loses nothing already logged), and a resumed run appends to the same file. To get a wide table:
``pandas.read_csv(path).pivot_table(index="step", columns="key", values="value")``.

Both writers accept ``purge_from``: when a run resumes from a checkpoint, rows and events with
``step >= purge_from`` (logged after that checkpoint by the interrupted process) are dropped.

Example:
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with CSVLogger(Path(tmp) / "metrics.csv") as csv_logger:
    ...         _ = csv_logger.log(0, {"train/loss": torch.tensor(0.5), "time/fps": 120})
    ...     print((Path(tmp) / "metrics.csv").read_text().split())
    ['step,key,value', '0,train/loss,0.5', '0,time/fps,120.0']
"""

from __future__ import annotations

import abc
import csv
import logging
import numbers
import operator
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np
import torch

__all__ = [
    "NAMESPACES",
    "CSVLogger",
    "Logger",
    "MultiLogger",
    "TensorBoardLogger",
    "read_metrics",
    "to_scalars",
]

log = logging.getLogger(__name__)

NAMESPACES: tuple[str, ...] = ("train/", "adapt/", "eval/", "time/")
"""Prefixes a metric key must start with."""

ScalarLike = float | int | np.floating | np.integer | np.ndarray | torch.Tensor


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key.startswith(NAMESPACES) or key.endswith("/"):
        raise ValueError(
            f"metric key {key!r} must be a string starting with one of {', '.join(NAMESPACES)} "
            "followed by a name"
        )


def _tensors_to_floats(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Convert single-element tensors with one host transfer per device."""
    by_device: dict[torch.device, list[str]] = {}
    for key, tensor in tensors.items():
        if tensor.numel() != 1:
            raise ValueError(
                f"metric {key!r} must be a single-element tensor, got shape {tuple(tensor.shape)}"
            )
        by_device.setdefault(tensor.device, []).append(key)
    floats: dict[str, float] = {}
    for keys in by_device.values():
        stacked = torch.stack([tensors[k].detach().reshape(()).to(torch.float64) for k in keys])
        floats.update(zip(keys, stacked.cpu().tolist(), strict=True))
    return floats


def to_scalars(scalars: Mapping[str, ScalarLike]) -> dict[str, float]:
    """Validate metric keys and convert every value to a Python float.

    Args:
        scalars: Key to value; values are numbers, numpy scalars or single-element arrays/tensors.

    Returns:
        Key to float, in the input order.

    Raises:
        ValueError: If a key lacks a namespace, or an array/tensor has more than one element.
        TypeError: If a value is not numeric.
    """
    tensors: dict[str, torch.Tensor] = {}
    floats: dict[str, float] = {}
    for key, value in scalars.items():
        _check_key(key)
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, np.ndarray):
            if value.size != 1:
                raise ValueError(
                    f"metric {key!r} must be a single-element array, got shape {value.shape}"
                )
            floats[key] = float(value.reshape(()))
        elif isinstance(value, numbers.Real):
            floats[key] = float(value)
        else:
            raise TypeError(
                f"metric {key!r} must be a real number or single-element tensor/array, "
                f"got {type(value).__name__}"
            )
    floats.update(_tensors_to_floats(tensors))
    return {key: floats[key] for key in scalars}


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError(f"step must be an int, got {step!r}")
    try:
        value = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}") from None
    if value < 0:
        raise ValueError(f"step must be >= 0, got {value}")
    return value


class Logger(abc.ABC):
    """Writes a step's scalar metrics somewhere; use as a context manager or call `close`."""

    def log(self, step: int, scalars: Mapping[str, ScalarLike]) -> dict[str, float]:
        """Validate, convert and write one step's metrics.

        Args:
            step: Global step (the outer iteration, or the x value of an evaluation curve), >= 0.
            scalars: Namespaced key to value; tensors are converted here, once.

        Returns:
            The converted values, e.g. for a progress bar's postfix (no second device sync).

        Raises:
            ValueError: If a key lacks a namespace or ``step`` is negative.
            TypeError: If ``step`` is not an int or a value is not numeric.
        """
        floats = to_scalars(scalars)
        self.write(_check_step(step), floats)
        return floats

    @abc.abstractmethod
    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Write already validated metrics (use `log` unless you converted them yourself).

        Args:
            step: Global step, >= 0.
            scalars: Namespaced key to float.
        """

    def flush(self) -> None:  # noqa: B027 (a writer that writes through has nothing to flush)
        """Make everything written so far durable (the driver calls it before a checkpoint)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release resources; further writes are errors."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_metrics(path: str | os.PathLike[str], keys: Sequence[str]) -> dict[str, dict[int, float]]:
    """``key -> {step: value}`` for ``keys`` from a :class:`CSVLogger` file (a later row wins).

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        KeyError: If a key was never logged; the message lists the keys that were.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics CSV (is {path.parent} a run directory?)")
    found: dict[str, dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found.setdefault(row["key"], {})[int(row["step"])] = float(row["value"])
    missing = [k for k in keys if k not in found]
    if missing:
        logged = ", ".join(sorted(found))
        raise KeyError(f"{path} has no {', '.join(missing)}; logged keys: {logged}")
    return {k: found[k] for k in keys}


class CSVLogger(Logger):
    """Appends ``step,key,value`` rows to a CSV file, flushed after each step.

    Args:
        path: CSV file; created with its parent directories, appended to if it exists.
        purge_from: If given, first drop existing rows whose step is ``>= purge_from``.
    """

    HEADER = ("step", "key", "value")

    def __init__(self, path: str | os.PathLike[str], purge_from: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists() or self.path.stat().st_size == 0
        if not is_new:
            with open(self.path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
            if tuple(header) != self.HEADER:
                raise ValueError(
                    f"{self.path} exists but its header is {header}, not {list(self.HEADER)}"
                )
            if purge_from is not None:
                self._purge(_check_step(purge_from))
        self._file: TextIO | None = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if is_new:
            self._writer.writerow(self.HEADER)
            self._file.flush()

    def _purge(self, purge_from: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        # A row cut short by a kill mid-write has fewer fields (or a cut step number): dropped.
        kept = [
            row
            for row in rows[1:]
            if len(row) == 3 and row[0].isdigit() and int(row[0]) < purge_from
        ]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([list(self.HEADER), *kept])
        os.replace(tmp, self.path)
        log.info(
            "purged %d rows with step >= %d from %s",
            len(rows) - 1 - len(kept),
            purge_from,
            self.path,
        )

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Append one row per scalar and flush.

        Args:
            step: Global step.
            scalars: Key to float.

        Raises:
            RuntimeError: If the logger is closed.
        """
        if self._file is None:
            raise RuntimeError(f"CSVLogger for {self.path} is closed")
        self._writer.writerows((step, key, repr(value)) for key, value in scalars.items())
        self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None


_EVENT_FILE = re.compile(r"^events\.out\.tfevents\.(\d+)\.")


def _wait_for_a_later_second(log_dir: Path) -> None:
    """Waits (< 1 s) until the clock's second is past every event file's in ``log_dir``.

    TensorBoard reads a directory's event files in name order, and a name starts with the second
    it was created in, then host, pid and a counter compared as text ("...pid.10" < "...pid.9").
    A resumed writer's file holds the purge marker that hides the interrupted run's later
    events; it must sort after the files it purges, which a later second guarantees.
    """
    seconds = [
        int(m.group(1))
        for p in log_dir.glob("events.out.tfevents.*")
        if (m := _EVENT_FILE.match(p.name))
    ]
    while seconds and int(time.time()) <= max(seconds):
        time.sleep(0.02)


class TensorBoardLogger(Logger):
    """Writes scalars as TensorBoard events with `torch.utils.tensorboard.SummaryWriter`.

    Args:
        log_dir: Directory for the event files.
        purge_from: If given, TensorBoard hides events with ``step >= purge_from`` written by an
            earlier, interrupted process (``SummaryWriter(purge_step=...)``).
        flush_secs: How often pending events are flushed to disk, in seconds.
    """

    def __init__(
        self, log_dir: str | os.PathLike[str], purge_from: int | None = None, flush_secs: int = 30
    ) -> None:
        # Imported here: tensorboard is slow to import and only needed when this writer is used.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        purge = None if purge_from is None else _check_step(purge_from)
        if purge is not None:
            _wait_for_a_later_second(self.log_dir)
        self._writer: Any = SummaryWriter(
            log_dir=str(self.log_dir), purge_step=purge, flush_secs=flush_secs
        )

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Add one scalar event per key.

        Args:
            step: Global step.
            scalars: Key to float.

        Raises:
            RuntimeError: If the logger is closed.
        """
        if self._writer is None:
            raise RuntimeError(f"TensorBoardLogger for {self.log_dir} is closed")
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, global_step=step)

    def flush(self) -> None:
        """Write pending events to disk now."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MultiLogger(Logger):
    """Fans each step out to several loggers, converting values once for all of them.

    Args:
        loggers: The writers to fan out to.
    """

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = tuple(loggers)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Pass converted metrics to every logger.

        Args:
            step: Global step.
            scalars: Key to float.
        """
        for logger in self.loggers:
            logger.write(step, scalars)

    def flush(self) -> None:
        """Flush every logger."""
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        """Close every logger, even if one fails; the first failure is re-raised."""
        first_error: BaseException | None = None
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as exc:  # Close the others before re-raising.
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

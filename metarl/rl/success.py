"""Success rates of evaluation episodes, for task families whose env reports ``info["success"]``.

Meta-World's metric (Yu et al. 2019, arXiv 1910.10897, §5; Meta-World+, arXiv 2505.11289): an
episode succeeds when ``info["success"]`` is 1 at any of its steps; a task's success rate is the
fraction of its episodes that succeed. :class:`SuccessRecorder` wraps the vector env that an
evaluation samples with and records, for every episode that starts with a reset of all
sub-envs, whether each sub-env succeeded; :func:`success_table` arranges those records as the
evaluation's ``[tasks, steps]`` grid, and :func:`write_success_results` writes the success curves
(overall and per task class) as JSON/CSV/PNG beside the return's and returns the summary for the
return's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from envs.core import Task
from envs.vector import TaskVectorEnv
from metarl import distributed
from metarl.evaluation import summarize, write_eval_results

__all__ = [
    "SuccessRecorder",
    "episode_success_rate",
    "gathered_success_table",
    "success_table",
    "task_class",
    "write_success_results",
]


def task_class(task: Task) -> str | None:
    """The class a task belongs to (Meta-World's ``env_name``), or None for one-class families."""
    value = getattr(task, "task_class", None)
    return value if isinstance(value, str) else None


def episode_success_rate(record: np.ndarray) -> Tensor:
    """The fraction of one record's episodes that succeeded, as a float64 0-d tensor.

    Training logs it per phase (MAML-RL: before and after adaptation; RL²: the first and last
    episode of the trials), so Meta-World runs show their success curve as they learn.
    """
    return torch.tensor(float(np.mean(record)), dtype=torch.float64)


class SuccessRecorder:
    """A pass-through view of a vector env that records which episodes succeeded.

    Every reset of all sub-envs (no ``reset_mask``, or an all-true one) starts a new record of
    ``num_envs`` flags; every step ORs ``info["success"]`` into the current one. Envs without a
    ``"success"`` info record nothing (:attr:`records` stays empty).

    Args:
        vec: The vector env; every other attribute is read from it.
    """

    def __init__(self, vec: TaskVectorEnv) -> None:
        self.vec = vec
        self.records: list[np.ndarray] = []
        self._current: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vec, name)

    def clear(self) -> None:
        """Forgets every record."""
        self.records, self._current = [], None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets the env; a reset of every sub-env starts a new record."""
        mask = (kwargs.get("options") or {}).get("reset_mask")
        if mask is None or np.all(mask):
            self._current = None
        return self.vec.reset(**kwargs)

    def step(self, actions: Any) -> tuple[Any, ...]:
        """Steps the env and ORs ``info["success"]`` into the current record."""
        out = self.vec.step(actions)
        success = out[4].get("success")
        if success is not None:
            if self._current is None:
                self._current = np.zeros(self.vec.num_envs, dtype=bool)
                self.records.append(self._current)
            self._current |= np.asarray(success) > 0
        return out


def success_table(
    records: Sequence[np.ndarray],
    num_tasks: int,
    tasks_per_chunk: int,
    columns: int,
    episodes_per_task: int = 1,
) -> np.ndarray:
    """Arranges the records of a chunked evaluation as ``[num_tasks, columns]`` success rates.

    The evaluation runs the tasks ``tasks_per_chunk`` at a time (the last chunk padded by
    repetition) and, per chunk, ``columns`` episodes-starts (adaptation steps or episodes of a
    trial), each on ``tasks_per_chunk * episodes_per_task`` sub-envs (sub-env ``i`` runs task
    ``i // episodes_per_task``).

    Raises:
        ValueError: if the number or size of the records does not fit.
    """
    chunks = -(-num_tasks // tasks_per_chunk)
    return _chunk_rows(records, chunks, tasks_per_chunk, columns, episodes_per_task)[:num_tasks]


def gathered_success_table(
    records: Sequence[np.ndarray],
    num_tasks: int,
    tasks_per_chunk: int,
    columns: int,
    episodes_per_task: int = 1,
) -> np.ndarray | None:
    """:func:`success_table` of an evaluation whose chunks are split over ranks.

    Each rank holds the records of its own chunks (:func:`metarl.distributed.shard` of the
    chunks, contiguous and in rank order); rank 0 receives the whole table, the same as one
    process would compute. In a distributed run every rank must call this (it is a collective),
    whether or not it recorded anything.

    Returns:
        The ``[num_tasks, columns]`` table on rank 0 (and in a one-rank run); None on the other
        ranks, and everywhere when no rank recorded a success flag (an env without
        ``info["success"]``).

    Raises:
        ValueError: if some ranks recorded success flags and others that ran chunks did not.
    """
    if not distributed.world().distributed:
        if not records:
            return None
        return success_table(records, num_tasks, tasks_per_chunk, columns, episodes_per_task)
    chunks = -(-num_tasks // tasks_per_chunk)
    mine = distributed.shard(chunks)
    local = (
        _chunk_rows(records, len(mine), tasks_per_chunk, columns, episodes_per_task)
        if records
        else None
    )
    parts = distributed.gather_objects((len(mine), local))
    if parts is None or all(rows is None for _, rows in parts):
        return None
    missing = [r for r, (owned, rows) in enumerate(parts) if owned and rows is None]
    if missing:
        raise ValueError(f"ranks {missing} ran evaluation chunks but recorded no success flags")
    return np.concatenate([rows for owned, rows in parts if owned], axis=0)[:num_tasks]


def _chunk_rows(
    records: Sequence[np.ndarray],
    chunks: int,
    tasks_per_chunk: int,
    columns: int,
    episodes_per_task: int,
) -> np.ndarray:
    """``[chunks * tasks_per_chunk, columns]`` success rates of ``chunks`` consecutive chunks."""
    width = tasks_per_chunk * episodes_per_task
    if len(records) != chunks * columns or any(r.shape != (width,) for r in records):
        raise ValueError(
            f"expected {chunks * columns} success records of {width} sub-envs, got "
            f"{[r.shape for r in records]}"
        )
    rows = [np.zeros((0, columns))]
    for c in range(chunks):
        block = np.stack(records[c * columns : (c + 1) * columns], axis=1).astype(np.float64)
        rows.append(block.reshape(tasks_per_chunk, episodes_per_task, columns).mean(1))
    return np.concatenate(rows, axis=0)


def _summary(values: np.ndarray) -> dict[str, Any]:
    mean, ci95 = summarize(values)
    return {
        "mean": [float(x) for x in mean],
        "ci95": [float(x) if np.isfinite(x) else None for x in ci95],
        "num_tasks": int(values.shape[0]),
    }


def write_success_results(
    out: Path,
    *,
    algorithm: str,
    task_family: str,
    steps: Sequence[int],
    curves: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    seed: int,
    main: str,
    x_label: str = "adaptation steps",
) -> dict[str, Any]:
    """Writes the success curves beside the return's JSON and returns their summary.

    Files: ``<stem>_success.json/.csv/.png`` with every curve and, for families of several task
    classes, the main curve per class (``"<main> <class>"``).

    Args:
        out: The return's JSON path.
        algorithm: Name of the evaluated algorithm.
        task_family: The env id.
        steps: The x value of each column.
        curves: Curve name -> ``[tasks, steps]`` success rates.
        tasks: The evaluated tasks (for the per-class split).
        seed: Seed of the evaluation.
        main: The main curve's name.
        x_label: Label of the x axis.

    Returns:
        ``{"file", "steps", "overall": {curve: {mean, ci95, num_tasks}}, "per_class":
        {class: {mean, ci95, num_tasks}}}`` (per class: the main curve), for the return's JSON.
    """
    classes = [task_class(task) for task in tasks]
    per_class: dict[str, np.ndarray] = {}
    if all(c is not None for c in classes):
        for name in dict.fromkeys(classes):
            rows = [i for i, c in enumerate(classes) if c == name]
            per_class[str(name)] = curves[main][rows]
    plotted = dict(curves)
    if len(per_class) > 1:
        plotted.update({f"{main} {name}": values for name, values in per_class.items()})
    path = out.with_name(f"{out.stem}_success.json")
    write_eval_results(
        path,
        algorithm=algorithm,
        task_family=task_family,
        metric="success rate",
        steps=list(steps),
        curves=plotted,
        seed=seed,
        main=main,
        x_label=x_label,
        extra={"definition": "an episode succeeds when info['success'] is 1 at any step"},
    )
    return {
        "file": path.name,
        "steps": list(steps),
        "overall": {name: _summary(values) for name, values in curves.items()},
        "per_class": {name: _summary(values) for name, values in per_class.items()},
    }

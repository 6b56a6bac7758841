"""Summaries of adaptation curves over held-out tasks, written as JSON, CSV, PNG and scalars.

A curve is an array ``[tasks, steps]``: the metric (return, accuracy, MSE) of each held-out task
after 0, 1, ..., k adaptation steps (gradient-based learners) or in episode 1, 2, ... of a trial
(RL²). It is summarised per step by the mean over tasks and a 95% confidence interval
``ci95 = 1.96 * std / sqrt(num_tasks)`` using the *sample* standard deviation (``ddof=1``), the
unbiased choice for a sample of tasks; with a single task the interval is undefined (NaN in
arrays, ``null`` in JSON).

Example:
    >>> mean, ci95 = summarize([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    >>> mean.tolist(), ci95.round(4).tolist()
    ([3.0, 5.0], [2.2632, 4.0801])
"""

from __future__ import annotations

import csv
import json
import logging
import math
import operator
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from metarl.logger import Logger

__all__ = [
    "CI95_Z",
    "WINDOWS_PER_EPISODE",
    "EvalFiles",
    "Summary",
    "log_curves",
    "mean_ci",
    "minus_baselines",
    "paired_difference",
    "summarize",
    "windowed_returns",
    "write_eval_results",
]

_log = logging.getLogger(__name__)  # `logger` is write_eval_results' metric-logger argument.

CI95_Z = 1.96
"""Normal quantile of a two-sided 95% interval."""


class Summary(NamedTuple):
    """Per-step summary of a curve over tasks."""

    mean: np.ndarray
    """Mean over tasks, shape ``[steps]``."""
    ci95: np.ndarray
    """Half-width of the 95% confidence interval, shape ``[steps]``."""


class EvalFiles(NamedTuple):
    """Paths written by `write_eval_results`."""

    json: Path
    """Summary of every curve."""
    csv: Path
    """One row per step per curve."""
    png: Path
    """Plot of the curves with confidence bands."""


def _as_curve(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must have shape [tasks, steps] with both >= 1, got {array.shape}")
    return array


def summarize(values: np.ndarray | torch.Tensor | Sequence[Sequence[float]]) -> Summary:
    """Mean and 95% confidence half-width over tasks, per step.

    Args:
        values: Metric per task and step, shape ``[tasks, steps]``.

    Returns:
        ``Summary(mean, ci95)``, each shape ``[steps]``; ``ci95 = 1.96 * std(ddof=1) / sqrt(n)``,
        NaN when there is a single task.

    Raises:
        ValueError: If ``values`` is not two-dimensional and non-empty.
    """
    array = _as_curve(values, "values")
    num_tasks = array.shape[0]
    mean = array.mean(axis=0)
    if num_tasks < 2:
        return Summary(mean, np.full_like(mean, np.nan))
    ci95 = CI95_Z * array.std(axis=0, ddof=1) / math.sqrt(num_tasks)
    return Summary(mean, ci95)


def paired_difference(returns: np.ndarray, curve: str) -> dict[str, Any]:
    """The last episode's return minus the first's, task by task: does a trial's return rise?

    Paired on the task, the interval leaves out how much the tasks differ from each other, which
    dominates the per-episode intervals (a fast velocity scores lower in every episode).

    Args:
        returns: ``[tasks, episodes]`` episode returns of one curve.
        curve: Its name.

    Returns:
        ``{"curve", "episodes": [1, n], "mean", "ci95"}`` over tasks (``ci95`` None for one task).
    """
    return {
        "curve": curve,
        "episodes": [1, returns.shape[1]],
        **mean_ci(returns[:, -1] - returns[:, 0]),
    }


def mean_ci(values: np.ndarray) -> dict[str, float | None]:
    """``{"mean", "ci95"}`` of per-task ``values`` (``ci95`` None for one task)."""
    mean, ci95 = summarize(values[:, None])
    return {"mean": float(mean[0]), "ci95": float(ci95[0]) if np.isfinite(ci95[0]) else None}


def minus_baselines(curves: Mapping[str, np.ndarray], curve: str) -> dict[str, Any]:
    """``curve``'s trial return minus each other curve's on the same task (paired).

    The intervals leave out how much the tasks differ, which the trial returns' own intervals
    carry: whether RL² beats greedy on these tasks shows here, not in two overlapping intervals.

    Args:
        curves: ``[tasks, episodes]`` episode returns per curve, on the same tasks.
        curve: The evaluated policy's curve.

    Returns:
        ``{"curve": curve, "minus": {other: {"mean", "ci95"}}}``.
    """
    own = curves[curve].sum(axis=1)
    minus = {k: mean_ci(own - v.sum(axis=1)) for k, v in curves.items() if k != curve}
    return {"curve": curve, "minus": minus}


WINDOWS_PER_EPISODE = 10
"""Windows of steps that RL²'s evaluation splits each episode into (``return_by_window``)."""


def windowed_returns(rewards: np.ndarray, windows: int = WINDOWS_PER_EPISODE) -> dict[str, Any]:
    """The return collected in each window of steps of each episode, mean and 95% CI over tasks.

    Shows how quickly an agent adapts within a trial: a policy that identifies its task in the
    first steps of episode 1 collects less there than in later windows, and (if it remembers)
    not in episode 2.

    Args:
        rewards: ``[tasks, episodes, H]`` per-step rewards
            (:func:`metarl.rl.trials.trial_step_rewards`).
        windows: Windows per episode; each holds ``ceil(H / windows)`` steps, the last the rest.

    Returns:
        ``steps_per_window``, ``window_starts`` (the first step of each window) and ``mean`` and
        ``ci95``, each ``[episodes][windows]`` (``ci95`` None with one task).

    Raises:
        ValueError: If ``rewards`` is not three-dimensional or ``windows`` < 1.
    """
    if rewards.ndim != 3:
        raise ValueError(f"rewards must be [tasks, episodes, steps], got shape {rewards.shape}")
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    horizon = rewards.shape[-1]
    size = -(-horizon // windows)
    starts = list(range(0, horizon, size))
    sums = np.stack([rewards[..., a : a + size].sum(-1) for a in starts], axis=-1)  # [N, E, W]
    mean, ci95 = summarize(sums.reshape(len(sums), -1))
    shape = sums.shape[1:]
    cis = [[float(c) if np.isfinite(c) else None for c in row] for row in ci95.reshape(shape)]
    return {
        "steps_per_window": size,
        "window_starts": starts,
        "mean": mean.reshape(shape).tolist(),
        "ci95": cis,
    }


def _json_list(array: np.ndarray) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in array.tolist()]


def _plot(
    path: Path,
    steps: Sequence[int],
    summaries: Mapping[str, Summary],
    *,
    title: str,
    metric: str,
    x_label: str,
) -> None:
    # The object-oriented API needs no pyplot state and no global backend: PNG renders with Agg.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    x = np.asarray(steps)
    for name, (mean, ci95) in summaries.items():
        (line,) = axes.plot(x, mean, marker="o", label=name)
        band = np.nan_to_num(ci95, nan=0.0)
        axes.fill_between(x, mean - band, mean + band, color=line.get_color(), alpha=0.2)
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"{metric} (mean ± 95% CI over tasks)")
    axes.set_title(title)
    if len(steps) <= 20:
        axes.set_xticks(x)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=100)


def log_curves(
    metric_logger: Logger,
    steps: Sequence[int],
    summaries: Mapping[str, Summary],
    metric: str,
    log_step: int | None,
) -> None:
    """Logs curve summaries as ``eval/<curve>/<metric>`` scalars.

    Args:
        metric_logger: Where to log.
        steps: The x value of each summary entry (adaptation step or episode in the trial).
        summaries: Curve name to its :class:`Summary`.
        metric: The metric's name (``"return"``, ``"accuracy"``, ``"mse"``).
        log_step: None logs each point at its x value; an int logs
            ``eval/<curve>/<metric>_step<k>`` for every k at that (training) step.
    """
    if log_step is None:  # The curve itself: x = adaptation step.
        for index, step in enumerate(steps):
            scalars = {}
            for name, (mean, ci95) in summaries.items():
                scalars[f"eval/{name}/{metric}"] = mean[index]
                scalars[f"eval/{name}/{metric}_ci95"] = ci95[index]
            metric_logger.log(step, scalars)
        return
    scalars = {}  # One point per adaptation step, at training step `log_step`.
    for name, (mean, ci95) in summaries.items():
        for index, step in enumerate(steps):
            scalars[f"eval/{name}/{metric}_step{step}"] = mean[index]
            scalars[f"eval/{name}/{metric}_step{step}_ci95"] = ci95[index]
    metric_logger.log(log_step, scalars)


def _check_inputs(
    out_path: Path, steps: Sequence[int], curves: Mapping[str, Any], main: str | None
) -> tuple[list[int], dict[str, np.ndarray], str]:
    if out_path.suffix != ".json":
        raise ValueError(f"out_path must end in .json, got {out_path}")
    try:
        step_list = [operator.index(s) for s in steps]
    except TypeError:
        raise TypeError(f"steps must be a sequence of ints, got {steps!r}") from None
    if not curves:
        raise ValueError("curves must hold at least one curve")
    arrays = {name: _as_curve(values, f"curves[{name!r}]") for name, values in curves.items()}
    for name, array in arrays.items():
        if array.shape[1] != len(step_list):
            raise ValueError(
                f"curves[{name!r}] has {array.shape[1]} steps but steps has {len(step_list)}"
            )
    main_name = next(iter(arrays)) if main is None else main
    if main_name not in arrays:
        raise ValueError(f"main={main!r} is not one of the curves {list(arrays)}")
    return step_list, arrays, main_name


def write_eval_results(
    out_path: str | os.PathLike[str],
    *,
    algorithm: str,
    task_family: str,
    metric: str,
    steps: Sequence[int],
    curves: Mapping[str, np.ndarray | torch.Tensor],
    seed: int,
    extra: Mapping[str, Any] | None = None,
    main: str | None = None,
    x_label: str = "adaptation steps",
    logger: Logger | None = None,
    log_step: int | None = None,
) -> EvalFiles:
    """Summarise adaptation curves and write them as JSON, CSV, a PNG plot and logger scalars.

    The JSON holds ``algorithm, task_family, metric, steps, mean, ci95, num_tasks, seed`` for the
    main curve; other curves (pre-trained, random initialisation, oracle, ...) go under
    ``"baselines": {name: {"mean", "ci95", "num_tasks"}}`` and ``extra`` under ``"extra"``. The
    CSV has columns ``curve, step, mean, ci95, num_tasks``. The CSV and PNG are written beside
    the JSON with the same stem.

    Args:
        out_path: JSON file to write, ending in ``.json``; parent directories are created.
        algorithm: Name of the evaluated algorithm (e.g. ``"maml_rl"``).
        task_family: Name of the task family (e.g. ``"metarl/HalfCheetahVel-v0"``).
        metric: What the curves measure (``"return"``, ``"accuracy"``, ``"mse"``); the y label.
        steps: x value of each column of the curves (adaptation steps, or episodes in a trial).
        curves: Curve name to values of shape ``[tasks, steps]``.
        seed: Seed of the evaluation.
        extra: More JSON-serialisable information to record.
        main: Name of the main curve; defaults to the first one.
        x_label: Label of the x axis, e.g. ``"episode in trial"`` for RL².
        logger: If given, also log ``eval/<curve>/<metric>`` (and ``..._ci95``) scalars.
        log_step: With ``logger``: None logs each curve point at its adaptation step; an int
            logs ``eval/<curve>/<metric>_step<k>`` for every k at that (training) step.

    Returns:
        The paths of the JSON, CSV and PNG files.

    Raises:
        ValueError: If shapes disagree, ``main`` is unknown or ``out_path`` is not a ``.json``.
        TypeError: If ``steps`` are not ints or ``extra`` is not JSON-serialisable.
    """
    out_path = Path(out_path)
    step_list, arrays, main_name = _check_inputs(out_path, steps, curves, main)
    summaries = {name: summarize(array) for name, array in arrays.items()}
    result: dict[str, Any] = {
        "algorithm": algorithm,
        "task_family": task_family,
        "metric": metric,
        "steps": step_list,
        "mean": _json_list(summaries[main_name].mean),
        "ci95": _json_list(summaries[main_name].ci95),
        "num_tasks": int(arrays[main_name].shape[0]),
        "seed": int(seed),
    }
    baselines = {
        name: {
            "mean": _json_list(summary.mean),
            "ci95": _json_list(summary.ci95),
            "num_tasks": int(arrays[name].shape[0]),
        }
        for name, summary in summaries.items()
        if name != main_name
    }
    if baselines:
        result["baselines"] = baselines
    if extra is not None:
        result["extra"] = dict(extra)
    text = json.dumps(result, indent=2, allow_nan=False)  # Fails before any file is written.

    out_path.parent.mkdir(parents=True, exist_ok=True)
    files = EvalFiles(out_path, out_path.with_suffix(".csv"), out_path.with_suffix(".png"))
    files.json.write_text(text + "\n", encoding="utf-8")
    with open(files.csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["curve", "step", "mean", "ci95", "num_tasks"])
        for name, (mean, ci95) in summaries.items():
            for index, step in enumerate(step_list):
                row = [name, step, repr(float(mean[index])), repr(float(ci95[index]))]
                writer.writerow([*row, arrays[name].shape[0]])
    title = f"{algorithm} on {task_family}"
    _plot(files.png, step_list, summaries, title=title, metric=metric, x_label=x_label)
    if logger is not None:
        log_curves(logger, step_list, summaries, metric, log_step)
    _log.info("wrote eval results of %s on %s to %s", algorithm, task_family, files.json)
    return files

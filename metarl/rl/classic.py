"""Classic baselines of RL² (Duan et al. 2016, §3.1-3.2, Tables 1-2), found by task type.

The baselines live beside the task families they solve: :mod:`metarl.rl.classic_bandit`
(random, UCB1, Thompson sampling, Gittins, greedy and epsilon-greedy on Bernoulli bandits) and
:mod:`metarl.rl.classic_mdp` (random, PSRL, greedy and UCRL2 on tabular MDPs). Each registers one
:data:`ClassicBaselines` function for its task type (:func:`register`); :func:`classic_baselines`
looks up the type of the tasks it is given, so the trial evaluation
(:mod:`metarl.rl.trials`) never names a task family. A family without registered baselines gets
none. This module also holds what the baseline modules share: task checks, child generators and
the batched engines' set-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from numpy.random import Generator

from envs.core import BatchedTaskEngine, Task

__all__ = [
    "ClassicBaselines",
    "Curves",
    "baselines_for",
    "check_tasks",
    "child_generators",
    "classic_baselines",
    "register",
    "set_engine_tasks",
    "share_generator",
]

Curves = dict[str, np.ndarray]
"""``{baseline name: [task, episode] returns}``."""

ClassicBaselines = Callable[[Sequence[Task], int, int, Generator], Curves]
"""``(tasks, episodes_per_trial, horizon, rng) -> {name: [len(tasks), episodes_per_trial]}``:
every baseline's return of each episode (a pull's reward for bandits) of one trial per task."""

_MODULES = ("metarl.rl.classic_bandit", "metarl.rl.classic_mdp")
"""The modules that register baselines, imported on the first look-up."""

_REGISTRY: dict[type, ClassicBaselines] = {}

_Engine = TypeVar("_Engine", bound=BatchedTaskEngine)


def register(task_type: type) -> Callable[[ClassicBaselines], ClassicBaselines]:
    """Decorator: registers the classic baselines of ``task_type`` (and its subclasses).

    Raises:
        ValueError: If ``task_type`` already has baselines.
    """

    def decorator(fn: ClassicBaselines) -> ClassicBaselines:
        if _REGISTRY.get(task_type, fn) is not fn:
            raise ValueError(f"{task_type.__name__} already has classic baselines")
        _REGISTRY[task_type] = fn
        return fn

    return decorator


def baselines_for(task_type: type) -> ClassicBaselines | None:
    """The baselines registered for ``task_type`` or its nearest base class; None if none."""
    for module in _MODULES:
        importlib.import_module(module)
    return next((_REGISTRY[c] for c in task_type.__mro__ if c in _REGISTRY), None)


def classic_baselines(
    tasks: Sequence[Task], episodes_per_trial: int, horizon: int, seed: int
) -> dict[str, np.ndarray]:
    """The classic baselines registered for the type of ``tasks`` (:func:`baselines_for`).

    Args:
        tasks: The held-out tasks, all of one type.
        episodes_per_trial: Episodes (bandits: pulls) per trial.
        horizon: Steps per episode.
        seed: Seeds the one generator every baseline's child generator is drawn from.

    Returns:
        ``{name: [len(tasks), episodes_per_trial]}`` float64 episode returns (a pull's reward
        for bandits); ``{}`` without tasks or without baselines for their type.
    """
    run = baselines_for(type(tasks[0])) if tasks else None
    if run is None:
        return {}
    curves = run(list(tasks), episodes_per_trial, horizon, np.random.default_rng(seed))
    return {name: np.asarray(values, dtype=np.float64) for name, values in curves.items()}


def check_tasks(tasks: Sequence[object], task_type: type, field: str) -> np.ndarray:
    """Checks ``tasks`` are ``task_type`` with one shape of ``field``; returns them stacked."""
    if len(tasks) == 0:
        raise ValueError(f"tasks is empty; expected at least one {task_type.__name__}")
    for i, task in enumerate(tasks):
        if not isinstance(task, task_type):
            raise ValueError(f"tasks[{i}] is a {type(task).__name__}, not a {task_type.__name__}")
    shapes = {np.shape(getattr(task, field)) for task in tasks}
    if len(shapes) != 1:
        raise ValueError(f"tasks have different {field} shapes {sorted(shapes)}; expected one")
    return np.asarray([getattr(task, field) for task in tasks], dtype=np.float64)


def child_generators(rng: Generator, names: Sequence[str]) -> dict[str, Generator]:
    """One child generator per baseline name, seeded from ``rng`` in order."""
    seeds = rng.integers(0, 2**62, size=len(names))
    return {name: np.random.default_rng(int(seed)) for name, seed in zip(names, seeds, strict=True)}


def set_engine_tasks(engine: _Engine, tasks: Sequence[Task]) -> _Engine:
    """Gives ``engine`` one task per sub-env; returns it."""
    engine.set_tasks(list(tasks))  # validated once, shared by every baseline's trial
    return engine


def share_generator(engine: BatchedTaskEngine, rng: Generator) -> np.ndarray:
    """Makes every sub-env draw from ``rng``, in order (one seed); returns all their indices."""
    engine.rngs = [rng] * engine.num_envs
    return np.arange(engine.num_envs)

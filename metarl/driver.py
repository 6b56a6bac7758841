"""The one driver loop every training family runs through.

A family (the supervised learners, MAML-RL, RL²) is an :class:`Experiment`: an object that holds
its parameters, optimiser and random state and runs one outer iteration. :func:`train` owns
everything around that iteration, the same way for every family:

- **steps**: the metrics of outer iteration ``i`` (0-based) are logged at step ``i``, every
  ``log_every`` iterations and at the last one; the final evaluation's summary is logged at step
  ``iterations`` (:func:`log_evaluation`);
- **checkpoints**: checkpoint ``k`` holds the state after ``k`` completed iterations and is written
  only after the metrics of iterations ``< k`` are on disk, every ``checkpoint_every`` iterations
  and at the end. A crash between two writes therefore never leaves a checkpoint ahead of its
  metrics, and resuming from checkpoint ``k`` drops exactly the rows with step ``>= k``
  (:func:`metarl.runs.open_run`), which the resumed run writes again;
- **resume**: the latest checkpoint of a resumed run is loaded into the experiment and the loop
  continues at its iteration; since an experiment's randomness is part of its state (or derives
  from the iteration index), the resumed run's rows and tensors equal an uninterrupted run's;
- **NaN stop**: a non-finite ``train/`` metric raises
  :class:`~metarl.runs.NonFiniteLossError` before any later checkpoint is written;
- **progress**: one tqdm bar with the logged metrics as its postfix;
- **ranks** (:mod:`metarl.distributed`): every rank runs this loop; ``update`` returns the
  metrics of the whole meta-batch (reduced across ranks), so every rank logs, stops on a NaN and
  checkpoints at the same iterations, while only rank 0 writes (:func:`metarl.runs.open_run`)
  and every rank resumes from the state rank 0 read.

Example:
    >>> import torch
    >>> class Counter:  # the smallest experiment: one parameter that counts iterations
    ...     device = torch.device("cpu")
    ...     def __init__(self):
    ...         self.x = torch.zeros(())
    ...     def update(self, iteration):
    ...         self.x += 1
    ...         return {"train/x": self.x.clone()}
    ...     def state_dict(self):
    ...         return {"x": self.x.clone()}
    ...     def load_state_dict(self, state):
    ...         self.x = state["x"].clone()
    >>> exp = Counter()
    >>> train(exp, 3)
    3
    >>> float(exp.x)
    3.0
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metarl.evaluation import Summary, log_curves
from metarl.logger import ScalarLike
from metarl.run_config import RunConfig
from metarl.runs import Run, check_finite, progress_bar

__all__ = ["Experiment", "iteration_seeds", "log_evaluation", "resume", "train"]

logger = logging.getLogger(__name__)


class Experiment(Protocol):
    """What the driver needs from a training family.

    Attributes:
        device: Where the experiment's tensors live (checkpoints are loaded onto it).
    """

    device: torch.device

    def update(self, iteration: int) -> Mapping[str, ScalarLike]:
        """Runs outer iteration ``iteration`` (0-based) and returns its metrics.

        Keys are namespaced (``train/...``, ``time/...``); values may be tensors, which the
        driver converts only on the iterations it logs. With several ranks the ``train/``
        values must be the whole meta-batch's, equal on every rank (reduced across ranks), so
        that a NaN stops every rank at the same iteration.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: parameters, optimiser, random state.

        Values must load with ``torch.load(weights_only=True)`` (tensors, numbers, strings and
        containers of them); ``"params"`` holds the parameters ``metarl eval`` evaluates.
        """
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""
        ...


def iteration_seeds(seed: int, iteration: int, count: int) -> list[int]:
    """Seeds of one outer iteration, derived from the run's seed and the iteration index alone.

    An experiment that draws its tasks, env seeds and noise from these needs no random state in
    its checkpoint: a resumed run (or another process) derives the same seeds.

    Args:
        seed: The run's seed.
        iteration: The outer iteration (0-based).
        count: How many seeds.

    Returns:
        ``count`` 32-bit seeds from ``numpy.random.SeedSequence([seed, iteration])``.
    """
    return [int(s) for s in np.random.SeedSequence([seed, iteration]).generate_state(count)]


def resume(exp: Experiment, run: Run | None) -> int:
    """Loads the latest checkpoint of a resumed run into ``exp``.

    Args:
        exp: The experiment, freshly built from the run's config.
        run: The run (None, or not opened with ``resume``: nothing to load).

    Returns:
        The number of completed iterations the loop continues from (0 without a checkpoint).
    """
    if run is None:
        return 0
    if run.resumed_from is None and run.init_from is not None:
        return _start_from(exp, run, run.init_from)
    if run.resumed_from is None:
        return 0
    state = run.load_latest_checkpoint(map_location=exp.device)
    if state is None:
        return 0
    exp.load_state_dict(state)
    logger.info("resumed from %s at iteration %d", run.resumed_from, state["iteration"])
    return int(state["iteration"])


def _start_from(exp: Experiment, run: Run, path: Path) -> int:
    """Loads ``run.init_from`` into ``exp`` under ``exp``'s own optimiser settings.

    The checkpoint's whole state is loaded, as a resume would, then every optimiser's
    param-group settings (learning rate, betas, ...) and every scheduler's base learning rates
    are put back to what ``exp`` was built with, so its config applies from here on; a
    ``LambdaLR``'s current rate is its base rate times its factor at the checkpoint's iteration.
    A part of the state the checkpoint lacks (RL²'s reward-scale statistics, where this stage
    switches ``algo.normalize_rewards`` on) keeps ``exp``'s fresh one.
    """
    state = run.load_initial_checkpoint(map_location=exp.device)
    assert state is not None
    fresh = exp.state_dict()
    own = fresh["params"]
    theirs = state["params"]
    wrong = sorted(set(own) ^ set(theirs)) or [
        name for name in own if tuple(own[name].shape) != tuple(theirs[name].shape)
    ]
    if wrong:
        run.discard()  # a new run that never started: leave no directory behind
        raise ValueError(
            f"run.init_from: {path} does not fit this config's model: parameters "
            f"{', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''} differ in name or shape"
        )
    parts = list(vars(exp).values())
    optimizers = [p for p in parts if isinstance(p, torch.optim.Optimizer)]
    schedulers = [p for p in parts if isinstance(p, torch.optim.lr_scheduler.LRScheduler)]
    groups = [
        [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups] for o in optimizers
    ]
    base_lrs = [list(s.base_lrs) for s in schedulers]
    # what the earlier run did not have (a reward scale this stage switches on) starts afresh
    state = {**fresh, **state}
    if "optimizer" in state and not optimizers:
        # the rate would silently stay the checkpoint's: refuse rather than run another stage
        run.discard()
        raise ValueError(
            f"run.init_from: {type(exp).__name__} keeps its optimiser out of sight (not an "
            "attribute of the experiment), so this config's learning rate could not apply"
        )
    exp.load_state_dict(state)
    for opt, saved in zip(optimizers, groups, strict=True):
        for group, settings in zip(opt.param_groups, saved, strict=True):
            group.update(settings)
    for sched, bases in zip(schedulers, base_lrs, strict=True):
        sched.base_lrs = bases
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            for group, base, factor in zip(
                sched.optimizer.param_groups, bases, sched.lr_lambdas, strict=True
            ):
                group["lr"] = base * factor(sched.last_epoch)
    logger.info("started from %s at iteration %d", path, state["iteration"])
    return int(state["iteration"])


def _save(exp: Experiment, run: Run, iteration: int) -> None:
    if run.read_only:  # another rank than 0: rank 0 writes the checkpoint
        return
    run.logger.flush()  # the metrics of every iteration before the checkpoint reach disk first
    run.save_checkpoint(iteration, exp.state_dict())


def train(
    exp: Experiment,
    iterations: int,
    *,
    run: Run | None = None,
    settings: RunConfig | None = None,
    desc: str | None = None,
) -> int:
    """Runs ``exp`` for ``iterations`` outer iterations, resuming ``run`` if it was reopened.

    Args:
        exp: The experiment.
        iterations: Total outer iterations of the run (a resumed run continues up to it).
        run: The run directory for metrics and checkpoints (None: neither, e.g. a pretraining
            baseline inside an evaluation).
        settings: ``log_every``, ``checkpoint_every`` and ``progress`` (default: ``RunConfig()``).
        desc: Label of the progress bar.

    Returns:
        ``iterations``.

    Raises:
        NonFiniteLossError: If a ``train/`` metric is NaN or infinite; the latest checkpoint on
            disk predates that iteration.
    """
    settings = RunConfig() if settings is None else settings
    start = resume(exp, run)
    show = None if settings.progress and run is not None and not run.read_only else False
    bar = progress_bar(range(start, iterations), total=iterations - start, desc=desc, enabled=show)
    saved = start if run is not None and run.resumed_from is not None else None
    tic, since = time.perf_counter(), start
    for it in bar:
        metrics = dict(exp.update(it))
        check_finite(it, **{k: v for k, v in metrics.items() if k.startswith("train/")})
        done = it + 1
        if run is not None and (done % settings.log_every == 0 or done == iterations):
            metrics["time/seconds_per_iteration"] = (time.perf_counter() - tic) / (done - since)
            bar.set_postfix(run.logger.log(it, metrics), refresh=False)
            tic, since = time.perf_counter(), done
        if run is not None and settings.checkpoint_every and done % settings.checkpoint_every == 0:
            _save(exp, run, done)
            saved = done
    if run is not None and saved != iterations:
        _save(exp, run, iterations)
    return iterations


def log_evaluation(run: Run, path: str | os.PathLike[str], step: int) -> None:
    """Logs an eval JSON's curves (main and baselines) as ``eval/<curve>/<metric>_step<k>``.

    Args:
        run: The run whose logger receives the scalars.
        path: An eval JSON written by :func:`metarl.evaluation.write_eval_results`.
        step: The training step to log them at (the run's number of iterations).
    """
    if run.read_only:  # rank 0 wrote the file and logs it
        return
    with open(path, encoding="utf-8") as f:
        result = json.load(f)

    def summary(entry: Mapping[str, Any]) -> Summary:  # JSON null is a non-finite value
        mean, ci95 = (
            [float("nan") if x is None else x for x in entry[k]] for k in ("mean", "ci95")
        )
        return Summary(np.asarray(mean), np.asarray(ci95))

    curves = {result["algorithm"]: summary(result)}
    curves.update({name: summary(entry) for name, entry in result.get("baselines", {}).items()})
    log_curves(run.logger, result["steps"], curves, result["metric"], step)
    run.logger.flush()

"""What the command line needs from an experiment kind: one Protocol every family satisfies.

A *kind* is a module: the supervised learners (``metarl.algorithms.supervised``), MAML-RL
(``metarl.algorithms.maml_rl_eval``) and RL² (``metarl.algorithms.rl2``);
``metarl.algorithms.registry`` maps each ``algo.name`` to one. ``metarl train`` calls its
``preflight`` and ``train_from_config``; ``metarl eval`` calls :func:`evaluate_checkpoint`, which
loads the checkpoint once (migrating an older layout, see `metarl.checkpoint.load_checkpoint`)
and hands the kind's ``evaluate_run`` one :class:`EvalRequest`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from metarl.checkpoint import load_checkpoint

__all__ = ["EvalRequest", "ExperimentKind", "evaluate_checkpoint"]


class EvalRequest(NamedTuple):
    """One evaluation of a trained run's checkpoint on held-out tasks.

    Attributes:
        state: The checkpoint, loaded onto ``device`` (``"params"``, ``"inner_lrs"``, ...).
        checkpoint: Its file (the run directory, two levels up, may hold cached baselines).
        device: Where to evaluate.
        out: The eval JSON to write (CSV and PNG go beside it).
        num_tasks: Held-out tasks.
        steps: Adaptation steps (RL²: episodes per trial); None: the config's ``eval`` default.
        seed: Seed of the held-out task sample and of the evaluation's randomness.
        split: ``"test"``, ``"val"`` or ``"train"`` tasks.
    """

    state: Mapping[str, Any]
    checkpoint: Path
    device: torch.device
    out: Path
    num_tasks: int
    steps: int | None
    seed: int
    split: str


@runtime_checkable
class ExperimentKind(Protocol):
    """A family's entry points, as module-level names."""

    @property
    def CONFIG_CLASS(self) -> type:  # read-only, so that a module's type[Config] satisfies it
        """The root config dataclass of the family."""
        ...

    def preflight(self, cfg: Any, device: torch.device) -> None:
        """Checks that need the machine (env ids, workers, memory), before anything is written.

        Raises:
            ValueError: Naming the offending field.
        """
        ...

    def train_from_config(self, cfg: Any, device: torch.device) -> Path:
        """Trains through `metarl.driver`, evaluates on held-out tasks; returns the eval JSON."""
        ...

    def evaluate_run(self, cfg: Any, request: EvalRequest) -> Path:
        """Evaluates ``request.state`` as ``request`` says; returns the eval JSON path."""
        ...


def evaluate_checkpoint(
    kind: ExperimentKind,
    cfg: Any,
    checkpoint: str | os.PathLike[str],
    device: torch.device,
    *,
    out: str | os.PathLike[str],
    num_tasks: int | None = None,
    steps: int | None = None,
    seed: int = 1,
    split: str = "test",
) -> Path:
    """Loads ``checkpoint`` and evaluates it with ``kind`` (what ``metarl eval`` runs).

    Args:
        kind: The experiment kind of ``cfg``.
        cfg: The run's config.
        checkpoint: The checkpoint file.
        device: Where to evaluate.
        out: The eval JSON to write.
        num_tasks: Held-out tasks (None: ``cfg.run.num_eval_tasks``).
        steps: See :attr:`EvalRequest.steps`.
        seed: See :attr:`EvalRequest.seed`.
        split: See :attr:`EvalRequest.split`.

    Returns:
        The eval JSON path.
    """
    state = load_checkpoint(checkpoint, map_location=device)
    tasks = num_tasks or cfg.run.num_eval_tasks
    request = EvalRequest(state, Path(checkpoint), device, Path(out), tasks, steps, seed, split)
    return kind.evaluate_run(cfg, request)

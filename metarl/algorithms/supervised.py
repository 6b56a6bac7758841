"""Supervised few-shot meta-learning: configs, the learner interface, the driver loop, evaluation.

Every supervised learner (MAML and its relatives, Reptile, Prototypical, Matching and Relation
Networks) is a small object with three pure-ish methods (:class:`SupervisedLearner`); this module
owns everything they share: building the task family and the network from the config, the outer
loop (sample a meta-batch -> outer loss -> optimiser step -> log/checkpoint), resuming, and the
few-shot evaluation on held-out tasks that writes the adaptation curve.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from envs.supervised import MiniImageNetFamily, OmniglotFamily, SinusoidFamily, TaskBatch
from metarl import driver
from metarl.algorithms.registry import ALGORITHMS
from metarl.algorithms.supervised_checks import preflight
from metarl.algorithms.supervised_config import (
    AlgoConfig,
    EvalConfig,
    InnerConfig,
    MAMLPPConfig,
    MatchingConfig,
    MetaSGDConfig,
    ModelConfig,
    OptimConfig,
    ProtoNetConfig,
    ReptileConfig,
    SupervisedConfig,
    TaskConfig,
)
from metarl.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from metarl.config import RunConfig as RunConfig  # re-exported with the sections
from metarl.evaluation import EvalFiles, write_eval_results
from metarl.functional import Params
from metarl.nn import MLP, Conv4
from metarl.runs import Run, open_run_from_config

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EvalConfig",
    "InnerConfig",
    "MAMLPPConfig",
    "MatchingConfig",
    "MetaSGDConfig",
    "ModelConfig",
    "OptimConfig",
    "OuterLoss",
    "ProtoNetConfig",
    "ReptileConfig",
    "SupervisedConfig",
    "SupervisedExperiment",
    "SupervisedLearner",
    "TaskConfig",
    "TaskFamily",
    "build_family",
    "build_model",
    "build_supervised_learner",
    "embed_tasks",
    "evaluate",
    "evaluate_run",
    "preflight",
    "train",
    "train_from_config",
]

logger = logging.getLogger(__name__)


class OuterLoss(NamedTuple):
    """The outer objective of one meta-batch.

    Attributes:
        loss: scalar to minimise (its gradient is the meta-gradient).
        metrics: detached scalars to log, keys without namespace (e.g. ``"query_accuracy"``).
    """

    loss: Tensor
    metrics: dict[str, Tensor]


class SupervisedLearner(Protocol):
    """What the driver needs from a learner."""

    def init_params(self) -> Params:
        """Returns the initial meta-parameters (leaf tensors that require grad)."""
        ...

    def outer_loss(self, params: Params, batch: TaskBatch, iteration: int) -> OuterLoss:
        """Returns the outer loss of a training meta-batch."""
        ...

    def adaptation_curve(self, params: Params, batch: TaskBatch, steps: int) -> Tensor:
        """Returns the metric on each task's query set after 0..steps inner steps.

        Returns:
            ``[task, steps + 1]`` (``[task, 1]`` for learners without an inner loop).
        """
        ...


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


class TaskFamily:
    """A task family plus the shapes to sample from it, for one split."""

    def __init__(self, cfg: TaskConfig, split: str, device: torch.device) -> None:
        self.cfg, self.split, self.device = cfg, split, device
        if cfg.family == "sinusoid":
            self.family: Any = SinusoidFamily(phase_range=cfg.phase_range)
        elif cfg.family == "miniimagenet":
            self.family = MiniImageNetFamily(
                split, device=device, root=cfg.data_root, split_dir=cfg.split_dir
            )
        else:
            protocol_split = {"train": "train", "val": "val", "test": "test"}[split]
            self.family = OmniglotFamily(
                protocol_split,
                cfg.protocol,
                device=device,
                root=cfg.data_root,
                num_characters=cfg.num_characters,
            )

    def sample(self, num_tasks: int, generator: torch.Generator, training: bool) -> TaskBatch:
        """Samples ``num_tasks`` tasks with the train or test shot counts."""
        cfg = self.cfg
        shots = cfg.shots if training else (cfg.test_shots or cfg.shots)
        query = cfg.query_shots if training else (cfg.test_query_shots or cfg.query_shots)
        if cfg.family == "sinusoid":
            return self.family.sample(num_tasks, shots, query, generator, self.device)
        ways = (cfg.train_ways or cfg.ways) if training else cfg.ways
        return self.family.sample(num_tasks, ways, shots, query, generator)


def build_family(cfg: TaskConfig, split: str, device: torch.device) -> TaskFamily:
    """Builds the task family of ``split`` ("train", "val" or "test") on ``device``."""
    return TaskFamily(cfg, split, device)


_IMAGE_SHAPES = {"omniglot": (1, 28), "miniimagenet": (3, 84)}
"""(channels, side) of each image family's inputs."""


def build_model(
    cfg: SupervisedConfig, generator: torch.Generator, device: torch.device, embedding: bool
) -> nn.Module:
    """Builds the network; ``embedding=True`` drops the classifier head (metric learners)."""
    task, model = cfg.task, cfg.model
    channels, side = _IMAGE_SHAPES.get(task.family, (1, 28))
    if model.network == "mlp":
        in_dim = 1 if task.family == "sinusoid" else channels * side * side
        out_dim = 1 if task.family == "sinusoid" else task.ways
        return MLP(
            in_dim,
            model.hidden,
            out_dim,
            activation=model.activation,
            init=model.init,
            generator=generator,
            device=device,
        )
    if task.family == "sinusoid":
        raise ValueError(f"model.network={model.network!r} needs an image task family")
    bn_steps = cfg.inner.steps if cfg.mamlpp and cfg.mamlpp.per_step_bn_weights else None
    variant = "strided" if model.network == "conv4_strided" else "maxpool"
    return Conv4(
        None if embedding else task.ways,
        in_channels=channels,
        image_size=side,
        filters=model.filters,
        variant=variant,
        bn_steps=bn_steps,
        generator=generator,
        device=device,
    )


def task_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean loss of one task: MSE for float targets, cross-entropy for int64 labels."""
    if target.dtype == torch.int64:
        return nn.functional.cross_entropy(pred, target)
    return nn.functional.mse_loss(pred, target)


def task_metric(pred: Tensor, target: Tensor) -> Tensor:
    """Metric of one task's predictions: accuracy for labels, MSE for regression targets."""
    if target.dtype == torch.int64:
        return (pred.argmax(-1) == target).float().mean()
    return nn.functional.mse_loss(pred, target)


def embed_tasks(model: nn.Module, params: Params, batch: TaskBatch) -> tuple[Tensor, Tensor]:
    """Embeds every support and query input of every task in one batched forward pass.

    The metric learners' shared first step. ``model`` runs through ``functional_call``, vmapped
    over the task axis: one batched computation, and batch norm takes its statistics per task
    (over that task's support and query inputs, like the one-episode batches of ProtoNets and
    Relation Networks), so a task's embeddings do not depend on the other tasks of the batch.

    Args:
        model: Maps ``[n, *input]`` to ``[n, *feature]`` (e.g. ``Conv4`` without a head).
        params: ``model``'s parameters.
        batch: ``support_x`` ``[task, support, *input]``, ``query_x`` ``[task, query, *input]``.

    Returns:
        Support embeddings ``[task, support, *feature]`` and query embeddings
        ``[task, query, *feature]``.
    """
    support = batch.support_x.shape[1]
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    z = vmap(lambda x_task: functional_call(model, params, (x_task,)))(x)
    return z[:, :support], z[:, support:]


def _build_optimizer(
    cfg: OptimConfig, params: Params
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    tensors = list(params.values())
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(tensors, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(tensors, lr=cfg.lr)
    total = max(cfg.iterations, 1)
    floor = cfg.min_lr / cfg.lr

    def factor(i: int) -> float:
        if cfg.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total))
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - i / total)
        if cfg.schedule == "step":
            return cfg.gamma ** (i // cfg.step_size)
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ----------------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    """What :func:`train` returns: the final meta-parameters and the number of iterations run."""

    params: Params
    iterations: int


class SupervisedExperiment:
    """A supervised learner as a :class:`metarl.driver.Experiment`.

    One outer iteration samples a meta-batch from the training family, computes the learner's
    outer loss, and takes one step of the outer optimiser (and its schedule). Its state is the
    meta-parameters, the optimiser and schedule, and the task-sampling generator.

    Args:
        cfg: The experiment config.
        learner: The learner (its ``init_params`` gives the initial meta-parameters).
        family: The training task family.
        device: Where the parameters and tasks live.
    """

    def __init__(
        self,
        cfg: SupervisedConfig,
        learner: SupervisedLearner,
        family: TaskFamily,
        device: torch.device,
    ) -> None:
        self.cfg, self.learner, self.family, self.device = cfg, learner, family, device
        self.params = learner.init_params()
        self.opt, self.sched = _build_optimizer(cfg.optim, self.params)
        self.gen = torch.Generator(device=device).manual_seed(cfg.run.seed)

    def update(self, iteration: int) -> dict[str, Any]:
        """One meta-batch, one outer step; returns ``train/`` metrics."""
        batch = self.family.sample(self.cfg.task.meta_batch_size, self.gen, training=True)
        out = self.learner.outer_loss(self.params, batch, iteration)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_value_(self.params.values(), self.cfg.optim.grad_clip)
        self.opt.step()
        self.sched.step()
        metrics = {"train/loss": out.loss.detach(), "train/lr": lr}
        return {**metrics, **{f"train/{k}": v for k, v in out.metrics.items()}}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, optimiser, schedule and random state."""
        return {
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": capture_rng_state(None, self.gen),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (parameters in place, so optimiser references hold)."""
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(state["params"][name])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        restored = restore_rng_state(state["rng"]).torch
        if restored is not None:
            self.gen.set_state(restored.get_state())


def train(
    cfg: SupervisedConfig,
    learner: SupervisedLearner,
    family: TaskFamily,
    run: Run | None,
    device: torch.device,
) -> TrainResult:
    """Meta-trains ``learner`` on ``family`` with the driver loop; resumes ``run`` if reopened.

    See :class:`SupervisedExperiment` for one iteration and :func:`metarl.driver.train` for
    logging, checkpoints, resume and the NaN stop.
    """
    exp = SupervisedExperiment(cfg, learner, family, device)
    iterations = driver.train(
        exp, cfg.optim.iterations, run=run, settings=cfg.run, desc=cfg.algo.name
    )
    return TrainResult({k: v.detach() for k, v in exp.params.items()}, iterations)


def adaptation_curves(
    learner: SupervisedLearner,
    params: Params,
    family: TaskFamily,
    *,
    num_tasks: int,
    steps: int,
    seed: int,
    chunk: int = 25,
) -> np.ndarray:
    """The metric after 0..steps inner steps on ``num_tasks`` held-out tasks.

    Returns:
        ``[num_tasks, steps + 1]`` (``[num_tasks, 1]`` for learners without an inner loop).
    """
    gen = torch.Generator(device=family.device).manual_seed(seed)
    rows = []
    for start in range(0, num_tasks, chunk):
        batch = family.sample(min(chunk, num_tasks - start), gen, training=False)
        curve = learner.adaptation_curve(params, batch, steps)
        rows.append(curve.detach().cpu().numpy())
    return np.concatenate(rows, axis=0)


def evaluate(
    cfg: SupervisedConfig,
    learner: SupervisedLearner,
    params: Params,
    family: TaskFamily,
    out_path: str,
    *,
    num_tasks: int,
    steps: int,
    seed: int,
    run: Run | None = None,
) -> EvalFiles:
    """Evaluates few-shot adaptation on held-out tasks and writes the JSON, CSV and PNG."""
    curves = adaptation_curves(learner, params, family, num_tasks=num_tasks, steps=steps, seed=seed)
    return write_eval_results(
        out_path,
        algorithm=cfg.algo.name,
        task_family=cfg.task.name,
        metric=cfg.task.metric,
        steps=list(range(curves.shape[1])),
        curves={cfg.algo.name: curves},
        seed=seed,
        extra={"split": family.split, "shots": cfg.task.test_shots or cfg.task.shots},
        logger=run.logger if run is not None else None,
    )


# ----------------------------------------------------------------------------------------------
# the experiment-kind interface used by the command line (metarl.algorithms.registry)
# ----------------------------------------------------------------------------------------------

CONFIG_CLASS = SupervisedConfig


def build_supervised_learner(
    cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
) -> SupervisedLearner:
    """Builds the learner registered for ``cfg.algo.name``, its weights drawn from ``generator``."""
    module, _, cls = str(ALGORITHMS[cfg.algo.name].learner).partition(":")
    return getattr(importlib.import_module(module), cls)(cfg, device, generator)


def _eval_steps(cfg: SupervisedConfig, steps: int | None) -> int:
    if not ALGORITHMS[cfg.algo.name].adapts:
        return 0
    return cfg.eval.steps if steps is None else steps


def _build_learner(cfg: SupervisedConfig, device: torch.device) -> SupervisedLearner:
    return build_supervised_learner(
        cfg, device, torch.Generator(device=device).manual_seed(cfg.run.seed)
    )


def train_from_config(cfg: SupervisedConfig, device: torch.device) -> Path:
    """Meta-trains as ``cfg`` says, evaluates on the test split, returns the eval JSON path."""
    learner = _build_learner(cfg, device)
    family = build_family(cfg.task, "train", device)
    with open_run_from_config(cfg, cfg.run) as run:
        result = train(cfg, learner, family, run, device)
        files = evaluate(
            cfg,
            learner,
            result.params,
            build_family(cfg.task, "test", device),
            str(run.eval_dir / "eval.json"),
            num_tasks=cfg.run.num_eval_tasks,
            steps=_eval_steps(cfg, None),
            seed=cfg.run.seed + 1,
        )
        driver.log_evaluation(run, files.json, result.iterations)
    return files.json


def evaluate_run(
    cfg: SupervisedConfig,
    checkpoint: Path,
    device: torch.device,
    *,
    out: Path,
    num_tasks: int | None,
    steps: int | None,
    seed: int,
    split: str = "test",
) -> Path:
    """Evaluates a run's checkpoint on held-out tasks; returns the eval JSON path."""
    state = load_checkpoint(checkpoint, map_location=device)
    learner = _build_learner(cfg, device)
    params = {k: v.to(device) for k, v in state["params"].items()}
    files = evaluate(
        cfg,
        learner,
        params,
        build_family(cfg.task, split, device),
        str(out),
        num_tasks=num_tasks or cfg.run.num_eval_tasks,
        steps=_eval_steps(cfg, steps),
        seed=seed,
    )
    return files.json

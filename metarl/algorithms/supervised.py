"""Supervised few-shot meta-learning: configs, the learner interface, the driver loop, evaluation.

Every supervised learner (MAML and its relatives, Reptile, Prototypical, Matching and Relation
Networks) is a small object with three pure-ish methods (:class:`SupervisedLearner`); this module
owns everything they share: building the task family and the network from the config, the outer
loop (sample a meta-batch -> outer loss -> optimiser step -> log/checkpoint), resuming, and the
few-shot evaluation on held-out tasks that writes the adaptation curve.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from envs.supervised import OmniglotFamily, SinusoidFamily, TaskBatch
from metarl import driver
from metarl.algorithms.registry import ALGORITHMS
from metarl.algorithms.supervised_checks import (
    check_algo,
    check_model,
    check_optim,
    check_task,
    preflight,
)
from metarl.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from metarl.config import RunConfig
from metarl.evaluation import EvalFiles, write_eval_results
from metarl.functional import Params
from metarl.nn import MLP, Conv4
from metarl.runs import Run, check_finite, open_run_from_config

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "ModelConfig",
    "OptimConfig",
    "OuterLoss",
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


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The few-shot problem: which task family, and how many classes, shots and tasks."""

    family: Literal["sinusoid", "omniglot"] = "sinusoid"
    """Task family: sinusoid regression (MAML §5.1) or Omniglot N-way K-shot classification."""
    ways: int = 5
    """Classes per task N (classification; ignored for sinusoid)."""
    shots: int = 10
    """Support examples per class K (sinusoid: support points per task) during training."""
    query_shots: int = 10
    """Query examples per class (sinusoid: query points per task) during training."""
    train_ways: int | None = None
    """Classes per training task if different from ways (ProtoNets trains 60-way)."""
    test_shots: int | None = None
    """Support examples per class at evaluation (default: shots; MAML sinusoid tests K=5)."""
    test_query_shots: int | None = None
    """Query examples per class at evaluation (default: query_shots)."""
    meta_batch_size: int = 25
    """Tasks per outer update."""
    protocol: Literal["maml", "protonets"] = "maml"
    """Omniglot split protocol: 1100/100/423 characters with random rotations, or ProtoNets'
    1028/172/423 characters with each rotation a separate class."""
    data_root: str | None = None
    """Directory with images_background.zip and images_evaluation.zip (None: the default)."""
    num_characters: int | None = None
    """Use only this many characters per split (tiny runs and tests); None uses them all."""
    phase_range: tuple[float, float] = (0.0, math.pi)
    """Sinusoid phase range in radians (MAML: [0, π]; Reptile: [0, 2π])."""

    def __post_init__(self) -> None:
        check_task(self)

    @property
    def metric(self) -> str:
        """The evaluation metric of the family: "mse" or "accuracy"."""
        return "mse" if self.family == "sinusoid" else "accuracy"

    @property
    def name(self) -> str:
        """A short label such as "omniglot-5w1s" or "sinusoid-5shot" (the test setting)."""
        shots = self.test_shots or self.shots
        if self.family == "sinusoid":
            return f"sinusoid-{shots}shot"
        return f"omniglot-{self.ways}w{shots}s"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: an MLP (sinusoid) or the conv4 few-shot backbone (images)."""

    network: Literal["mlp", "conv4_strided", "conv4_maxpool"] = "mlp"
    """mlp; conv4_strided: MAML's 64-filter stride-2 conv4; conv4_maxpool: conv4 with max-pool."""
    hidden: tuple[int, ...] = (40, 40)
    """Hidden layer widths of the MLP (MAML sinusoid: 40, 40)."""
    activation: Literal["relu", "tanh"] = "relu"
    """Hidden activation of the MLP."""
    init: Literal["torch", "maml"] = "torch"
    """MLP init: torch (PyTorch's default U(±1/sqrt(fan_in))) or maml (cbfinn/maml's
    construct_fc_weights: truncated normal with std 0.01, zero biases)."""
    filters: int = 64
    """Filters per conv layer of conv4."""

    def __post_init__(self) -> None:
        check_model(self)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """The learner and its inner loop. Fields a learner does not use are ignored by it."""

    name: str = "maml"
    """maml, fomaml (first order), metasgd (learned per-parameter lr), anil (head-only inner
    loop), mamlpp (MAML++), reptile, protonet, matching or relation."""
    inner_lr: float = 0.01
    """Inner-loop step size α (MAML sinusoid 0.01, Omniglot 5-way 0.4, 20-way 0.1)."""
    inner_steps: int = 1
    """Inner steps during meta-training."""
    eval_inner_steps: int = 10
    """Inner steps at evaluation; the curve reports steps 0..eval_inner_steps."""
    first_order: bool = False
    """Drop second derivatives (FOMAML); always true for fomaml."""
    multi_step_loss: bool = False
    """MAML++ multi-step loss: weight the query loss after every inner step."""
    multi_step_loss_iterations: int = 0
    """Iterations over which the multi-step-loss weights anneal to the last step only."""
    per_step_lr: bool = False
    """MAML++ LSLR: learned per-layer, per-step inner learning rates."""
    per_step_bn_weights: bool = False
    """MAML++ BNWB: batch-norm weights and biases per inner step (conv4 only)."""
    meta_sgd_lr_range: tuple[float, float] = (0.005, 0.1)
    """Meta-SGD: per-parameter learning rates initialised from U[low, high]."""
    inner_batch_size: int = 10
    """Reptile: support examples per inner minibatch."""
    inner_adam_beta2: float = 0.999
    """Reptile: β2 of the inner Adam (β1 = 0, as in supervised-reptile)."""
    eval_inner_batch_size: int | None = None
    """Reptile: support examples per inner minibatch at evaluation (supervised-reptile's
    --eval-batch); None uses inner_batch_size."""
    full_context_embeddings: bool = False
    """Matching Networks: full-context embeddings (bidirectional LSTM + attention LSTM)."""
    fce_steps: int = 5
    """Matching Networks: processing steps of the attention LSTM over the support set."""
    distance: Literal["euclidean", "cosine"] = "euclidean"
    """ProtoNets distance (squared Euclidean in the paper)."""

    def __post_init__(self) -> None:
        check_algo(self)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The outer optimiser and its schedule."""

    optimizer: Literal["adam", "sgd"] = "adam"
    """Outer optimiser (Reptile uses sgd: its update is a step towards the adapted weights)."""
    outer_lr: float = 1e-3
    """Outer (meta) learning rate (Adam 1e-3 in MAML; Reptile's outer step size 1.0)."""
    iterations: int = 1000
    """Outer iterations (meta-batches)."""
    schedule: Literal["constant", "cosine", "linear", "step"] = "constant"
    """constant; cosine to min_lr (MAML++); linear to 0 (Reptile); step: ×gamma every step_size."""
    min_lr: float = 1e-5
    """Final learning rate of the cosine schedule."""
    step_size: int = 2000
    """Iterations between decays of the step schedule (ProtoNets: halve every 20 epochs)."""
    gamma: float = 0.5
    """Decay factor of the step schedule."""
    grad_clip: float | None = None
    """Clip each meta-gradient element to ±grad_clip (MAML MiniImageNet: 10); None: no clip."""

    def __post_init__(self) -> None:
        check_optim(self)


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    """A supervised few-shot experiment: one YAML file in configs/ maps onto it."""

    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    """The few-shot problem."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The network."""
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    """The learner."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The outer optimiser."""
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Seed, device, run directory, logging and checkpoints."""


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


def build_model(
    cfg: SupervisedConfig, generator: torch.Generator, device: torch.device, embedding: bool
) -> nn.Module:
    """Builds the network; ``embedding=True`` drops the classifier head (metric learners)."""
    task, model = cfg.task, cfg.model
    if model.network == "mlp":
        in_dim = 1 if task.family == "sinusoid" else 28 * 28
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
    bn_steps = cfg.algo.inner_steps if cfg.algo.per_step_bn_weights else None
    variant = "strided" if model.network == "conv4_strided" else "maxpool"
    return Conv4(
        None if embedding else task.ways,
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
        opt: torch.optim.Optimizer = torch.optim.Adam(tensors, lr=cfg.outer_lr)
    else:
        opt = torch.optim.SGD(tensors, lr=cfg.outer_lr)
    total = max(cfg.iterations, 1)
    floor = cfg.min_lr / cfg.outer_lr

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
        check_finite(iteration, **{"train/loss": out.loss})  # before the step corrupts θ
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
    return cfg.algo.eval_inner_steps if steps is None else steps


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

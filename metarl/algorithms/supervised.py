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
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from envs.supervised import MiniImageNetFamily, OmniglotFamily, SinusoidFamily, TaskBatch
from metarl import distributed, driver
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
from metarl.checkpoint import capture_rng_state, restore_rng_state
from metarl.config import RunConfig as RunConfig  # re-exported with the sections
from metarl.config_renames import keep_lrs_in_params
from metarl.config_sections import section
from metarl.evaluation import EvalFiles, write_eval_results
from metarl.functional import Params
from metarl.kinds import EvalRequest
from metarl.nn import MLP, Conv4, Pixels
from metarl.runs import Run, open_run_from_config

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EvalConfig",
    "IMAGE_SHAPES",
    "FixedStepSizes",
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

    ``loss`` and every metric are means over the batch's tasks, so that with several ranks the
    meta-batch's values are the task-weighted sums of the ranks' values.

    Attributes:
        loss: scalar to minimise (its gradient is the meta-gradient).
        metrics: detached scalars to log, keys without namespace (e.g. ``"query_accuracy"``).
        half_squared_grad: ``loss`` is ``0.5 * ||gradient||^2`` rather than a mean over tasks
            (Reptile's pseudo-loss): with several ranks it is logged from the summed gradient.
    """

    loss: Tensor
    metrics: dict[str, Tensor]
    half_squared_grad: bool = False


class FixedStepSizes:
    """Base of the learners without learned inner step sizes: :meth:`init_lrs` is ``{}``."""

    def init_lrs(self) -> Params:
        """No learned inner step sizes: ``{}`` (an empty parameter group is skipped)."""
        return {}


class SupervisedLearner(Protocol):
    """What the driver needs from a learner."""

    def init_params(self) -> Params:
        """Returns the initial meta-parameters (leaf tensors that require grad)."""
        ...

    def init_lrs(self) -> Params:
        """Returns the initial learned inner step sizes (Meta-SGD, MAML++ LSLR), else ``{}``.

        They are meta-parameters of their own group, beside :meth:`init_params`'s, and reach
        the inner loop only through the ``lrs`` argument of the methods below.
        """
        ...

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Returns the outer loss of a training meta-batch."""
        ...

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Returns the metric on each task's query set after 0..steps inner steps.

        Returns:
            ``[task, steps + 1]`` (``[task, 1]`` for learners without an inner loop).
        """
        ...


# -- building blocks ---------------------------------------------------------------------------


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


IMAGE_SHAPES = {"omniglot": (1, 28), "miniimagenet": (3, 84)}  # (channels, side) of the inputs


def build_model(
    cfg: SupervisedConfig,
    generator: torch.Generator,
    device: torch.device,
    embedding: bool,
    extra_inputs: int = 0,
) -> nn.Module:
    """Builds the network; ``embedding=True`` drops the classifier head (metric learners).

    ``extra_inputs`` widens the input by that many features (MLP) or channels (Conv4): CAVIA's
    context parameters, concatenated to every input.
    """
    task, model = cfg.task, cfg.model
    channels, side = IMAGE_SHAPES.get(task.family, (1, 28))
    if model.network == "mlp":
        in_dim = 1 if task.family == "sinusoid" else channels * side * side
        out_dim = 1 if task.family == "sinusoid" else task.ways
        return MLP(
            in_dim + extra_inputs,
            model.hidden,
            out_dim,
            activation=model.activation,
            init=model.init,
            generator=generator,
            device=device,
        )
    if task.family == "sinusoid":
        raise ValueError(f"model.network={model.network!r} needs an image task family")
    if model.network == "flat":  # no head: preflight admits it for the black-box learners only
        return Pixels(channels, side)
    bn_steps = (
        section(cfg.inner, "inner").steps if cfg.mamlpp and cfg.mamlpp.per_step_bn_weights else None
    )
    variant: Literal["strided", "maxpool"] = "strided" if "strided" in model.network else "maxpool"
    return Conv4(
        None if embedding else task.ways,
        in_channels=channels + extra_inputs,
        image_size=side,
        filters=model.filters,
        variant=variant,
        bn_steps=bn_steps,
        generator=generator,
        device=device,
    )


def task_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean loss of one task: MSE for float targets, cross-entropy for int64 labels.

    The MSE is ``(pred - target).square().mean()``, what ``nn.functional.mse_loss`` computes
    (the same floats, forward and backward): under ``vmap`` of ``grad`` (the inner loop), the
    backward of ``mse_loss`` runs through a decomposition written in Python, the primitives'
    backward does not.
    """
    if target.dtype == torch.int64:
        return nn.functional.cross_entropy(pred, target)
    return (pred - target).square().mean()


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
    cfg: OptimConfig, params: Params, lrs: Params
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    # the learned step sizes are their own parameter group (same settings as the weights)
    groups = [{"params": list(group.values())} for group in (params, lrs) if group]
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr)
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


# -- the driver --------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
        params: The final meta-parameters.
        iterations: The number of outer iterations run.
        lrs: The final learned inner step sizes (``{}`` for learners without).
    """

    params: Params
    iterations: int
    lrs: Params


class SupervisedExperiment:
    """A supervised learner as a :class:`metarl.driver.Experiment`.

    One outer iteration samples a meta-batch from the training family, computes the learner's
    outer loss, and takes one step of the outer optimiser (and its schedule). Its state is the
    meta-parameters, the learned inner step sizes (their own optimiser group), the optimiser and
    schedule, and the task-sampling generator.

    With several ranks (:mod:`metarl.distributed`) every rank samples the same meta-batch from
    the same generator and computes the outer loss of its slice of the tasks
    (:func:`~metarl.distributed.shard`), scaled by its share of the tasks; one all-reduce sums
    the gradients and the metrics, and every rank takes the same step (gradient clipping after
    the sum). The tasks of a batch are independent (batch norm takes each task's statistics), so
    the step is the one-rank step up to the order of float32 sums, and the state has no
    rank-specific randomness: any number of ranks resumes it.

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
        world, total = distributed.world(), cfg.task.meta_batch_size
        if world.size > total:
            raise ValueError(
                f"task.meta_batch_size={total} is smaller than the {world.size} ranks: every "
                "rank needs a task of the meta-batch; use fewer ranks"
            )
        self.tasks = distributed.shard(total)
        self.cfg, self.learner, self.family, self.device = cfg, learner, family, device
        self.params = learner.init_params()
        self.lrs = learner.init_lrs()
        self.opt, self.sched = _build_optimizer(cfg.optim, self.params, self.lrs)
        self.gen = torch.Generator(device=device).manual_seed(cfg.run.seed)

    def update(self, iteration: int) -> dict[str, Any]:
        """One meta-batch, one outer step; returns ``train/`` metrics (of the whole batch)."""
        total = self.cfg.task.meta_batch_size
        batch = self.family.sample(total, self.gen, training=True)
        ranks = distributed.world().distributed
        if ranks:
            batch = batch.slice_tasks(self.tasks)
        out = self.learner.outer_loss(self.params, batch, iteration, lrs=self.lrs)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.zero_grad(set_to_none=True)
        (out.loss * (len(self.tasks) / total) if ranks else out.loss).backward()
        metrics: dict[str, Any] = {"loss": out.loss.detach(), **out.metrics}
        if ranks:
            metrics = self._reduce(metrics, out.half_squared_grad)
        if self.cfg.optim.grad_clip is not None:
            tensors = [*self.params.values(), *self.lrs.values()]
            torch.nn.utils.clip_grad_value_(tensors, self.cfg.optim.grad_clip)
        # a learner may adapt its step sizes from this meta-gradient first (AlphaMAML)
        hook = getattr(self.learner, "before_outer_step", None)
        extra = hook(self.params, self.opt, self.sched) if hook is not None else {}
        self.opt.step()
        self.sched.step()
        loss = metrics.pop("loss")
        metrics.update(extra)
        return {"train/loss": loss, "train/lr": lr, **{f"train/{k}": v for k, v in metrics.items()}}

    def _reduce(self, metrics: dict[str, Any], half_squared_grad: bool) -> dict[str, Any]:
        """Sums the gradient shares and task-weighted metrics over the ranks (one collective)."""
        # which parameters get a gradient depends on the learner, not on the tasks: the same
        # list on every rank (the optimiser skips the others, as with one rank)
        grads = [p.grad for p in (*self.params.values(), *self.lrs.values()) if p.grad is not None]
        total = self.cfg.task.meta_batch_size
        metrics = distributed.mean_over_tasks(metrics, len(self.tasks), total, sums=grads)
        if half_squared_grad:  # not a mean over tasks: from the meta-batch's gradient
            metrics["loss"] = 0.5 * torch.stack([g.square().sum() for g in grads]).sum()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Parameters, learned inner step sizes, optimiser, schedule and random state."""
        return {
            "params": {k: v.detach() for k, v in self.params.items()},
            "inner_lrs": {k: v.detach() for k, v in self.lrs.items()},
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": capture_rng_state(None, self.gen),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (parameters in place, so optimiser references hold)."""
        state = keep_lrs_in_params(state, list(self.params), list(self.lrs))
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(state["params"][name])
            for name, tensor in self.lrs.items():
                tensor.copy_(state["inner_lrs"][name])
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
    return TrainResult(
        {k: v.detach() for k, v in exp.params.items()},
        iterations,
        {k: v.detach() for k, v in exp.lrs.items()},
    )


def adaptation_curves(
    learner: SupervisedLearner,
    params: Params,
    family: TaskFamily,
    *,
    num_tasks: int,
    steps: int,
    seed: int,
    chunk: int = 25,
    lrs: Params | None = None,
) -> np.ndarray:
    """The metric after 0..steps inner steps on ``num_tasks`` held-out tasks.

    Tasks are sampled ``chunk`` at a time. With several ranks every rank samples every chunk
    and adapts its slice of it (:func:`~metarl.distributed.shard`); the slices are gathered back
    in task order, so the curves equal the one-rank curves whatever the number of ranks.
    ``lrs`` are the learned inner step sizes of learners that have them.

    Returns:
        ``[num_tasks, steps + 1]`` (``[num_tasks, 1]`` for learners without an inner loop), on
        every rank.
    """
    gen = torch.Generator(device=family.device).manual_seed(seed)
    ranks = distributed.world().distributed
    rows = []
    for start in range(0, num_tasks, chunk):
        batch = family.sample(min(chunk, num_tasks - start), gen, training=False)
        if ranks:
            mine = distributed.shard(batch.num_tasks)
            # a rank without a task of this chunk still adapts one and drops it: a learner's
            # per-call state (Reptile's minibatch order) stays in step with the other ranks
            part = batch.slice_tasks(mine if len(mine) else range(1))
            curve = learner.adaptation_curve(params, part, steps, lrs=lrs)[: len(mine)]
        else:
            curve = learner.adaptation_curve(params, batch, steps, lrs=lrs)
        rows.append(curve.detach().cpu().numpy())
    if not ranks:
        return np.concatenate(rows, axis=0)
    parts = distributed.gather_objects(rows)  # [rank][chunk]: chunk by chunk, rank by rank
    joined = None
    if parts is not None:
        joined = np.concatenate([part[c] for c in range(len(rows)) for part in parts])
    return distributed.broadcast_object(joined)


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
    lrs: Params | None = None,
) -> EvalFiles:
    """Evaluates few-shot adaptation on held-out tasks and writes the JSON, CSV and PNG.

    With several ranks the tasks are split over them and rank 0 alone writes the files.
    ``lrs`` are the learned inner step sizes of learners that have them.
    """
    curves = adaptation_curves(
        learner, params, family, num_tasks=num_tasks, steps=steps, seed=seed, lrs=lrs
    )
    if not distributed.world().is_main:
        out = Path(out_path)
        return EvalFiles(out, out.with_suffix(".csv"), out.with_suffix(".png"))
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


# -- the experiment-kind interface used by the command line (metarl.algorithms.registry) -------

CONFIG_CLASS = SupervisedConfig


def build_supervised_learner(
    cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
) -> SupervisedLearner:
    """Builds the learner for ``cfg.algo.name``, weights drawn from ``generator`` on ``device``."""
    if (on := generator.device.type) != (kind := torch.device(device).type):
        raise ValueError(f"the generator is on {on} but the learner is built on {kind}")
    module, _, cls = str(ALGORITHMS[cfg.algo.name].learner).partition(":")
    return getattr(importlib.import_module(module), cls)(cfg, device, generator)


def _eval_steps(cfg: SupervisedConfig, steps: int | None) -> int:
    if not ALGORITHMS[cfg.algo.name].adapts:
        return 0
    return section(cfg.eval, "eval").steps if steps is None else steps


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
            lrs=result.lrs,
        )
        driver.log_evaluation(run, files.json, result.iterations)
    return files.json


def evaluate_run(cfg: SupervisedConfig, request: EvalRequest) -> Path:
    """Few-shot adaptation of a run's checkpoint on held-out tasks (:class:`EvalRequest`)."""
    device = request.device
    learner = _build_learner(cfg, device)
    # an older layout (a step size of θ saved as inner_lr.*) back where the learner keeps it
    state = keep_lrs_in_params(request.state, list(learner.init_params()), list(learner.init_lrs()))
    return evaluate(
        cfg,
        learner,
        {k: v.to(device) for k, v in state["params"].items()},
        build_family(cfg.task, request.split, device),
        str(request.out),
        num_tasks=request.num_tasks,
        steps=_eval_steps(cfg, request.steps),
        seed=request.seed,
        lrs={k: v.to(device) for k, v in state.get("inner_lrs", {}).items()},
    ).json

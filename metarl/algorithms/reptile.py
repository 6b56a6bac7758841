"""Reptile for supervised few-shot learning (Nichol, Achiam and Schulman 2018, Alg. 2).

Per meta-iteration, for each task ``i`` of the meta-batch::

    phi_i = theta, then k steps of Adam (beta1 = 0) on minibatches of the task's support set
    theta <- theta + epsilon * (mean_i phi_i - theta)

with ``epsilon`` annealed linearly to 0 (openai/supervised-reptile ``--meta-step 1
--meta-step-final 0``).

How it fits the shared driver (`metarl.algorithms.supervised`): :meth:`ReptileLearner.outer_loss`
returns the pseudo-loss ``0.5 * sum_k ||theta_k - stopgrad(mean_i phi_i,k)||^2`` whose gradient
with respect to ``theta`` is exactly ``theta - mean_i phi_i``. With ``optim.optimizer: sgd``,
``optim.outer_lr: epsilon`` and ``optim.schedule: linear`` one SGD step is exactly Reptile's
update. The logged ``train/loss`` is therefore half the squared length of the Reptile step, not a
task loss; the task losses are logged as ``train/inner_loss_first`` and ``train/inner_loss_last``.

The inner loop runs every task of the meta-batch at once: :func:`inner_loop` is the shared
:func:`metarl.functional.adapt` (one ``torch.func.vmap`` over the task axis, a Python loop over the
k steps) with its pure Adam update :func:`metarl.functional.adam`.

Choices that differ from openai/supervised-reptile, on purpose:

- Minibatches are drawn without replacement by cycling through shuffled copies of the support set
  (supervised-reptile's ``_mini_batches(replacement=False)``), but the *same* indices are used by
  every task of a meta-batch (tasks hold the same number of support examples, and the images
  differ, so the tasks stay independent). The indices come from a ``torch.Generator`` owned by the
  learner and re-seeded from ``(seed, iteration)``, so a resumed run draws what an uninterrupted
  one would.
- Every task starts Adam from a fresh state (zero moments, step 0). supervised-reptile keeps its
  Adam slot variables across tasks and meta-iterations, because they are not trainable variables
  and so are not reset with the weights; that sequential state cannot be shared by tasks adapted
  in parallel, and a fresh state makes adaptation a pure function of ``theta`` and the task.
- Adam's update is PyTorch's (``eps`` added to ``sqrt(v_hat)``), as TensorFlow's differs only in
  where ``eps`` enters.
- Batch norm always uses the current batch's statistics; the query set is evaluated as one batch,
  which is supervised-reptile's ``--transductive`` evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from envs.supervised import TaskBatch
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    task_loss,
    task_metric,
)
from metarl.config_sections import section
from metarl.functional import AdaptResult, Params, adam, adapt

__all__ = [
    "ReptileLearner",
    "inner_loop",
    "minibatch_indices",
    "reptile_pseudo_loss",
]

ExampleLoss = Callable[[Params, Tensor, Tensor], Tensor]
"""``fn(params, x, y) -> Tensor[]``: a loss or metric of one task's examples."""


# ----------------------------------------------------------------------------------------------
# the inner loop
# ----------------------------------------------------------------------------------------------


def minibatch_indices(
    num_examples: int, batch_size: int, steps: int, generator: torch.Generator
) -> Tensor:
    """Indices of ``steps`` minibatches drawn without replacement, epoch after epoch.

    Concatenates shuffles of ``0..num_examples-1`` and cuts them into consecutive minibatches,
    as supervised-reptile's ``_mini_batches(replacement=False)``: a minibatch may straddle two
    epochs, and repeats an example only when ``batch_size > num_examples``.

    Args:
        num_examples: Examples to draw from (a task's support set size).
        batch_size: Examples per minibatch.
        steps: Number of minibatches.
        generator: Source of randomness; the indices are created on its device.

    Returns:
        ``int64`` ``[steps, batch_size]``.

    Raises:
        ValueError: If a count is not positive (``steps`` may be 0).
    """
    if num_examples < 1 or batch_size < 1 or steps < 0:
        raise ValueError(
            "num_examples and batch_size must be >= 1 and steps >= 0, got "
            f"{num_examples}, {batch_size}, {steps}"
        )
    total = steps * batch_size
    epochs = -(-total // num_examples)
    device = generator.device
    perms = [
        torch.randperm(num_examples, generator=generator, device=device) for _ in range(epochs)
    ]
    flat = torch.cat(perms) if perms else torch.zeros(0, dtype=torch.int64, device=device)
    return flat[:total].view(steps, batch_size)


def inner_loop(
    params: Params,
    loss_fn: ExampleLoss,
    batches: tuple[Tensor, Tensor],
    *,
    lr: float,
    beta2: float,
) -> AdaptResult:
    """Reptile's inner loop for every task: Adam (``beta1 = 0``) on a sequence of minibatches.

    Step ``s`` of task ``i`` trains on ``x[i, s], y[i, s]``; every task starts Adam afresh.

    Args:
        params: Shared initial parameters ``theta`` ``{name: Tensor[*shape]}``; gradients do not
            flow back to them (Reptile is first order).
        loss_fn: ``loss_fn(params, x, y) -> Tensor[]`` on one task's minibatch.
        batches: ``(x, y)`` shaped ``[task, steps, batch, ...]``.
        lr: Adam step size.
        beta2: Adam's ``beta2``.

    Returns:
        :class:`~metarl.functional.AdaptResult`: ``params`` ``[task, *shape]``, the minibatch
        loss before each step ``losses: [task, steps]``, and the ``trajectory``.

    Raises:
        ValueError: If ``batches`` are not ``(x, y)`` sharing ``[task, steps, batch]``.
    """
    x, y = batches
    if x.dim() < 3 or x.shape[:3] != y.shape[:3]:
        raise ValueError(
            "batches must be (x, y) sharing [task, steps, batch], got "
            f"{tuple(x.shape)}, {tuple(y.shape)}"
        )

    def step_loss(p: Params, data: tuple[Tensor, Tensor], step: int) -> Tensor:
        return loss_fn(p, data[0][step], data[1][step])

    return adapt(
        {k: v.detach() for k, v in params.items()},
        step_loss,
        batches,
        steps=x.shape[1],
        lr=lr,
        update=adam((0.0, beta2)),
        first_order=True,
        step_arg=True,
    )


def reptile_pseudo_loss(params: Params, adapted_mean: Params) -> Tensor:
    """``0.5 * sum_k ||theta_k - stopgrad(phi_k)||^2``, whose gradient is ``theta - phi``.

    One SGD step of size ``epsilon`` on it is Reptile's ``theta + epsilon (phi - theta)``.

    Args:
        params: Meta-parameters ``theta`` ``{name: Tensor[*shape]}``.
        adapted_mean: ``phi = mean_i phi_i`` with the same keys and shapes (detached here).

    Returns:
        A scalar.

    Raises:
        ValueError: If the keys or shapes differ.
    """
    if params.keys() != adapted_mean.keys():
        raise ValueError(
            f"adapted_mean must have keys {sorted(params)}, got {sorted(adapted_mean)}"
        )
    terms = []
    for k, theta in params.items():
        if theta.shape != adapted_mean[k].shape:
            raise ValueError(
                f"adapted_mean[{k!r}] has shape {tuple(adapted_mean[k].shape)}, "
                f"expected {tuple(theta.shape)}"
            )
        terms.append((theta - adapted_mean[k].detach()).square().sum())
    return 0.5 * torch.stack(terms).sum()


# ----------------------------------------------------------------------------------------------
# the learner
# ----------------------------------------------------------------------------------------------

_EVAL_STREAM = 1  # seeds minibatches of adaptation_curve apart from those of training


class ReptileLearner(FixedStepSizes):
    """Reptile with an Adam inner loop (see the module docstring).

    Args:
        cfg: The experiment config: ``inner.lr``, ``inner.steps``, ``reptile.batch_size``,
            ``reptile.eval_batch_size`` and ``reptile.adam_beta2`` drive the inner loop; pair it
            with ``optim.optimizer: sgd``.
        device: Where the parameters live.
        generator: Initialises the network; also seeds the learner's minibatch generator.

    Raises:
        ValueError: If a minibatch size is not positive.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(cfg.reptile, name)
            if value is not None and value < 1:
                raise ValueError(f"reptile.{name} must be >= 1, got {value}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = build_model(cfg, generator, self.device, embedding=False)
        seed = torch.randint(2**62, (1,), generator=generator, device=generator.device)
        self._seed = int(seed)
        self.generator = torch.Generator(device=self.device)
        self._eval_calls = 0

    def init_params(self) -> Params:
        """Returns the network's initial weights as leaf tensors that require grad."""
        return {k: v.detach().clone().requires_grad_() for k, v in self.model.named_parameters()}

    def _loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return task_loss(functional_call(self.model, params, (x,)), y)

    def _metric(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return task_metric(functional_call(self.model, params, (x,)), y)

    def _minibatches(
        self, batch: TaskBatch, batch_size: int, steps: int, stream: int, count: int
    ) -> tuple[Tensor, Tensor]:
        """Support minibatches ``[task, steps, batch_size, ...]`` drawn for call ``count``."""
        seed = np.random.SeedSequence([self._seed, stream, count]).generate_state(1, np.uint64)
        self.generator.manual_seed(int(seed[0]))
        idx = minibatch_indices(batch.num_support, batch_size, steps, self.generator)
        return batch.support_x[:, idx], batch.support_y[:, idx]

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Reptile's pseudo-loss for one meta-batch (its gradient is ``theta - mean_i phi_i``).

        Args:
            params: Meta-parameters ``theta``.
            batch: The meta-batch; the inner loop trains on its support sets.
            iteration: The outer iteration (seeds the minibatch order).
            lrs: Unused (Reptile's inner Adam has a fixed step size).

        Returns:
            :class:`OuterLoss` with the pseudo-loss and, as metrics, the query metric after
            adaptation (``query_mse`` or ``query_accuracy``) and the mean minibatch loss at the
            first and the last inner step.
        """
        inner, reptile = section(self.cfg.inner, "inner"), section(self.cfg.reptile, "reptile")
        batches = self._minibatches(batch, reptile.batch_size, inner.steps, 0, iteration)
        with torch.no_grad():
            result = inner_loop(params, self._loss, batches, lr=inner.lr, beta2=reptile.adam_beta2)
            adapted_mean = {k: v.mean(0) for k, v in result.params.items()}
            query = vmap(self._metric)(result.params, batch.query_x, batch.query_y).mean()
        metrics = {"query_" + self.cfg.task.metric: query}
        if inner.steps > 0:
            metrics["inner_loss_first"] = result.losses[:, 0].mean()
            metrics["inner_loss_last"] = result.losses[:, -1].mean()
        return OuterLoss(reptile_pseudo_loss(params, adapted_mean), metrics, half_squared_grad=True)

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps inner Adam iterations, ``[task, steps + 1]``.

        Minibatches have ``reptile.eval_batch_size`` examples (default
        ``reptile.batch_size``); their order depends on how many curves this learner has
        computed, so a fresh learner reproduces the curves of a trained one.
        """
        inner, reptile = section(self.cfg.inner, "inner"), section(self.cfg.reptile, "reptile")
        size = reptile.eval_batch_size or reptile.batch_size
        batches = self._minibatches(batch, size, steps, _EVAL_STREAM, self._eval_calls)
        self._eval_calls += 1
        query = (batch.query_x, batch.query_y)
        with torch.no_grad():
            result = inner_loop(params, self._loss, batches, lr=inner.lr, beta2=reptile.adam_beta2)
            # step 0 at the shared theta itself (trajectory[0] holds its per-task views)
            curve = [vmap(self._metric, in_dims=(None, 0, 0))(params, *query)]
            curve += [vmap(self._metric)(p, *query) for p in result.trajectory[1:]]
        return torch.stack(curve, dim=1)

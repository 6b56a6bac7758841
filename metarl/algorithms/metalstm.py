"""Meta-LSTM: an LSTM meta-learner that produces the learner's updates (Ravi & Larochelle 2017).

The learner's parameters θ are the cell state of a coordinate-wise LSTM (Eq. 2); each inner step::

    i_t = σ(W_I · [h_t, θ_{t-1}, i_{t-1}] + b_I)     (input gate: a learned step size)
    f_t = σ(W_F · [h_t, θ_{t-1}, f_{t-1}] + b_F)     (forget gate: a learned decay)
    θ_t = f_t ⊙ θ_{t-1} - i_t ⊙ ∇_t

with ``h_t`` the hidden state of a first, ordinary LSTM layer that reads the preprocessed gradient
(:func:`preprocess`, Andrychowicz et al. 2016, App. A). All weights are shared by every coordinate
of every parameter tensor; the initial θ_0 is meta-learned with them. As in the paper (§3.2) the
gradients ∇_t are inputs, not differentiated through (first order in the learner's loss), while
the outer loss still reaches the meta-learner and θ_0 through the gates and the cell state.

Differences from the paper: the first layer reads the preprocessed gradient only, not the
preprocessed loss as well; batch norm always uses the current batch's statistics.

The meta-learner is an :class:`metarl.functional.InnerUpdate` for :func:`metarl.functional.adapt`:
the same vmapped inner loop as MAML, with this update in place of SGD.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from envs.supervised import TaskBatch
from metarl.algorithms.adapted_loss import query_outer_loss
from metarl.algorithms.supervised import (
    FixedStepSizes,
    OuterLoss,
    SupervisedConfig,
    build_model,
    task_loss,
    task_metric,
)
from metarl.functional import AdaptResult, InnerUpdate, Params, adapt

__all__ = ["META", "MetaLSTMLearner", "lstm_update", "preprocess"]

META = "metalstm."
"""Prefix of the meta-learner's own weights in θ."""


def preprocess(x: Tensor, p: float = 10.0) -> Tensor:
    """Andrychowicz et al. 2016's gradient preprocessing: ``[..., 2]`` features of ``x``.

    ``(log|x| / p, sign(x))`` if ``|x| >= e^-p``, else ``(-1, e^p x)``: scale and sign on
    comparable ranges, whatever the gradient's magnitude.

    Args:
        x: Any tensor.
        p: The threshold exponent, > 0.

    Returns:
        ``[*x.shape, 2]``.

    Raises:
        ValueError: If ``p`` is not positive.
    """
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    big = x.abs() >= math.exp(-p)
    tiny = torch.finfo(x.dtype).tiny
    first = torch.where(big, torch.log(x.abs() + tiny) / p, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], dim=-1)


class _CoordinateState(NamedTuple):
    h: Tensor  # [*shape, hidden]
    c: Tensor  # [*shape, hidden]
    i: Tensor  # [*shape]
    f: Tensor  # [*shape]


def lstm_update(meta: Mapping[str, Tensor], hidden: int) -> InnerUpdate:
    """The meta-learner's update as an init/update pair (one call: one step of every coordinate).

    Args:
        meta: Its weights, names without the prefix: ``w_ih [2, 4H]``, ``w_hh [H, 4H]``,
            ``b [4H]``, ``w_i [H + 2]``, ``b_i []``, ``w_f [H + 2]``, ``b_f []``.
        hidden: ``H``, the first layer's hidden size.

    Returns:
        :class:`metarl.functional.InnerUpdate` (the ``lr`` argument of ``update`` is unused).

    Raises:
        ValueError: If a weight is missing or has the wrong shape.
    """
    shapes = {
        "w_ih": (2, 4 * hidden),
        "w_hh": (hidden, 4 * hidden),
        "b": (4 * hidden,),
        "w_i": (hidden + 2,),
        "b_i": (),
        "w_f": (hidden + 2,),
        "b_f": (),
    }
    for name, shape in shapes.items():
        if name not in meta or tuple(meta[name].shape) != shape:
            got = tuple(meta[name].shape) if name in meta else "missing"
            raise ValueError(f"meta-learner weight {name!r} must have shape {shape}, got {got}")

    def init(params: Params) -> dict[str, _CoordinateState]:
        state = {}
        for k, v in params.items():
            zeros_h = v.new_zeros(*v.shape, hidden)
            state[k] = _CoordinateState(
                zeros_h, zeros_h, v.new_zeros(v.shape), v.new_zeros(v.shape)
            )
        return state

    def update(
        params: Params, grads: Mapping[str, Tensor], state: Any, lr: Any
    ) -> tuple[Params, dict[str, _CoordinateState]]:
        new_params, new_state = dict(params), {}
        for k, g in grads.items():
            theta, s = params[k], state[k]
            z = preprocess(g) @ meta["w_ih"] + s.h @ meta["w_hh"] + meta["b"]
            zi, zf, zg, zo = z.chunk(4, dim=-1)
            c = torch.sigmoid(zf) * s.c + torch.sigmoid(zi) * torch.tanh(zg)
            h = torch.sigmoid(zo) * torch.tanh(c)
            w_i, w_f = meta["w_i"], meta["w_f"]
            i = torch.sigmoid(h @ w_i[:hidden] + theta * w_i[hidden] + s.i * w_i[-1] + meta["b_i"])
            f = torch.sigmoid(h @ w_f[:hidden] + theta * w_f[hidden] + s.f * w_f[-1] + meta["b_f"])
            new_params[k] = f * theta - i * g
            new_state[k] = _CoordinateState(h, c, i, f)
        return new_params, new_state

    return InnerUpdate(init, update)


class MetaLSTMLearner(FixedStepSizes):
    """The Ravi & Larochelle meta-learner on the learners of this suite (MLP or conv4).

    Args:
        cfg: The experiment config (``inner.steps`` updates per task, ``metalstm`` its sizes).
        device: Where the parameters live.
        generator: Initialises the learner and the meta-learner.
    """

    def __init__(
        self, cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        assert cfg.inner is not None and cfg.metalstm is not None  # filled by the config
        self.cfg, self.inner, self.settings = cfg, cfg.inner, cfg.metalstm
        self.hidden = cfg.metalstm.hidden_size
        self.model = build_model(cfg, generator, device, embedding=False)
        self.generator = generator

    def init_params(self) -> Params:
        """θ_0 of the learner, and the meta-learner's weights under ``metalstm.``.

        The gate biases start in the paper's ranges: the forget gate near 1 (b_F ~ U[4, 6]) and
        the input gate small (b_I ~ U[-5, -4]), so the first updates are plain small SGD steps.
        """
        params = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        first = next(iter(params.values()))
        h = self.hidden

        def uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
            u = torch.rand(shape, generator=self.generator, device=first.device, dtype=first.dtype)
            return low + (high - low) * u

        meta = {
            "w_ih": uniform((2, 4 * h), -0.01, 0.01),
            "w_hh": uniform((h, 4 * h), -0.01, 0.01),
            "b": torch.zeros(4 * h, device=first.device, dtype=first.dtype),
            "w_i": uniform((h + 2,), -0.01, 0.01),
            "b_i": uniform((), *self.settings.input_bias_range),
            "w_f": uniform((h + 2,), -0.01, 0.01),
            "b_f": uniform((), *self.settings.forget_bias_range),
        }
        params.update({META + k: v for k, v in meta.items()})
        return {k: v.requires_grad_() for k, v in params.items()}

    def _loss(self, net: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        return task_loss(functional_call(self.model, net, (data[0],)), data[1])

    def _adapt(self, params: Params, batch: TaskBatch, steps: int) -> AdaptResult:
        net = {k: v for k, v in params.items() if not k.startswith(META)}
        meta = {k[len(META) :]: v for k, v in params.items() if k.startswith(META)}
        return adapt(
            net,
            self._loss,
            (batch.support_x, batch.support_y),
            steps=steps,
            lr=0.0,  # unused: the meta-learner's gates are the step sizes
            update=lstm_update(meta, self.hidden),
            first_order=True,  # ∇_t is an input of the meta-learner (paper §3.2)
        )

    def _predict(self, adapted: Params, batch: TaskBatch) -> Tensor:
        return vmap(lambda p, x: functional_call(self.model, p, (x,)))(adapted, batch.query_x)

    def outer_loss(
        self, params: Params, batch: TaskBatch, iteration: int, *, lrs: Params | None = None
    ) -> OuterLoss:
        """Mean query loss of the learner after the meta-learner's ``inner.steps`` updates."""
        steps = self.inner.steps
        result = self._adapt(params, batch, steps)
        pred = self._predict(result.params, batch)
        return query_outer_loss(pred, batch.query_y, result.losses, self.cfg.task.metric)

    def adaptation_curve(
        self, params: Params, batch: TaskBatch, steps: int, *, lrs: Params | None = None
    ) -> Tensor:
        """Query metric after 0..steps meta-learner updates, ``[task, steps + 1]``."""
        with torch.no_grad():
            result = self._adapt(params, batch, steps)
            curve = [
                vmap(task_metric)(self._predict(p, batch), batch.query_y) for p in result.trajectory
            ]
        return torch.stack(curve, dim=1)

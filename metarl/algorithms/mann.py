"""Memory-Augmented Neural Networks (Santoro et al. 2016) for few-shot classification.

An LSTM controller reads the episode one step at a time (``(x_t, y_{t-1})``, see
:mod:`metarl.algorithms.blackbox_common`) together with the previous step's memory reads, and an
external memory ``M`` (``slots x width``) is accessed by least-recently-used access (LRUA),
one key per read head:

- read: ``w^r_t(i) = softmax_i(cos(k_t, M_{t-1}(i)))``, ``r_t = Σ_i w^r_t(i) M_t(i)``;
- write: ``w^w_t = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1}``; before writing the least
  used slot is zeroed, then ``M_t(i) = M_{t-1}(i) + w^w_t(i) a_t``;
- usage: ``w^u_t = γ w^u_{t-1} + w^r_t + w^w_t``; ``w^lu_t`` is 1 on the ``heads`` least used
  slots (ties broken by slot index), 0 elsewhere.

The read weights are taken against the memory before this step's write, as in the public
re-implementation snowkylin/ntm (``ntm/mann_cell.py``): against ``M_t`` a step mostly finds the
key it has just written. With several heads each head writes with its own gate, the writes add up,
and usage sums over heads (as there). The written vector ``a_t`` is the key itself (Santoro et al.
2016 §3.2) or, with ``write_vector: separate``, an affine map of its own (snowkylin/ntm's default
``k_strategy='separate'``). Keys and written vectors are ``tanh`` of affine maps of the controller
output; the class logits are an affine map of ``[h_t, r_t]``. The memory starts at ``1e-6``
everywhere, usage and previous reads at zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.algorithms.blackbox_common import BlackBoxLearner, init_uniform_
from metarl.algorithms.supervised_config import MANNConfig

__all__ = ["LRUAState", "MANNCore", "MANNLearner", "lrua_step"]

_MEMORY_INIT = 1e-6
_COSINE_EPS = 1e-8


class LRUAState(NamedTuple):
    """The memory between two steps.

    Attributes:
        memory: ``[batch, slots, width]``.
        usage: ``[batch, slots]`` usage weights ``w^u``.
        read_weights: ``[batch, heads, slots]`` the previous step's ``w^r``.
    """

    memory: Tensor
    usage: Tensor
    read_weights: Tensor


def lrua_step(
    state: LRUAState,
    keys: Tensor,
    gate_logits: Tensor,
    gamma: float,
    written: Tensor | None = None,
) -> tuple[LRUAState, Tensor]:
    """One step of the LRUA memory: read weights, write, then read.

    Args:
        state: The memory, usage and read weights of the previous step.
        keys: ``[batch, heads, width]`` this step's keys (the memory is addressed with them).
        gate_logits: ``[batch, heads]`` α, the write gate's logit per head.
        gamma: Usage decay γ in ``[0, 1]``.
        written: ``[batch, heads, width]`` what each head writes (default: its key).

    Returns:
        The new state and the reads ``[batch, heads, width]``.

    Raises:
        ValueError: If the shapes do not match or there are more heads than slots.
    """
    memory, usage, prev_read = state
    batch, slots, width = memory.shape
    heads = keys.shape[1] if keys.dim() == 3 else -1
    if keys.shape != (batch, heads, width) or heads < 1:
        raise ValueError(f"keys must be [{batch}, heads, {width}], got {tuple(keys.shape)}")
    if heads > slots:
        raise ValueError(f"read heads ({heads}) must be <= memory slots ({slots})")
    if usage.shape != (batch, slots) or prev_read.shape != (batch, heads, slots):
        raise ValueError(
            f"usage must be [{batch}, {slots}] and read_weights [{batch}, {heads}, {slots}], got "
            f"{tuple(usage.shape)} and {tuple(prev_read.shape)}"
        )
    if gate_logits.shape != (batch, heads):
        raise ValueError(f"gate_logits must be [{batch}, {heads}], got {tuple(gate_logits.shape)}")
    if written is None:
        written = keys
    elif written.shape != keys.shape:
        raise ValueError(f"written must be {tuple(keys.shape)}, got {tuple(written.shape)}")
    # cosine similarity of every key with every slot as one batched product of unit vectors (the
    # value of F.cosine_similarity with eps 1e-8, without its [B, H, N, W] broadcast)
    unit_keys = F.normalize(keys, dim=-1, eps=_COSINE_EPS)
    unit_slots = F.normalize(memory, dim=-1, eps=_COSINE_EPS)
    read = (unit_keys @ unit_slots.transpose(1, 2)).softmax(dim=-1)  # [B, H, N], against M_{t-1}
    by_usage = usage.detach().argsort(dim=1, stable=True)  # least used first
    least_used = torch.zeros_like(usage).scatter(1, by_usage[:, :heads], 1.0)  # w^lu_{t-1}
    keep = 1.0 - F.one_hot(by_usage[:, 0], slots).to(memory.dtype)
    memory = memory * keep.unsqueeze(-1)  # the least used slot is zeroed before the write
    alpha = torch.sigmoid(gate_logits).unsqueeze(-1)  # [B, H, 1]
    write = alpha * prev_read + (1.0 - alpha) * least_used.unsqueeze(1)  # [B, H, N]
    memory = memory + write.transpose(1, 2) @ written  # Σ_h w^w_h(i) a_h
    reads = read @ memory  # [B, H, W], from M_t
    usage = gamma * usage + read.sum(dim=1) + write.sum(dim=1)
    return LRUAState(memory, usage, read), reads


class MANNCore(nn.Module):
    """LSTM controller + LRUA memory over a ``[batch, steps, in_dim]`` sequence.

    Args:
        in_dim: Features of a step (embedding + one-hot label).
        ways: Output classes.
        controller: LSTM hidden units.
        slots: Memory slots.
        width: Memory width (the key size).
        heads: Read heads.
        gamma: Usage decay γ.
        separate_write: Write a vector of its own (an affine map) instead of the key.
        device: Where the parameters live.
    """

    def __init__(
        self,
        in_dim: int,
        ways: int,
        *,
        controller: int,
        slots: int,
        width: int,
        heads: int,
        gamma: float,
        separate_write: bool = False,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if min(in_dim, ways, controller, slots, width, heads) < 1:
            raise ValueError(
                "in_dim, ways, controller, slots, width and heads must be >= 1, got "
                f"{in_dim}, {ways}, {controller}, {slots}, {width}, {heads}"
            )
        if heads > slots:
            raise ValueError(f"read heads ({heads}) must be <= memory slots ({slots})")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"usage decay gamma must be in [0, 1], got {gamma}")
        self.slots, self.width, self.heads, self.gamma = slots, width, heads, gamma
        self.cell = nn.LSTMCell(in_dim + heads * width, controller, device=device)
        self.key = nn.Linear(controller, heads * width, device=device)
        self.gate = nn.Linear(controller, heads, device=device)
        self.write = nn.Linear(controller, heads * width, device=device) if separate_write else None
        self.out = nn.Linear(controller + heads * width, ways, device=device)

    def forward(self, seq: Tensor) -> Tensor:
        """``[batch, steps, in_dim]`` -> ``[batch, steps, ways]`` logits (causal)."""
        if seq.dim() != 3 or seq.shape[2] != self.cell.input_size - self.heads * self.width:
            raise ValueError(
                f"seq must be [batch, steps, {self.cell.input_size - self.heads * self.width}], "
                f"got {tuple(seq.shape)}"
            )
        batch = seq.shape[0]
        h = seq.new_zeros(batch, self.cell.hidden_size)
        c = torch.zeros_like(h)
        state = LRUAState(
            seq.new_full((batch, self.slots, self.width), _MEMORY_INIT),
            seq.new_zeros(batch, self.slots),
            seq.new_zeros(batch, self.heads, self.slots),
        )
        reads = seq.new_zeros(batch, self.heads * self.width)
        outputs = []
        for t in range(seq.shape[1]):
            h, c = self.cell(torch.cat([seq[:, t], reads], dim=-1), (h, c))
            keys = torch.tanh(self.key(h)).view(batch, self.heads, self.width)
            written = None
            if self.write is not None:
                written = torch.tanh(self.write(h)).view(batch, self.heads, self.width)
            state, read = lrua_step(state, keys, self.gate(h), self.gamma, written)
            reads = read.flatten(1)
            outputs.append(self.out(torch.cat([h, reads], dim=-1)))
        return torch.stack(outputs, dim=1)


class MANNLearner(BlackBoxLearner):
    """MANN as a supervised learner (``mann.*`` sets the controller and memory).

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_*``).
        device: Where the parameters live.
        generator: Initialises the embedding, then the controller and heads.
    """

    label_offset = True

    @property
    def every_step_loss(self) -> bool:
        """``mann.train_loss: every_step``: Santoro et al. 2016's whole-episode training."""
        return (self.cfg.mann or MANNConfig()).train_loss == "every_step"

    def build_core(
        self, in_dim: int, generator: torch.Generator, device: torch.device
    ) -> nn.Module:
        """The controller, key, gate and output layers, ``U(±1/sqrt(fan_in))``."""
        mann = self.cfg.mann or MANNConfig()  # filled with the defaults when the config loads
        core = MANNCore(
            in_dim,
            self.cfg.task.ways,
            controller=mann.controller_size,
            slots=mann.memory_slots,
            width=mann.memory_width,
            heads=mann.read_heads,
            gamma=mann.usage_decay,
            separate_write=mann.write_vector == "separate",
            device=device,
        )
        init_uniform_(core, generator)
        return core

"""SNAIL (Mishra et al. 2018): temporal convolutions and causal attention over the episode.

The sequence is the labelled support then the unlabelled query (:mod:`metarl.algorithms.
blackbox_common`); the building blocks are those of the paper's appendix:

- ``DenseBlock(R, D)``: a causal convolution of kernel 2 and dilation ``R`` gives ``xf, xg``
  (``D`` channels each); the block appends ``tanh(xf) * sigmoid(xg)`` to its input;
- ``TCBlock(T, D)``: DenseBlocks with dilations ``2, 4, ..., 2^ceil(log2 T)``;
- ``AttentionBlock(K, V)``: keys and queries (``K``) and values (``V``) are affine maps of the
  input; step ``i`` attends to steps ``<= i`` with ``softmax(q k^T / sqrt(K))``; the block
  appends the read to its input.

The Omniglot model (the paper's appendix) is ``Attention(64, 32), TC(T, 128), Attention(256, 128),
TC(T, 128), Attention(512, 256)`` then a 1x1 convolution to the ``N`` classes, with ``T = N K +
1``; ``snail.attention_keys``, ``snail.attention_values`` and ``snail.tc_filters`` scale it (one
TC block between consecutive attention blocks).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.algorithms.blackbox_common import BlackBoxLearner, init_uniform_
from metarl.algorithms.supervised_config import SNAILConfig

__all__ = [
    "AttentionBlock",
    "DenseBlock",
    "SNAILCore",
    "SNAILLearner",
    "TCBlock",
    "causal_attention",
]


def causal_attention(queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(K))`` with step ``i`` attending to steps ``<= i``, applied to values.

    Args:
        queries: ``[batch, steps, K]``.
        keys: ``[batch, steps, K]``.
        values: ``[batch, steps, V]``.

    Returns:
        ``[batch, steps, V]``.
    """
    steps = queries.shape[1]
    logits = queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])
    future = torch.ones(steps, steps, dtype=torch.bool, device=logits.device).triu(1)
    return logits.masked_fill(future, -math.inf).softmax(dim=-1) @ values


class DenseBlock(nn.Module):
    """Gated causal convolution (kernel 2, dilation ``dilation``) appended to the input."""

    def __init__(
        self, channels: int, filters: int, dilation: int, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(
            channels, 2 * filters, kernel_size=2, dilation=dilation, device=device
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[batch, steps, C]`` -> ``[batch, steps, C + filters]``."""
        padded = F.pad(x.transpose(1, 2), (self.dilation, 0))  # left padding only: causal
        xf, xg = self.conv(padded).transpose(1, 2).chunk(2, dim=-1)
        return torch.cat([x, torch.tanh(xf) * torch.sigmoid(xg)], dim=-1)


class TCBlock(nn.Module):
    """DenseBlocks with dilations ``2, 4, ..., 2^ceil(log2 steps)``."""

    def __init__(
        self, channels: int, steps: int, filters: int, device: torch.device | None = None
    ) -> None:
        super().__init__()
        layers = max(1, math.ceil(math.log2(steps)))
        self.blocks = nn.ModuleList(
            DenseBlock(channels + i * filters, filters, 2 ** (i + 1), device) for i in range(layers)
        )
        self.out_channels = channels + layers * filters

    def forward(self, x: Tensor) -> Tensor:
        """``[batch, steps, C]`` -> ``[batch, steps, out_channels]``."""
        for block in self.blocks:
            x = block(x)
        return x


class AttentionBlock(nn.Module):
    """Causal single-head attention; the read is appended to the input."""

    def __init__(
        self, channels: int, key_size: int, value_size: int, device: torch.device | None = None
    ) -> None:
        super().__init__()
        self.query = nn.Linear(channels, key_size, device=device)
        self.key = nn.Linear(channels, key_size, device=device)
        self.value = nn.Linear(channels, value_size, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """``[batch, steps, C]`` -> ``[batch, steps, C + value_size]``."""
        read = causal_attention(self.query(x), self.key(x), self.value(x))
        return torch.cat([x, read], dim=-1)


class SNAILCore(nn.Module):
    """Attention, (TC, attention)*, then a 1x1 convolution to ``ways`` logits.

    Args:
        in_dim: Features of a step (embedding + one-hot label).
        ways: Output classes.
        steps: Sequence length ``T`` the TC blocks are sized for.
        keys: Key size of each attention block.
        values: Value size of each attention block (as many as ``keys``).
        tc_filters: Filters of each DenseBlock.
        device: Where the parameters live.

    Raises:
        ValueError: If a size is not positive or ``keys`` and ``values`` differ in length.
    """

    def __init__(
        self,
        in_dim: int,
        ways: int,
        *,
        steps: int,
        keys: tuple[int, ...],
        values: tuple[int, ...],
        tc_filters: int,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if not keys or len(keys) != len(values):
            raise ValueError(
                f"attention keys and values must be one or more sizes each, equally many; got "
                f"{list(keys)} and {list(values)}"
            )
        if min(in_dim, ways, steps, tc_filters, *keys, *values) < 1:
            raise ValueError(
                f"sizes must be >= 1, got in_dim={in_dim}, ways={ways}, steps={steps}, "
                f"tc_filters={tc_filters}, keys={list(keys)}, values={list(values)}"
            )
        self.in_dim = in_dim
        layers: list[nn.Module] = []
        channels = in_dim
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            if i > 0:
                tc = TCBlock(channels, steps, tc_filters, device)
                layers.append(tc)
                channels = tc.out_channels
            layers.append(AttentionBlock(channels, key, value, device))
            channels += value
        self.layers = nn.Sequential(*layers)
        self.out = nn.Linear(channels, ways, device=device)  # the 1x1 convolution

    def forward(self, seq: Tensor) -> Tensor:
        """``[batch, steps, in_dim]`` -> ``[batch, steps, ways]`` logits (causal)."""
        if seq.dim() != 3 or seq.shape[2] != self.in_dim:
            raise ValueError(f"seq must be [batch, steps, {self.in_dim}], got {tuple(seq.shape)}")
        return self.out(self.layers(seq))


class SNAILLearner(BlackBoxLearner):
    """SNAIL as a supervised learner (``snail.*`` sets the attention and TC sizes).

    Args:
        cfg: The experiment config (``task.family: omniglot``, ``model.network: conv4_*``).
        device: Where the parameters live.
        generator: Initialises the embedding, then the sequence model.
    """

    label_offset = False

    def build_core(
        self, in_dim: int, generator: torch.Generator, device: torch.device
    ) -> nn.Module:
        """The paper's block stack sized for ``T = ways * shots + 1`` training steps."""
        snail = self.cfg.snail or SNAILConfig()  # filled with the defaults when the config loads
        task = self.cfg.task
        core = SNAILCore(
            in_dim,
            task.ways,
            steps=task.ways * task.shots + 1,
            keys=snail.attention_keys,
            values=snail.attention_values,
            tc_filters=snail.tc_filters,
            device=device,
        )
        init_uniform_(core, generator)
        return core

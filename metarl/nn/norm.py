"""Batch normalisation with per-batch statistics, safe under ``torch.func.vmap``.

MAML normalises with the statistics of the batch it is given, at training and at test time
(transductive; cbfinn/maml ``utils.py:normalize`` calls ``tf.contrib.layers.batch_norm`` with no
moving averages used). Under ``vmap`` over tasks each task therefore gets its own statistics.

The normalisation is written out from ``mean`` and ``var`` ops on purpose:
``torch.nn.functional.batch_norm`` was measured to give wrong second-order meta-gradients under
``vmap``, while these elementary ops have exact batching and double-backward rules
(``tests/metarl/test_nn.py`` pins this).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BatchNorm", "batch_norm"]


def batch_norm(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalises ``x`` with its own batch statistics, then applies the affine map.

    Statistics are taken over every axis except the channel axis 1, with the biased variance,
    exactly as ``torch.nn.functional.batch_norm(training=True)`` normalises.

    Args:
        x: Input ``[batch, channels, *spatial]`` (``[batch, channels]`` for features).
        weight: Scale ``[channels]``, or None for 1.
        bias: Shift ``[channels]``, or None for 0.
        eps: Added to the variance for numerical stability.

    Returns:
        Tensor shaped like ``x``.

    Raises:
        ValueError: If ``x`` has fewer than 2 axes or ``weight``/``bias`` are not ``[channels]``.
    """
    if x.dim() < 2:
        raise ValueError(f"x must be [batch, channels, *spatial], got shape {tuple(x.shape)}")
    channels = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {tuple(t.shape)}")
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    centered = x - mean
    var = centered.square().mean(dim=dims, keepdim=True)
    y = centered * torch.rsqrt(var + eps)
    affine_shape = (1, channels) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(affine_shape)
    if bias is not None:
        y = y + bias.reshape(affine_shape)
    return y


class BatchNorm(nn.Module):
    """Batch norm that always uses batch statistics, with optional per-step affine parameters.

    With ``steps=None`` the affine parameters are ``weight, bias: [channels]``. With
    ``steps=k`` they are ``[k + 1, channels]`` and ``forward(x, step=i)`` uses row ``i``: MAML++'s
    per-step batch-norm weights and biases (BNWB, Antoniou et al. 2019, §4), one row per inner
    step ``0..k-1`` plus one for the query pass after the last step. Running statistics are not
    kept (always batch statistics).

    Args:
        channels: Number of channels (axis 1 of the input).
        steps: Number of inner steps for per-step affine parameters, or None for shared ones.
        eps: Added to the variance for numerical stability.
        device: Device of the parameters.
        dtype: Dtype of the parameters.
    """

    def __init__(
        self,
        channels: int,
        *,
        steps: int | None = None,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be None or >= 0, got {steps}")
        shape = (channels,) if steps is None else (steps + 1, channels)
        self.channels = channels
        self.steps = steps
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        """Normalises ``x: [batch, channels, *spatial]`` with its batch statistics.

        Args:
            x: Input ``[batch, channels, *spatial]``.
            step: Inner step index selecting the per-step affine row, ``0..steps``; ignored
                when the parameters are shared.

        Returns:
            Tensor shaped like ``x``.

        Raises:
            ValueError: If ``step`` is out of range.
        """
        if self.steps is None:
            return batch_norm(x, self.weight, self.bias, self.eps)
        if not 0 <= step <= self.steps:
            raise ValueError(f"step must be in [0, {self.steps}], got {step}")
        return batch_norm(x, self.weight[step], self.bias[step], self.eps)

    def extra_repr(self) -> str:
        """Returns the constructor arguments for ``repr``."""
        return f"{self.channels}, steps={self.steps}, eps={self.eps}"

"""The four-block convolutional backbone of few-shot learning (``Conv4``).

Two published variants, both with batch norm on batch statistics (:class:`BatchNorm`):

- ``"strided"``: MAML's Omniglot net (Finn et al. 2017, §5.2; cbfinn/maml ``utils.py:conv_block``
  without ``max_pool``): 4 x [conv 3x3 stride 2 padding 1, BN, ReLU], then the spatial mean, so
  the embedding has ``filters`` features for any input size.
- ``"maxpool"``: Vinyals et al.'s net as used by ProtoNets, MAML on MiniImageNet and MAML++:
  4 x [conv 3x3 padding 1, BN, ReLU, 2x2 max-pool], then flatten: ``filters * (size // 16)**2``
  features (64 for 28x28 with 64 filters, 800 for 84x84 with 32 filters).

A linear head ``head.*`` maps the embedding to ``ways`` logits; ``ways=None`` omits it
(ProtoNets, Matching and Relation networks use the embedding).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.nn.mlp import init_linear_
from metarl.nn.norm import BatchNorm

__all__ = ["Conv4", "ConvBlock"]


class ConvBlock(nn.Module):
    """conv 3x3 (padding 1) -> :class:`BatchNorm` -> ReLU (-> 2x2 max-pool).

    Args:
        in_channels: Input channels.
        out_channels: Filters.
        stride: Convolution stride (2 for MAML's strided net, 1 with max-pooling).
        max_pool: Follow with a 2x2 max-pool (floor, "VALID").
        bn_steps: Inner steps for per-step BN affine parameters (MAML++ BNWB), or None.
        generator: Source of randomness for the init; None uses the global torch RNG.
        device: Device of the parameters.
        dtype: Dtype of the parameters.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        max_pool: bool,
        bn_steps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.max_pool = max_pool
        self.conv = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, device=device, dtype=dtype
        )
        self.norm = BatchNorm(out_channels, steps=bn_steps, device=device, dtype=dtype)
        with torch.no_grad():
            # Glorot-uniform weights and zero biases, as cbfinn/maml's xavier_initializer_conv2d.
            nn.init.xavier_uniform_(self.conv.weight, generator=generator)
            assert self.conv.bias is not None  # nn.Conv2d(bias=True), built above
            self.conv.bias.zero_()

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        """Maps ``[batch, in_channels, H, W]`` to ``[batch, out_channels, H', W']``.

        Args:
            x: Input ``[batch, in_channels, H, W]``.
            step: Inner step index for per-step BN parameters.

        Returns:
            ``H' = ceil(H / 2)`` when strided; ``floor(H / 2)`` with max-pooling.
        """
        x = F.relu(self.norm(self.conv(x), step=step))
        return F.max_pool2d(x, 2) if self.max_pool else x


class Conv4(nn.Module):
    """Four :class:`ConvBlock` layers, an embedding, and an optional linear head.

    Parameters are named ``body.{0..3}.conv.{weight,bias}``, ``body.{0..3}.norm.{weight,bias}``
    and ``head.{weight,bias}``, so ANIL adapts ``["head.weight", "head.bias"]``.

    Args:
        ways: Number of classes of the linear head, or None to return the embedding.
        in_channels: Channels of the input images (1 for Omniglot, 3 for MiniImageNet).
        image_size: Height and width of the (square) input images.
        filters: Filters in every convolution (64 for Omniglot, 32 or 48 for MiniImageNet).
        variant: ``"strided"`` (MAML Omniglot) or ``"maxpool"`` (ProtoNets, MAML++, MiniImageNet).
        bn_steps: Inner steps for per-step BN weights and biases (MAML++ BNWB), or None; with it,
            ``forward(x, step=i)`` selects the affine row ``i``.
        generator: Source of randomness for the init; None uses the global torch RNG.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Attributes:
        embedding_dim: Features of the embedding (the head's input).
    """

    def __init__(
        self,
        ways: int | None = 5,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        filters: int = 64,
        variant: Literal["strided", "maxpool"] = "strided",
        bn_steps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if variant not in ("strided", "maxpool"):
            raise ValueError(f"variant must be 'strided' or 'maxpool', got {variant!r}")
        if variant == "maxpool" and image_size < 16:
            raise ValueError(f"image_size must be >= 16 for the maxpool variant, got {image_size}")
        if min(in_channels, image_size, filters) < 1 or (ways is not None and ways < 1):
            raise ValueError(
                "ways, in_channels, image_size and filters must be positive, got "
                f"{ways}, {in_channels}, {image_size}, {filters}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.variant = variant
        strided = variant == "strided"
        self.body = nn.ModuleList(
            ConvBlock(
                in_channels if i == 0 else filters,
                filters,
                stride=2 if strided else 1,
                max_pool=not strided,
                bn_steps=bn_steps,
                generator=generator,
                device=device,
                dtype=dtype,
            )
            for i in range(4)
        )
        self.embedding_dim = filters if strided else filters * (image_size // 16) ** 2
        self.head = None
        if ways is not None:
            self.head = nn.Linear(self.embedding_dim, ways, device=device, dtype=dtype)
            init_linear_(self.head, generator)

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        """Maps images to logits (or embeddings when there is no head).

        Args:
            x: Images ``[batch, in_channels, image_size, image_size]``.
            step: Inner step index for per-step BN parameters (ignored without ``bn_steps``).

        Returns:
            Logits ``[batch, ways]``, or embeddings ``[batch, embedding_dim]`` if ``ways=None``.

        Raises:
            ValueError: If ``x`` has the wrong shape.
        """
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be [batch, *{expected}], got shape {tuple(x.shape)}")
        for block in self.body:
            x = block(x, step=step)
        x = x.mean(dim=(2, 3)) if self.variant == "strided" else x.flatten(1)
        return x if self.head is None else self.head(x)


class Pixels(nn.Module):
    """The image itself as the embedding: its pixels flattened to one vector, no parameters.

    The input of Santoro et al. 2016's MANN ("MANN, no conv" in Finn et al. 2017, Table 1), which
    reads raw pixels (downscaled to 20x20 there; here the family's own side).

    Args:
        in_channels: Input channels.
        image_size: Side of the square input images.
    """

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.embedding_dim = in_channels * image_size * image_size

    def forward(self, x: Tensor) -> Tensor:
        """Images ``[batch, in_channels, image_size, image_size]`` to ``[batch, embedding_dim]``.

        Raises:
            ValueError: If ``x`` has the wrong shape.
        """
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be [batch, *{expected}], got shape {tuple(x.shape)}")
        return x.flatten(1)

"""Multi-layer perceptron with a separately named head (``head.*``, for ANIL)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["MLP", "init_linear_", "init_linear_maml_"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": nn.functional.relu,  # what nn.ReLU().forward calls
    "tanh": torch.tanh,  # what nn.Tanh().forward calls
}


def init_linear_(layer: nn.Linear, generator: torch.Generator | None = None) -> None:
    """Re-initialises ``layer`` in place like PyTorch's default, from ``generator``.

    Weight and bias are drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (what
    ``nn.Linear.reset_parameters`` gives), so a seeded generator makes the init reproducible.

    Args:
        layer: The layer to initialise.
        generator: Source of randomness; None uses the global torch RNG.
    """
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


def init_linear_maml_(layer: nn.Linear, generator: torch.Generator | None = None) -> None:
    """Re-initialises ``layer`` in place like cbfinn/maml's fully connected network.

    ``construct_fc_weights`` in cbfinn/maml ``maml.py`` (the sinusoid regressor of Finn et al.
    2017) draws weights from ``tf.truncated_normal(stddev=0.01)`` (a normal with std 0.01 redrawn
    outside ±2 std) and sets biases to zero.

    Args:
        layer: The layer to initialise.
        generator: Source of randomness; None uses the global torch RNG.
    """
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()


_INITS = {"torch": init_linear_, "maml": init_linear_maml_}


class MLP(nn.Module):
    """Fully connected network ``in_dim -> hidden[0] -> ... -> out_dim``.

    MAML's sinusoid regressor is ``MLP(1, [40, 40], 1)`` (Finn et al. 2017, §5.1). Parameters are
    named ``body.{2i}.weight``/``body.{2i}.bias`` for hidden layer ``i`` and ``head.weight``/
    ``head.bias`` for the output layer, so ANIL can adapt ``["head.weight", "head.bias"]``.

    Args:
        in_dim: Input features.
        hidden: Widths of the hidden layers (may be empty: a linear model).
        out_dim: Output features.
        activation: Nonlinearity after every hidden layer, ``"relu"`` or ``"tanh"``.
        init: ``"torch"`` (PyTorch's default, :func:`init_linear_`) or ``"maml"`` (cbfinn/maml's
            truncated normal with std 0.01 and zero biases, :func:`init_linear_maml_`).
        generator: Source of randomness for the init; None uses the global torch RNG.
        device: Device of the parameters.
        dtype: Dtype of the parameters.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        activation: Literal["relu", "tanh"] = "relu",
        init: Literal["torch", "maml"] = "torch",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if init not in _INITS:
            raise ValueError(f"init must be one of {sorted(_INITS)}, got {init!r}")
        widths = [in_dim, *hidden, out_dim]
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(
                "in_dim, hidden and out_dim must be positive ints, got "
                f"{in_dim}, {list(hidden)}, {out_dim}"
            )
        self.in_dim = in_dim
        self.out_dim = out_dim
        #: the hidden layers' activation as a function (what the ``nn`` activation module calls)
        self.activation_fn = _ACTIVATION_FNS[activation]
        #: parameter prefixes of the linear layers in order (``body.0``, ``body.2``, ..., ``head``)
        self.linear_names = [f"body.{2 * i}" for i in range(len(hidden))] + ["head"]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
            layers += [nn.Linear(fan_in, fan_out, device=device, dtype=dtype)]
            layers += [_ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-2], out_dim, device=device, dtype=dtype)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _INITS[init](module, generator)

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``x: [..., in_dim]`` to ``[..., out_dim]``.

        Args:
            x: Inputs ``[..., in_dim]``.

        Returns:
            Outputs ``[..., out_dim]``.

        Raises:
            ValueError: If the last axis of ``x`` is not ``in_dim``.
        """
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(f"x must be [..., {self.in_dim}], got shape {tuple(x.shape)}")
        return self.head(self.body(x))

    def functional_forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """``torch.func.functional_call(self, params, (x,))``: the same ops, on ``params``.

        ``functional_call`` swaps ``params`` into the module and back on every call; a
        meta-learner's inner loop calls a small network a few times per meta-iteration under
        ``vmap``, where that bookkeeping costs about as much as the network. This reads the
        weights from ``params`` instead (``F.linear`` and the activation, as the layers' own
        ``forward`` calls them), so it works under ``vmap`` and ``grad`` alike.

        Args:
            params: Every parameter of the network by name (``body.{2i}.weight``, ...,
                ``head.bias``), e.g. ``dict(self.named_parameters())`` or adapted copies.
            x: Inputs ``[..., in_dim]``.

        Returns:
            Outputs ``[..., out_dim]``.

        Raises:
            ValueError: If the last axis of ``x`` is not ``in_dim``.
            KeyError: If ``params`` misses a parameter.
        """
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(f"x must be [..., {self.in_dim}], got shape {tuple(x.shape)}")
        *hidden, head = self.linear_names
        for name in hidden:
            x = self.activation_fn(
                nn.functional.linear(x, params[name + ".weight"], params[name + ".bias"])
            )
        return nn.functional.linear(x, params[head + ".weight"], params[head + ".bias"])

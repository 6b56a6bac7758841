"""Networks usable functionally.

Extract ``dict(module.named_parameters())`` and run the module through
``torch.func.functional_call`` with per-task parameter dicts (also under ``vmap``).
"""

from metarl.nn.conv import Conv4, ConvBlock, Pixels
from metarl.nn.mlp import MLP, init_linear_
from metarl.nn.norm import BatchNorm, batch_norm

__all__ = ["MLP", "BatchNorm", "Conv4", "ConvBlock", "Pixels", "batch_norm", "init_linear_"]

"""Choose the compute device once, in the entry point.

This is the only module of the package that asks torch whether CUDA is available; everything else
receives a `torch.device` as an argument (or asks `cuda_available`).

Example:
    >>> get_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

import logging
import re

import torch

__all__ = ["DeviceUnavailableError", "cuda_available", "get_device"]

logger = logging.getLogger(__name__)

_CUDA_NAME = re.compile(r"^cuda(?::(\d+))?$")


class DeviceUnavailableError(RuntimeError):
    """A valid device name was requested but that device is not usable on this machine."""


def cuda_available() -> bool:
    """Return whether torch can use a CUDA device in this process.

    Returns:
        True when a CUDA build of torch sees at least one GPU.
    """
    return torch.cuda.is_available()


def get_device(name: str = "auto") -> torch.device:
    """Turn a ``--device`` choice into a `torch.device`.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The device to create tensors on.

    Raises:
        ValueError: If ``name`` is not one of the accepted names.
        DeviceUnavailableError: If CUDA is requested but not usable, or ``cuda:N`` names a GPU
            that does not exist.
    """
    if not isinstance(name, str):
        raise ValueError(f"device must be a string ('auto', 'cpu', 'cuda'), got {name!r}")
    choice = name.strip().lower()
    if choice == "auto":
        device = torch.device("cuda" if cuda_available() else "cpu")
        logger.info("device 'auto' resolved to %s", device)
        return device
    if choice == "cpu":
        return torch.device("cpu")
    match = _CUDA_NAME.match(choice)
    if match is None:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if not cuda_available():
        build = (
            f"torch {torch.__version__} is a CPU-only build"
            if torch.version.cuda is None
            else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU"
        )
        raise DeviceUnavailableError(
            f"device {name!r} was requested but CUDA is not available: {build}; "
            "use --device cpu or --device auto"
        )
    if match.group(1) is None:
        return torch.device("cuda")  # The current CUDA device (set per rank under torchrun).
    index, count = int(match.group(1)), torch.cuda.device_count()
    if index >= count:
        raise DeviceUnavailableError(
            f"device {name!r} was requested but only {count} CUDA device(s) are visible"
        )
    return torch.device("cuda", index)

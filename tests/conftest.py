"""Shared fixtures: every test leaves the global RNGs as it found them; ``device`` is forcible.

``METARL_TEST_DEVICE=cuda`` (set by ``scripts/gpu_check.py``) runs the tests that take the
``device`` fixture on that device instead of the CPU.
"""

import os
import random

import numpy as np
import pytest
import torch

# Tests use tiny tensors: one intra-op thread per pytest worker avoids oversubscribing 2 cores.
torch.set_num_threads(1)

TEST_DEVICE_VAR = "METARL_TEST_DEVICE"


@pytest.fixture(autouse=True)
def _restore_global_rng_state():
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test: ``$METARL_TEST_DEVICE`` ("cpu" or "cuda"), else the CPU."""
    from metarl.device import get_device

    name = os.environ.get(TEST_DEVICE_VAR, "cpu")
    if name.strip().lower() not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{TEST_DEVICE_VAR} must be 'cpu' or 'cuda', got {name!r}")
    return get_device(name)  # raises DeviceUnavailableError when cuda is asked for and absent

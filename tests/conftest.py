"""Shared fixtures: every test leaves the global RNGs as it found them, caches stay in tmp, and
``device`` is forcible.

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


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Points ``$XDG_CACHE_HOME`` (the Omniglot cache's fallback) at this session's temp dir.

    Nothing a test run decodes lands in the user's ``~/.cache``; pytest-xdist workers share one
    directory, so the real archives are decoded once per session.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this session's root, shared by the workers
    cache = base / "xdg_cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


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

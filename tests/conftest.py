"""Shared fixtures: every test leaves the global RNGs as it found them, and caches stay in tmp."""

import os
import random

import numpy as np
import pytest
import torch

# Tests use tiny tensors: one intra-op thread per pytest worker avoids oversubscribing 2 cores.
torch.set_num_threads(1)


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

"""Shared fixtures: every test leaves the global RNGs as it found them."""

import random

import numpy as np
import pytest
import torch

# Tests use tiny tensors: one intra-op thread per pytest worker avoids oversubscribing 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_global_rng_state():
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)

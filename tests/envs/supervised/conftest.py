"""Fixtures for the supervised task families: the real Omniglot cache, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envs.supervised import OmniglotData, OmniglotFamily, load_omniglot
from tests.helpers.data import require_omniglot_root


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """The real data root: skipped where the archives are absent, a failure under ``CI=true``."""
    return require_omniglot_root()


@pytest.fixture(scope="session")
def omniglot_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory for this session, shared by all pytest-xdist workers.

    ``load_omniglot`` locks the cache while building, so however the tests are spread over
    workers the real archives are decoded once per session.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "omniglot_cache"  # this session's root
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("omniglot_cache")


@pytest.fixture(scope="session")
def omniglot_data(omniglot_root: Path, omniglot_cache_dir: Path) -> OmniglotData:
    """The real data, decoded from the zips into a temporary cache once per test session."""
    return load_omniglot(omniglot_root, omniglot_cache_dir)


@pytest.fixture(scope="session")
def maml_train(omniglot_data: OmniglotData) -> OmniglotFamily:
    return OmniglotFamily("train", "maml", data=omniglot_data)


@pytest.fixture(scope="session")
def protonets_train(omniglot_data: OmniglotData) -> OmniglotFamily:
    return OmniglotFamily("train", "protonets", data=omniglot_data)

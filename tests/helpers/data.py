"""Where tests find real data, and what happens when it is missing.

A user's clone has no data, so outside CI a test that needs the real Omniglot archives is skipped
with a message. Under ``CI=true`` the data is part of the environment the suite is promised, so its
absence is a failure, never a quiet skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envs.supervised import ARCHIVE_NAMES, resolve_omniglot_root


def in_ci() -> bool:
    """True where the ``CI`` environment variable says so (GitHub Actions, GitLab, ... set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def omniglot_missing() -> list[str]:
    """Names of the Omniglot archives absent from the resolved data root."""
    root = resolve_omniglot_root()
    return [name for name in ARCHIVE_NAMES if not (root / name).is_file()]


def require_omniglot_root() -> Path:
    """Returns the Omniglot data root; skips the test outside CI and fails it in CI if missing."""
    root = resolve_omniglot_root()
    missing = omniglot_missing()
    if missing:
        message = (
            f"Omniglot archives {missing} not found under {root} "
            "(set METARL_OMNIGLOT_ROOT to the folder holding them)"
        )
        if in_ci():
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return root

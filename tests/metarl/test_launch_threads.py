"""``metarl train --nproc N`` gives each rank one OpenMP thread unless the user chose otherwise.

N ranks that each start OpenMP on every core spin at its barriers on shared cores: on a 2-core
machine two ranks of a ``trpo.compile`` run took 60-219 s per outer update instead of 2.2 s.
torchrun sets ``OMP_NUM_THREADS=1`` for its ranks; the launcher API that ``--nproc`` uses does
not, so :func:`metarl.launch.launch` does it.
"""

from __future__ import annotations

import pytest
import torch.distributed.launcher.api as launcher_api

from metarl.launch import LaunchSpec, launch


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The ranks' OMP_NUM_THREADS as the (faked) elastic launcher would pass it on."""
    import os

    values: list[str | None] = []

    def fake_launch(config, entrypoint):  # type: ignore[no-untyped-def]
        return lambda *args: values.append(os.environ.get("OMP_NUM_THREADS"))

    monkeypatch.setattr(launcher_api, "elastic_launch", fake_launch)
    return values


@pytest.mark.parametrize(
    ("nproc", "user", "ranks_get"), [(2, None, "1"), (2, "3", "3"), (1, None, None)]
)
def test_ranks_get_one_openmp_thread_unless_set(
    monkeypatch: pytest.MonkeyPatch,
    seen: list[str | None],
    nproc: int,
    user: str | None,
    ranks_get: str | None,
) -> None:
    import os

    if user is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", user)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    launch(LaunchSpec(nproc, 1, None, 10.0), ["train", "x.yaml"])
    assert seen == [ranks_get]
    assert os.environ.get("OMP_NUM_THREADS") == user  # this process's environment is restored

"""metarl.memory: glibc malloc keeps freed memory, unless the user tunes malloc themselves."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from metarl import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgets an earlier call's answer (the function applies its settings once per process)."""
    monkeypatch.setattr(memory, "_applied", None)
    for name in memory._USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("fresh")
def test_user_tuning_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
@pytest.mark.usefixtures("fresh")
def test_large_tensors_reuse_pages_after_the_call() -> None:
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory() is True  # idempotent

    def faults_of_a_round() -> int:
        """Page faults of 8 live 16 MiB tensors, freed together (as a batch's activations)."""
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tensors = [torch.ones(4 << 20) for _ in range(8)]
        del tensors
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(4):  # the heap grows to the working set
        faults_of_a_round()
    # fresh pages would be 8 x 4,096 faults per round (glibc's defaults trim the 128 MiB freed at
    # the top of the heap and fault it back in the next round); reused heap pages take none
    assert faults_of_a_round() + faults_of_a_round() < 2000


def test_off_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    monkeypatch.setattr(memory.platform, "system", lambda: "Darwin")
    assert memory.keep_freed_memory() is False

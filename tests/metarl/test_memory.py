"""metarl.memory: glibc malloc keeps freed memory, unless the user tunes malloc themselves."""

from __future__ import annotations

import pytest

from metarl import memory


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


class _FakeLibc:
    """Stands in for libc: records the mallopt calls and accepts them all."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

        def mallopt(param: int, value: int) -> int:  # a function: ctypes sets argtypes on it
            self.calls.append((param, value))
            return 1

        self.mallopt = mallopt


@pytest.mark.usefixtures("fresh")
def test_on_glibc_it_raises_the_mmap_threshold_and_stops_trimming_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The settings glibc's malloc.h documents; the page faults they save are benchmarked in
    scripts/bench_memory.py (a count of page faults is too machine-dependent for a unit test)."""
    libc = _FakeLibc()
    monkeypatch.setattr(memory.platform, "system", lambda: "Linux")
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory() is True  # idempotent: applied once per process
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's malloc.h
    assert dict(libc.calls) == {
        m_mmap_threshold: 1 << 30,
        m_trim_threshold: 2**31 - 1,
        m_top_pad: 64 << 20,
    }
    assert len(libc.calls) == 3


@pytest.mark.usefixtures("fresh")
def test_a_refused_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc()

    def refuse(param: int, value: int) -> int:
        return 0  # mallopt's failure value

    libc.mallopt = refuse
    monkeypatch.setattr(memory.platform, "system", lambda: "Linux")
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    assert memory.keep_freed_memory() is False


def test_off_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    monkeypatch.setattr(memory.platform, "system", lambda: "Darwin")
    assert memory.keep_freed_memory() is False

"""``backend="auto"`` picks by its stated rule and changes only speed; blocking waits work."""

import functools
import multiprocessing as mp
import time

import numpy as np
import pytest

import envs
from envs import auto_backend
from envs.auto_backend import (
    MIN_BUSY_THREAD_STEP_SECONDS,
    MIN_PARALLEL_STEP_SECONDS,
    choose_backend,
)
from envs.process_engine import ProcessEngine
from envs.registration import get_engine_class
from envs.spin_wait import AdaptiveSpin
from envs.vector import TaskVectorEnv, make_vec
from tests.helpers.counting_env import CounterEngine, CounterTask

pytestmark = pytest.mark.timeout(120)

CHEETAH = "metarl/HalfCheetahVel-v0"
SLOW = 10 * MIN_PARALLEL_STEP_SECONDS


class _ThreadedButGilBound(CounterEngine):
    """Stands in for an engine with threads whose step holds the GIL (Meta-World)."""

    def set_num_threads(self, num_threads, worker_timeout=None):  # pragma: no cover - not called
        pass


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(auto_backend, "_usable_cores", lambda: 4)


def test_rule_light_envs_and_cheap_steps_stay_sync(four_cores):
    nav = get_engine_class("metarl/Navigation2D-v0")
    assert choose_backend(nav, 1000, free_cores=4.0).backend == "sync"
    cheetah = get_engine_class(CHEETAH)
    cheap = choose_backend(cheetah, 64, step_seconds=MIN_PARALLEL_STEP_SECONDS / 2, free_cores=4.0)
    assert (cheap.backend, cheap.num_workers) == ("sync", 1)


def test_rule_free_cores_give_processes_busy_cores_threads_or_sync(four_cores):
    cheetah = get_engine_class(CHEETAH)
    quiet = choose_backend(cheetah, 64, step_seconds=SLOW, free_cores=3.4)
    assert (quiet.backend, quiet.num_workers) == ("process", 3)
    capped = choose_backend(cheetah, 64, num_workers=2, step_seconds=SLOW, free_cores=4.0)
    assert (capped.backend, capped.num_workers) == ("process", 2)
    # a second core free most of the time counts as free: the nearest whole number of cores
    mostly = choose_backend(cheetah, 64, step_seconds=SLOW, free_cores=1.9)
    assert (mostly.backend, mostly.num_workers) == ("process", 2)
    assert choose_backend(cheetah, 64, step_seconds=SLOW, free_cores=3.6).num_workers == 4
    busy = choose_backend(cheetah, 64, step_seconds=SLOW, free_cores=1.3)
    assert (busy.backend, busy.num_workers) == ("thread", 4)
    # one core free and a short step: that core to itself, not a share of the busy one
    short = MIN_BUSY_THREAD_STEP_SECONDS / 2
    assert choose_backend(cheetah, 64, step_seconds=short, free_cores=1.3).backend == "sync"
    assert choose_backend(cheetah, 64, step_seconds=short, free_cores=0.6).backend == "sync"
    # no core free at all: every thread is a share of the machine, also for short steps
    assert choose_backend(cheetah, 64, step_seconds=short, free_cores=0.4).backend == "thread"
    assert choose_backend(cheetah, 64, step_seconds=short, free_cores=1.6).backend == "process"
    gil = choose_backend(_ThreadedButGilBound, 64, step_seconds=SLOW, free_cores=1.3)
    assert gil.backend == "sync"
    overloaded = choose_backend(cheetah, 64, step_seconds=SLOW, free_cores=-5.0)
    assert (overloaded.backend, overloaded.num_workers) == ("thread", 4)
    assert choose_backend(cheetah, 64, num_workers=1, step_seconds=SLOW).backend == "sync"
    assert choose_backend(cheetah, 3, step_seconds=SLOW, free_cores=4.0).num_workers == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_auto_num_workers_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="num_workers must be a positive int"):
        choose_backend(get_engine_class(CHEETAH), 8, num_workers=bad)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="'sync', 'thread', 'process' or 'auto', got 'fast'"):
        make_vec("metarl/Navigation2D-v0", 2, backend="fast")


def test_measured_step_cost_is_positive_and_scales_with_the_batch():
    one = auto_backend.measure_step_seconds(get_engine_class(CHEETAH), 1, {})
    assert one > 0 and np.isfinite(one)


def _rollout(vec, steps=12, seed=3):
    obs, _ = vec.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (vec.num_envs, *vec.single_action_space.shape))
        obs, reward, term, trunc, infos = vec.step(actions.astype(np.float32))
        out += [obs, reward, term, trunc, infos["reward_forward"]]
    return out


@pytest.mark.parametrize("free", [None, 4.0, 1.0], ids=["measured", "quiet", "busy"])
def test_auto_gives_the_same_rollouts_as_sync(monkeypatch, four_cores, free):
    if free is not None:  # force the process (quiet) and thread (busy) branches
        monkeypatch.setattr(auto_backend, "measure_step_seconds", lambda *a: SLOW)
        monkeypatch.setattr(auto_backend, "_free_cores", lambda cores: free)
    tasks = envs.get_task_distribution(CHEETAH).sample(5, np.random.default_rng(1))
    sync = make_vec(CHEETAH, 5, tasks=tasks, horizon=5)
    auto = make_vec(
        CHEETAH, 5, tasks=tasks, horizon=5, backend="auto", num_workers=2, start_method="fork"
    )
    try:
        assert auto.backend in ("sync", "thread", "process")
        assert auto.backend_choice is not None and auto.backend_choice.backend == auto.backend
        if free is not None:
            assert auto.backend == ("process" if free >= 2 else "thread")
        for x, y in zip(_rollout(sync), _rollout(auto), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        sync.close()
        auto.close()


def test_a_process_backend_whose_waits_all_block_gives_the_same_rollouts(monkeypatch):
    """Spin budget 0 (every wait blocks in the pipe), and a machine that looks busy."""
    tasks = [CounterTask(0.1 * i, limit=1.5) for i in range(5)]
    kwargs = {"engine_kwargs": {"start_noise": 1.0}, "horizon": 4, "tasks": tasks}
    sync = TaskVectorEnv(CounterEngine, 5, **kwargs)
    process = {"backend": "process", "start_method": "fork", **kwargs}
    with monkeypatch.context() as patch:
        patch.setattr("envs.vector.ProcessEngine", functools.partial(ProcessEngine, spin_seconds=0))
        no_spin = TaskVectorEnv(CounterEngine, 5, num_workers=2, **process)
    monkeypatch.setattr(AdaptiveSpin, "busy", lambda self: True)
    busy = TaskVectorEnv(CounterEngine, 5, num_workers=3, step_in_parent=True, **process)
    try:
        ref = _counter_rollout(sync)
        for vec in (no_spin, busy):
            for x, y in zip(ref, _counter_rollout(vec), strict=True):
                np.testing.assert_array_equal(x, y)
            assert vec.engine._parent_spin.spins == 0
    finally:
        no_spin.close()
        busy.close()


def _counter_rollout(vec, steps=9):
    obs, _ = vec.reset(seed=0)
    out = [obs]
    for t in range(steps):
        obs, reward, term, trunc, _ = vec.step(np.full((5, 1), 0.1 * (t % 3), dtype=np.float32))
        out += [obs, reward, term, trunc]
    return out


def test_adaptive_spin_backs_off_after_failed_spins_and_recovers_after_a_hit(monkeypatch):
    monkeypatch.setattr(AdaptiveSpin, "busy", lambda self: False)
    reader, writer = mp.Pipe(duplex=False)
    spin = AdaptiveSpin(1e-4)
    try:
        # an empty pipe: spin, fail; block once; spin, fail; block twice; spin, fail ...
        spun = []
        for _ in range(7):
            before = spin.spins
            assert not spin.poll(reader.poll)
            spun.append(spin.spins > before)
        assert spun == [True, False, True, False, False, True, False]
        # waits while backed off block without spinning even when data is there
        writer.send("x")
        results = [spin.poll(reader.poll) for _ in range(4)]
        assert results == [False, False, False, True]  # the 4th wait spins and finds it
        assert (spin.spins, spin.hits) == (4, 1)
        assert spin.poll(reader.poll)  # after a hit, the next wait spins again
    finally:
        reader.close()
        writer.close()


def test_busy_machine_or_lost_cpu_time_blocks_every_wait(monkeypatch):
    reader, writer = mp.Pipe(duplex=False)
    writer.send("x")
    try:
        spin = AdaptiveSpin(1e-4)
        monkeypatch.setattr("envs.spin_wait.runnable_tasks", lambda: 1000.0)
        assert spin.busy() and not spin.poll(reader.poll) and spin.spins == 0
        spin = AdaptiveSpin(1e-4)
        monkeypatch.setattr("envs.spin_wait.runnable_tasks", lambda: 0.0)
        assert not spin.busy() and spin.poll(reader.poll)
        spin.cpu_share = 0.5  # this side got half the wall time of its recent work
        assert spin.busy() and not spin.poll(reader.poll)
        assert spin.work(lambda: 7) == 7
        with pytest.raises(ValueError, match="spin_seconds must be >= 0"):
            AdaptiveSpin(-1.0)
    finally:
        reader.close()
        writer.close()


def test_one_command_in_four_is_timed_for_the_cpu_share():
    # a command that sleeps got ~none of its wall time on the CPU: only the timed ones (the
    # first, fifth, ...) pull the running share down, each by a tenth of the way
    spin = AdaptiveSpin(1e-4)
    for _ in range(8):
        assert spin.work(lambda: time.sleep(0.002)) is None
    assert spin.cpu_share == pytest.approx(0.81, abs=0.01)
    assert AdaptiveSpin(0.0).work(lambda: 7) == 7  # no spin: nothing timed

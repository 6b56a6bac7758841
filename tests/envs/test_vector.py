"""The vectorized task env: autoreset modes, horizons, backends agree, workers fail loudly."""

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from envs.process_engine import ProcessEngine
from envs.process_worker import _CMD_STEP_AUTORESET, _PACKED
from envs.vector import TaskVectorEnv, WorkerError
from tests.helpers.counting_env import CounterEngine, CounterTask, MixedExtrasEngine

pytestmark = pytest.mark.timeout(60)


def _vec(n=4, start_noise=1.0, **kwargs):
    return TaskVectorEnv(CounterEngine, n, engine_kwargs={"start_noise": start_noise}, **kwargs)


def _rollout(vec, steps, seed=0):
    obs, _ = vec.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        actions = np.full((vec.num_envs, 1), 0.1 * (t % 3), dtype=np.float32)
        obs, reward, term, trunc, infos = vec.step(actions)
        # every info in its order: the process backend builds them from rows, sync from dicts
        out += [obs, reward, term, trunc, np.array(list(infos)), *infos.values()]
    return out


def test_reset_gives_each_sub_env_its_own_task_and_seed():
    tasks = [CounterTask(0.1 * i) for i in range(4)]
    vec = _vec(tasks=tasks, start_noise=1.0)
    obs, _ = vec.reset(seed=7)
    expected = [np.random.default_rng(7 + i).uniform() for i in range(4)]
    np.testing.assert_allclose(obs[:, 0], expected)
    np.testing.assert_allclose(obs[:, 1], [0.0, 0.1, 0.2, 0.3])
    assert vec.tasks == tasks
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP


def test_step_values_and_reward_terms_sum_to_reward():
    vec = _vec(n=2, tasks=[CounterTask(0.5), CounterTask(-0.5)], start_noise=0.0)
    vec.reset(seed=0)
    obs, reward, term, trunc, infos = vec.step(np.array([[0.25], [0.0]], dtype=np.float32))
    np.testing.assert_allclose(obs[:, 0], [0.75, -0.5])
    np.testing.assert_allclose(reward, [0.75, -0.5])
    np.testing.assert_allclose(infos["reward_half_a"] + infos["reward_half_b"], reward)
    assert infos["_reward_half_a"].all()
    assert not term.any() and not trunc.any()


def test_each_info_mask_is_a_fresh_array_of_the_callers():
    # the masks of one step are rows of one block; writing to one must not reach another key's
    # mask, the next step's, or the env
    vec = _vec(n=3)
    vec.reset(seed=0)
    _, _, _, _, infos = vec.step(np.zeros((3, 1), dtype=np.float32))
    masks = [key for key in infos if key.startswith("_")]
    assert len(masks) >= 2
    infos[masks[0]][:] = False
    assert infos[masks[1]].all()
    _, _, _, _, later = vec.step(np.zeros((3, 1), dtype=np.float32))
    assert all(later[key].all() and later[key].shape == (3,) for key in masks)


def test_horizon_truncates_and_same_step_autoreset_returns_final_obs():
    vec = _vec(n=2, tasks=[CounterTask(1.0), CounterTask(1.0)], start_noise=0.0, horizon=3)
    vec.reset(seed=0)
    zeros = np.zeros((2, 1), dtype=np.float32)
    for _ in range(2):
        _, _, _, trunc, infos = vec.step(zeros)
        assert not trunc.any() and "final_obs" not in infos
    obs, _, term, trunc, infos = vec.step(zeros)
    assert trunc.all() and not term.any()
    np.testing.assert_allclose(infos["final_obs"][:, 0], [3.0, 3.0])
    np.testing.assert_allclose(obs[:, 0], [0.0, 0.0])  # already reset, same step
    obs, *_ = vec.step(zeros)
    np.testing.assert_allclose(obs[:, 0], [1.0, 1.0])


_F, _T = False, True
# per autoreset mode: the caller's partial reset after each step (None: none), and the truncation
# flags each step returns (horizon 3: an episode is truncated by its third step, counted from the
# sub-env's own last reset, whoever made it)
_TRUNCATION_SCHEDULES = {
    "disabled": (
        [[_T, _F, _F], None, [_F, _T, _T], [_T, _F, _F], None, None],
        [
            [_F, _F, _F],  # 1, 1, 1 steps; the caller restarts sub-env 0
            [_F, _F, _F],  # 1, 2, 2
            [_F, _T, _T],  # 2, 3, 3; the caller restarts sub-envs 1 and 2
            [_T, _F, _F],  # 3, 1, 1; the caller restarts sub-env 0
            [_F, _F, _F],  # 1, 2, 2
            [_F, _T, _T],  # 2, 3, 3
        ],
    ),
    "same_step": (  # a truncated sub-env restarts within its step
        [[_T, _F, _F]] + [None] * 7,
        [[_F, _F, _F], [_F, _F, _F], [_F, _T, _T], [_T, _F, _F], [_F, _F, _F], [_F, _T, _T]]
        + [[_T, _F, _F], [_F, _F, _F]],
    ),
    "next_step": (  # ... within the step after it (that step truncates nothing)
        [[_T, _F, _F]] + [None] * 7,
        [[_F, _F, _F], [_F, _F, _F], [_F, _T, _T], [_T, _F, _F], [_F, _F, _F], [_F, _F, _F]]
        + [[_F, _T, _T], [_T, _F, _F]],
    ),
}


@pytest.mark.parametrize("mode", sorted(_TRUNCATION_SCHEDULES))
@pytest.mark.parametrize("backend", ["sync", "process"])
def test_truncation_counts_each_sub_envs_steps_since_its_own_reset(backend, mode):
    restarts, expected = _TRUNCATION_SCHEDULES[mode]
    vec = _vec(
        n=3,
        tasks=[CounterTask(0.0)] * 3,
        horizon=3,
        autoreset_mode=mode,
        backend=backend,
        start_method="fork",
    )
    try:
        vec.reset(seed=0)
        zeros = np.zeros((3, 1), dtype=np.float32)
        schedule = []
        for mask in restarts:
            schedule.append(vec.step(zeros)[3].tolist())
            if mask is not None:
                vec.reset(options={"reset_mask": np.array(mask)})
        assert schedule == expected
    finally:
        vec.close()


def test_termination_resets_only_the_finished_sub_env():
    tasks = [CounterTask(1.0, limit=2.0), CounterTask(1.0)]
    vec = _vec(n=2, tasks=tasks, start_noise=0.0)
    vec.reset(seed=0)
    zeros = np.zeros((2, 1), dtype=np.float32)
    vec.step(zeros)
    obs, _, term, _, infos = vec.step(zeros)
    assert term.tolist() == [True, False]
    assert infos["_final_obs"].tolist() == [True, False]
    np.testing.assert_allclose(obs[:, 0], [0.0, 2.0])


def test_next_step_autoreset_resets_on_the_following_step():
    vec = _vec(
        n=1, tasks=[CounterTask(1.0)], start_noise=0.0, horizon=2, autoreset_mode="next_step"
    )
    vec.reset(seed=0)
    zeros = np.zeros((1, 1), dtype=np.float32)
    vec.step(zeros)
    obs, _, _, trunc, _ = vec.step(zeros)
    assert trunc[0] and obs[0, 0] == 2.0
    obs, reward, term, trunc, _ = vec.step(zeros)
    assert obs[0, 0] == 0.0 and reward[0] == 0.0 and not term[0] and not trunc[0]


def test_disabled_autoreset_requires_masked_reset():
    vec = _vec(
        n=2,
        tasks=[CounterTask(1.0), CounterTask(0.0)],
        start_noise=0.0,
        horizon=1,
        autoreset_mode="disabled",
    )
    vec.reset(seed=0)
    zeros = np.zeros((2, 1), dtype=np.float32)
    _, _, _, trunc, _ = vec.step(zeros)
    assert trunc.all()
    with pytest.raises(RuntimeError, match="autoreset disabled"):
        vec.step(zeros)
    obs, _ = vec.reset(options={"reset_mask": np.array([True, True])})
    np.testing.assert_allclose(obs[:, 0], [0.0, 0.0])
    vec.step(zeros)


def test_set_tasks_validates_and_takes_effect_at_reset():
    vec = _vec(n=2)
    with pytest.raises(ValueError, match="'drift'=5.0 is outside the allowed range"):
        vec.set_tasks([CounterTask(0.0), CounterTask(5.0)])
    with pytest.raises(ValueError, match="expects 2 tasks"):
        vec.set_tasks([CounterTask(0.0)])
    obs, _ = vec.reset(seed=0, options={"tasks": [CounterTask(0.2), CounterTask(0.3)]})
    np.testing.assert_allclose(obs[:, 1], [0.2, 0.3])


def test_untasked_sub_envs_sample_their_own_task_deterministically():
    a, b = _vec(n=3), _vec(n=3)
    a.reset(seed=11)
    b.reset(seed=11)
    assert a.tasks == b.tasks and len(set(a.tasks)) == 3


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="backend must be"):
        _vec(backend="threads")
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        _vec(autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="horizon must be"):
        _vec(horizon=0)
    vec = _vec(n=2)
    with pytest.raises(RuntimeError, match="call reset"):
        vec.step(np.zeros((2, 1)))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 1\)"):
        vec.step(np.zeros((3, 1)))


@pytest.mark.parametrize(
    ("mode", "workers", "in_parent"),
    [
        ("same_step", 2, True),
        ("next_step", 2, True),
        ("same_step", 3, False),
        ("next_step", 3, True),
    ],
)
def test_process_backend_matches_sync_backend(mode, workers, in_parent):
    tasks = [CounterTask(0.1 * i, limit=1.5) for i in range(5)]
    sync = _vec(n=5, tasks=tasks, horizon=4, autoreset_mode=mode)
    proc = _vec(
        n=5,
        tasks=tasks,
        horizon=4,
        autoreset_mode=mode,
        backend="process",
        num_workers=workers,
        start_method="fork",
        step_in_parent=in_parent,
    )
    assert len(proc.engine._procs) == (workers - 1 if in_parent else workers)
    try:
        for x, y in zip(_rollout(sync, 9), _rollout(proc, 9), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        proc.close()


def test_process_backend_returns_every_kind_of_info_as_sync_does():
    """Float64 terms and extras travel as rows of one shared block; other extras apart."""
    tasks = [CounterTask(0.1 * i) for i in range(5)]
    kwargs = {"engine_kwargs": {"start_noise": 1.0}, "horizon": 4}
    sync = TaskVectorEnv(MixedExtrasEngine, 5, tasks=tasks, **kwargs)
    proc = TaskVectorEnv(
        MixedExtrasEngine, 5, tasks=tasks, backend="process", num_workers=2, **kwargs
    )
    assert proc.engine._packed == ["reward_half_a", "reward_half_b", "position"]
    assert proc.engine.packed_info_keys is None  # an extra apart: the general path
    try:
        sync.reset(seed=0)
        proc.reset(seed=0)
        kept = []
        for t in range(6):
            actions = np.full((5, 1), 0.1 * t, dtype=np.float32)
            *_, infos = sync.step(actions)
            *_, proc_infos = proc.step(actions)
            assert sorted(infos) == sorted(proc_infos)
            for key, value in infos.items():
                np.testing.assert_array_equal(proc_infos[key], value, err_msg=key)
                assert proc_infos[key].dtype == value.dtype
            kept.append((infos, proc_infos))
        # what a step returned is the caller's: later steps do not write into it
        for infos, proc_infos in kept:
            for key, value in infos.items():
                np.testing.assert_array_equal(proc_infos[key], value, err_msg=key)
    finally:
        proc.close()


def test_process_worker_exception_surfaces_quickly():
    tasks = [CounterTask(0.0), CounterTask(0.0, fail_at_step=2)]
    vec = _vec(n=2, tasks=tasks, backend="process", num_workers=2, start_method="fork")
    vec.reset(seed=0)
    vec.step(np.zeros((2, 1), dtype=np.float32))
    with pytest.raises(WorkerError, match="failed on purpose"):
        vec.step(np.zeros((2, 1), dtype=np.float32))
    vec.close()


@pytest.mark.timeout(120)  # a hang guard, not a timing claim: a dead worker must not block
def test_process_worker_death_surfaces_as_an_error_and_close_releases_everything():
    tasks = [CounterTask(0.0), CounterTask(0.0, fail_at_step=1, crash=True)]
    vec = _vec(n=2, tasks=tasks, backend="process", num_workers=2, start_method="fork")
    vec.reset(seed=0)
    procs = list(vec.engine._procs)
    names = [block.name for block in vec.engine._blocks.values()]
    with pytest.raises(WorkerError, match=r"died with exit code 3|closed its pipe"):
        vec.step(np.zeros((2, 1), dtype=np.float32))
    vec.close()
    assert not any(p.is_alive() for p in procs)
    from multiprocessing import shared_memory

    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_process_backend_with_spawn_starts_and_closes():
    vec = _vec(n=3, tasks=[CounterTask(0.1)] * 3, backend="process", num_workers=2)
    obs, _ = vec.reset(seed=3)
    assert obs.shape == (3, 2)
    procs = list(vec.engine._procs)
    vec.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(ValueError, match="num_workers=4 exceeds num_envs=3"):
        _vec(n=3, backend="process", num_workers=4)


class _CountingPipe:
    """The parent's end of a worker pipe, counting what goes through it."""

    def __init__(self, conn):
        self.conn, self.sent, self.received = conn, 0, 0

    def send(self, obj):
        self.sent += 1
        self.conn.send(obj)

    def recv(self):
        self.received += 1
        return self.conn.recv()

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_process_step_exchanges_no_pipe_message_and_other_commands_do():
    # the lockstep loop hands over through shared memory and semaphores only; a step through
    # the pipes would pickle a message each way, the cost this design removes
    tasks = [CounterTask(0.1 * i) for i in range(6)]
    sync = _vec(n=6, tasks=tasks, horizon=5)
    vec = _vec(n=6, tasks=tasks, horizon=5, backend="process", num_workers=3, start_method="fork")
    pipes = [_CountingPipe(conn) for conn in vec.engine._conns]
    vec.engine._conns = pipes
    try:
        vec.reset(seed=0)
        sync.reset(seed=0)
        after_reset = [(p.sent, p.received) for p in pipes]
        assert all(sent >= 1 and received >= 1 for sent, received in after_reset)
        for t in range(4):  # no episode ends: steps only, no autoreset
            actions = np.full((6, 1), 0.1 * t, dtype=np.float32)
            for x, y in zip(vec.step(actions)[:3], sync.step(actions)[:3], strict=True):
                np.testing.assert_array_equal(x, y)
        assert [(p.sent, p.received) for p in pipes] == after_reset
    finally:
        vec.engine._conns = [p.conn for p in pipes]
        vec.close()


class _CountingSemaphore:
    """A worker's ``go`` semaphore, counting the commands handed over through it.

    ``autoresets``: how many of them were steps that also reset ended episodes.
    """

    def __init__(self, sem, ctl_row):
        self.sem, self.ctl_row, self.released, self.autoresets = sem, ctl_row, 0, 0

    def release(self):
        self.released += 1
        self.autoresets += int(self.ctl_row[0]) & 0xFF == _CMD_STEP_AUTORESET
        self.sem.release()


@pytest.mark.parametrize("terminating", [True, False])
def test_the_resets_of_ended_episodes_take_no_pipe_message_and_no_second_handover(terminating):
    # Ant, Hopper and Walker2d episodes end early, so resets of a few sub-envs come in many
    # steps: once an episode has terminated, each slice resets its own ended sub-envs right
    # after stepping them, within the step's one handover (shared memory and the control word,
    # no pipe message); before that, a reset is a second handover (through the reset mask).
    # Episodes that only end at the horizon (HalfCheetah) reset within those steps' handover.
    limits = [0.4 + 0.1 * i if terminating else 1e9 for i in range(6)]
    tasks = [CounterTask(0.1 * i, limit=limit) for i, limit in enumerate(limits)]
    sync = _vec(n=6, tasks=tasks, horizon=5)
    vec = _vec(n=6, tasks=tasks, horizon=5, backend="process", num_workers=3, start_method="fork")
    vec.reset(seed=0)
    sync.reset(seed=0)
    pipes = [_CountingPipe(conn) for conn in vec.engine._conns]
    engine = vec.engine
    gos = [_CountingSemaphore(go, row) for go, row in zip(engine._go, engine._ctl, strict=True)]
    vec.engine._conns, vec.engine._go = pipes, gos
    try:
        ended, steps_after = 0, (None if terminating else 0)
        for t in range(12):  # terminations at different steps, and the horizon twice
            actions = np.full((6, 1), 0.05 * (t % 3), dtype=np.float32)
            ours, theirs = vec.step(actions), sync.step(actions)
            for x, y in zip(ours[:4], theirs[:4], strict=True):
                np.testing.assert_array_equal(x, y)
            assert ("final_obs" in ours[4]) == ("final_obs" in theirs[4])
            for key in ("final_obs", "_final_obs"):
                if key in theirs[4]:
                    np.testing.assert_array_equal(ours[4][key], theirs[4][key])
            ended += int((ours[2] | ours[3]).sum())
            if steps_after is not None:
                steps_after += 1
            elif ours[2].any():  # the first termination: count the handovers from here
                steps_after = 0
                for go in gos:
                    go.released = 0
        assert ended > 6  # the loop did reset sub-envs (at the horizon, twice, at least)
        assert all((p.sent, p.received) == (0, 0) for p in pipes)
        assert steps_after is not None and steps_after >= 8
        # one handover a step (with the resets as second handovers: 19-22 per worker here)
        assert [go.released for go in gos] == [steps_after] * 2
        # the slices test for ended episodes only where one may end: after a termination, or
        # at the horizon (steps 5 and 10 of 12) in episodes that never terminate
        assert [go.autoresets for go in gos] == [steps_after if terminating else 2] * 2
        mask = np.array([True, False, False, True, True, False])
        ours_obs, _ = vec.reset(options={"reset_mask": mask})  # a partial reset by the caller
        sync_obs, _ = sync.reset(options={"reset_mask": mask})
        np.testing.assert_array_equal(ours_obs, sync_obs)
    finally:
        vec.engine._conns, vec.engine._go = [p.conn for p in pipes], [go.sem for go in gos]
        vec.close()


def test_process_reset_of_repeated_or_bad_indices_acts_as_one_process():
    engines = [CounterEngine(4), ProcessEngine(CounterEngine, 4, 2, start_method="fork")]
    try:
        for engine in engines:
            engine.seed([0, 1, 2, 3])
            engine.ensure_tasks(np.arange(4))
            engine.reset(np.arange(4))
        # a repeated index resets (and draws its start) twice, as a loop in one process does
        first, second = (engine.reset(np.array([3, 1, 3])) for engine in engines)
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(
            engines[0].reset(np.arange(4)), engines[1].reset(np.arange(4))
        )
        with pytest.raises(ValueError, match=r"indices must be in \[0, 4\), got \[-1\]"):
            engines[1].reset(np.array([-1]))
        with pytest.raises(ValueError, match=r"indices must be in \[0, 4\), got \[4\]"):
            engines[1].reset(np.array([4]))
    finally:
        engines[1].close()
    with pytest.raises(RuntimeError, match="the process engine is closed"):
        engines[1].reset(np.arange(4))


def test_step_rows_is_the_step_with_its_terms_and_extras_as_fresh_rows():
    """What the vector env steps the process backend with: step and step_autoreset's values."""
    tasks = [CounterTask(0.1 * i, limit=0.3) for i in range(4)]
    engines = [ProcessEngine(CounterEngine, 4, 2, start_method="fork") for _ in range(2)]
    try:
        for engine in engines:
            engine.seed([0, 1, 2, 3])
            engine.set_tasks(tasks)
            engine.reset(np.arange(4))
        plain, rows = engines
        assert rows.packed_info_keys == ("reward_half_a", "reward_half_b", "position")
        truncated = np.array([False, True, False, False])
        for t in range(4):  # plain steps, then steps that reset the ended sub-envs in the step
            actions = np.full((4, 1), 0.1 * t, dtype=np.float32)
            cut = truncated if t >= 2 else None
            if cut is None:
                step, final = plain.step(actions), None
            else:
                step, final = plain.step_autoreset(actions, cut)
            obs, reward, terminated, values, final_rows = rows.step_rows(actions, cut)
            for x, y in [(step.obs, obs), (step.reward, reward), (step.terminated, terminated)]:
                np.testing.assert_array_equal(x, y)
            assert len(values) == 3
            for x, y in zip({**step.reward_terms, **step.extras}.values(), values, strict=True):
                np.testing.assert_array_equal(x, y)
                assert not np.shares_memory(y, rows._arrays[_PACKED])  # the caller's own
            if final is None:
                assert final_rows is None
            else:
                np.testing.assert_array_equal(
                    final[truncated | step.terminated], final_rows[truncated | terminated]
                )
    finally:
        for engine in engines:
            engine.close()
    mixed = ProcessEngine(MixedExtrasEngine, 4, 2, start_method="fork")
    try:
        with pytest.raises(ValueError, match="step_rows: a reward term or extra"):
            mixed.step_rows(np.zeros((4, 1), dtype=np.float32))
    finally:
        mixed.close()


@pytest.mark.timeout(60)  # a reply larger than a pipe's buffer must not deadlock the handshake
def test_a_reply_larger_than_the_pipe_buffer_arrives_whole():
    n = 30_000  # ensure_tasks returns every task of the worker's slice: ~1 MB pickled
    vec = _vec(n=n, backend="process", num_workers=2, start_method="fork")
    try:
        vec.reset(seed=0)
        assert all(task is not None for task in vec.engine.tasks)
        assert len({task.drift for task in vec.engine.tasks[n // 2 :]}) == n - n // 2
    finally:
        vec.close()


@pytest.mark.timeout(60)
def test_process_workers_exit_when_their_parent_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from envs.vector import TaskVectorEnv\n"
        "from tests.helpers.counting_env import CounterEngine\n"
        "if __name__ == '__main__':\n"
        "    vec = TaskVectorEnv(CounterEngine, 4, backend='process', num_workers=3)\n"
        "    vec.reset(seed=0)\n"
        "    print(*vec.engine.worker_pids, flush=True)\n"
        "    time.sleep(60)\n"
    )
    root = str(Path(__file__).parents[2])
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**__import__("os").environ, "PYTHONPATH": root},
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
    proc.wait()
    deadline = time.monotonic() + 10.0
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive(pid)]
    assert alive == [], "orphaned workers kept running after their parent was killed"


def _alive(pid):
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_an_error_in_the_parents_slice_raises_it_and_keeps_the_workers_in_step():
    # sub-env 0 is in the slice this process steps; its error is the engine's own exception
    tasks = [CounterTask(0.0, fail_at_step=2), CounterTask(0.0)]
    vec = _vec(n=2, tasks=tasks, backend="process", num_workers=2, start_method="fork")
    vec.reset(seed=0)
    vec.step(np.zeros((2, 1), dtype=np.float32))
    with pytest.raises(RuntimeError, match="failed on purpose"):
        vec.step(np.zeros((2, 1), dtype=np.float32))
    # the worker's reply was collected, so the pipes are still in step: the next call works
    vec.set_tasks([CounterTask(0.0), CounterTask(0.2)])
    obs, _ = vec.reset(seed=0)
    assert obs[1, 1] == pytest.approx(0.2)
    procs = list(vec.engine._procs)
    vec.close()
    assert not any(p.is_alive() for p in procs)


def test_one_slice_in_the_parent_needs_no_worker_process():
    tasks = [CounterTask(0.1 * i) for i in range(3)]
    sync = _vec(n=3, tasks=tasks, horizon=4)
    proc = _vec(n=3, tasks=tasks, horizon=4, backend="process", num_workers=1)
    assert proc.engine._procs == []
    try:
        for x, y in zip(_rollout(sync, 6), _rollout(proc, 6), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        proc.close()


@pytest.fixture
def sync_and_process():
    """``make(env_id)``: a sync and a process vector env of 4 sub-envs, reset with seed 0."""
    from envs.vector import make_vec

    made = []

    def make(env_id):
        pair = make_vec(env_id, 4), make_vec(env_id, 4, backend="process", start_method="fork")
        made.extend(pair)
        for vec in pair:
            vec.reset(seed=0)
        return pair

    yield make
    for vec in made:
        vec.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_process_backend_steps_actions_in_the_dtype_sync_steps_them(sync_and_process, dtype):
    # Navigation2D's action space is float32, and its step clips the actions in the dtype they
    # come in (a float32 batch against float32 bounds): float64 actions must not be rounded to
    # float32 on the way to a slice, nor float32 ones clipped in float64 there
    sync, vec = sync_and_process("metarl/Navigation2D-v0")
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.uniform(-0.3, 0.3, (4, 2)).astype(dtype)  # beyond the 0.1 bound too
        if dtype == np.float64:
            assert not np.array_equal(actions, actions.astype(np.float32))
        ours, theirs = vec.step(actions), sync.step(actions)
        np.testing.assert_array_equal(ours[1], theirs[1])
        np.testing.assert_array_equal(ours[4]["distance"], theirs[4]["distance"])


def test_process_step_arrays_are_the_callers_and_equal_sync(sync_and_process):
    # the process engine's outputs live in shared memory that every step rewrites: what the
    # vector env returns must be copies, untouched by later steps
    sync, vec = sync_and_process("metarl/HalfCheetahVel-v0")
    assert vec.engine.packed_info_keys is not None  # every term and extra a packed row
    huge = np.full((4, 6), 1e308)  # finite (MuJoCo clamps the controls)
    huge[1] = -1e308
    actions = [huge, np.full((4, 6), 0.3, dtype=np.float32)]

    def named(step):  # the four arrays, then every info in the order sync gives them
        arrays = zip(("obs", "reward", "terminated", "truncated"), step[:4], strict=True)
        return [*arrays, *step[4].items()]

    kept = [named(vec.step(a)) for a in actions]
    frozen = [[(key, np.copy(x)) for key, x in step] for step in kept]
    theirs = [named(sync.step(a)) for a in actions]
    for _ in range(3):
        vec.step(np.zeros((4, 6)))
    for ours, copy, twin in zip(kept, frozen, theirs, strict=True):
        assert len(ours) == 4 + 8  # 4 infos, each with its mask
        assert [k for k, _ in ours] == [k for k, _ in copy] == [k for k, _ in twin]
        for (_, x), (_, y), (_, z) in zip(ours, copy, twin, strict=True):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)

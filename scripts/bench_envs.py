"""Env-stepping throughput of metarl's vector env against raw MuJoCo and gymnasium, in one run.

For HalfCheetahVel and AntDir at 64 envs with random actions it measures, on this machine and in
this process: raw ``mujoco.mj_step`` over 64 ``MjData`` of the same model (the floor), gymnasium's
``SyncVectorEnv`` and ``AsyncVectorEnv`` of the plain v5 env, raw ``mj_step`` split over
processes both free-running (the ceiling of any multi-process stepper) and in lockstep (every
step waits for all slices, as a vector env's ``step`` must), and metarl's vector env with the
``sync``, ``thread`` and ``process`` backends (the latter both with this process stepping one
slice, the default, and with only worker processes stepping) and ``auto``; then the same metarl
backends (and the bare lockstep loop) again with a busy-loop neighbour: a child process that spins
on a core for the whole measurement, as another job on the machine would; then Navigation2D at
1,000 envs;
then, where the ``metaworld`` extra is installed, Meta-World ML1 reach-v3: metarl's vector env
(``sync`` and ``process``) against a hand loop over the same Meta-World envs with the same tasks
(Meta-World computes its reward in Python per env, so the aim is to lose nothing to it). The
machine's load average and its runnable tasks (ours included) are printed before and after each
table.

The machines this runs on are shared and noisy, so every row is timed in ``--rounds`` short
windows interleaved with the other rows' windows: a burst of outside load hits all rows alike.
The markdown table gives the best and the median window per row and the ratios of both, and a
last column with the ratio to one reference (the lockstep loop on a quiet machine, our sync
backend beside the neighbour) taken window by window within each round, median over rounds
(:func:`paired_ratio`): the VM's speed drifts over minutes, and a pair of windows seconds apart
shares the drift that the ratio of two medians does not. The JSON keeps every window. Before each
table the script waits (up to 10 s) for the previous table's processes to exit, and makes the
``auto`` row before the others, so that ``auto`` reads the free cores of the machine the table is
about.

Every raw row runs the env's own episodes: ``horizon`` (the metarl env's registered length, 100)
steps from gymnasium v5's reset (``mj_resetData``, reset noise, ``mj_forward``), as the vector
env and gymnasium's rows (truncated at the same horizon) do; a MuJoCo step's cost depends on the
state (contacts), so rows that stepped other episodes would not time the same physics. Before
this, the raw rows ran 1,000-step episodes from the noiseless start and reset only ``mj_resetData``.
On Ant every raw row also calls ``mj_rnePostConstraint`` after each step: the observation and the
contact cost read the contact forces it computes (gymnasium calls it after every step of every
env); before, the Ant raw rows skipped it and timed less physics than the env needs.

``--lockstep-only`` times, per MuJoCo env, only the bare lockstep loop, metarl ``sync`` and
metarl ``process`` on the quiet machine, the same lockstep loop in the tightest Python loop we
know (``raw_stepper(tight=True)``, the loop our engines run), and the bare lockstep loop whose
slices also do the least numpy work an env that returns observations and rewards must do after
the physics (one gather, a reward in five calls: ``raw_stepper(outputs=True)``), which is what a
Python env's outputs cost on this machine with none of our code: with five rows instead of nine,
the same minutes give nearly twice the paired windows of the process-against-lockstep ratio,
whose interval is the figure a long run is for.

    python scripts/bench_envs.py [--seconds 3] [--rounds 6] [--num-envs 64] [--workers 2]
        [--skip-async] [--skip-neighbour] [--neighbour-only] [--lockstep-only]
        [--metaworld-envs 10] [--metaworld-only] [--out bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.registration import env_info
from envs.spin_wait import mean_runnable_tasks, runnable_tasks
from envs.vector import make_vec


class Stepper:
    """One row of the table: a set-up stepper whose rate is measured in short windows."""

    def __init__(self, step: Callable[[int], Any], batch: int, close: Callable[[], None]) -> None:
        self.step, self.batch, self.close = step, batch, close
        self.calls = 0
        self.choice: Any = None  # backend="auto": what it picked
        self.datas: list[Any] = []  # raw rows: the MjData stepped
        self.action_space: Any = None  # raw rows: the v5 env's
        self.outputs: dict[str, np.ndarray] = {}  # raw rows with outputs: the last step's
        for _ in range(3):  # warm-up
            self._one()

    def _one(self) -> None:
        self.step(self.calls)
        self.calls += 1

    def window(self, seconds: float) -> float:
        """Env steps per second over one window of about ``seconds``.

        The window's first step is not timed: a worker idle since the row's last window (other
        rows ran in between) wakes up in it.
        """
        self._one()
        calls, start = 0, time.perf_counter()
        while True:
            self._one()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and calls >= 3:
                return calls * self.batch / elapsed


def _actions(space: Any, n: int, count: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    low, high = space.low, space.high
    return [
        rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype) for _ in range(count)
    ]


# gymnasium v5's reset draws qvel from a normal for these models (uniform for Hopper/Walker2d)
_NORMAL_QVEL_NOISE = ("HalfCheetah-v5", "Ant-v5", "Humanoid-v5")
# the observations of these read the contact forces, which need mj_rnePostConstraint after each
# step (gymnasium calls it after every step of every env; our engines where the outputs read them)
_CONTACT_FORCES = ("Ant-v5", "Humanoid-v5")


def raw_stepper(
    v5_id: str, n: int, horizon: int, seed: int = 0, outputs: bool = False, tight: bool = False
) -> Stepper:
    """Raw ``mj_step`` over ``n`` ``MjData`` of the v5 model, in episodes of ``horizon`` steps.

    Every episode starts as gymnasium v5's reset does (``mj_resetData``, ``qpos + U(-s, s)``,
    ``qvel + s N(0, 1)`` or ``U(-s, s)``, ``mj_forward``); see the module docstring for why.
    Models whose observations read the contact forces (Ant) also get ``mj_rnePostConstraint``
    after each step, as their env must.

    ``outputs``: each step also does the least numpy work an env that returns observations and
    rewards must do after the physics: one ``np.concatenate`` of every ``qpos`` and ``qvel`` into
    an ``[n, nq + nv]`` block and a reward ``v_x - w * sum(a**2)`` (``w``: the v5 env's own
    control weight) in five in-place calls (seven numpy calls per step with the copy of ``x``
    before it; no reward terms, no checks).

    The loop over the ``MjData`` is written as gymnasium's ``MujocoEnv.do_simulation`` steps one
    env (``data.ctrl[:] = action``, ``mj_step(model, data, nstep=frame_skip)``). ``tight``: the
    tightest Python loop we know instead, the one our engines use since fc2003a (the controls'
    views and each action batch's row views made once, ``ctrl[...] = row``, positional
    arguments): the same physics, actions and episodes with less Python around ``mj_step``.
    """
    env = gym.make(v5_id).unwrapped
    model, frame_skip = env.model, env.frame_skip  # type: ignore[attr-defined]  # a MujocoEnv
    scale = float(env._reset_noise_scale)  # type: ignore[attr-defined]
    weight = float(env._ctrl_cost_weight)  # type: ignore[attr-defined]
    init_qpos, init_qvel = env.init_qpos, env.init_qvel  # type: ignore[attr-defined]
    normal, contact_forces = v5_id in _NORMAL_QVEL_NOISE, v5_id in _CONTACT_FORCES
    rng = np.random.default_rng(seed)
    datas = [mujoco.MjData(model) for _ in range(n)]
    acts = _actions(env.action_space, n)

    def reset_all() -> None:
        for d in datas:
            mujoco.mj_resetData(model, d)
            d.qpos[:] = init_qpos + rng.uniform(-scale, scale, model.nq)
            noise = rng.standard_normal(model.nv) if normal else rng.uniform(-1, 1, model.nv)
            d.qvel[:] = init_qvel + scale * noise
            mujoco.mj_forward(model, d)

    reset_all()
    taken = [0]
    block = np.zeros((n, model.nq + model.nv))
    gather = [v for d in datas for v in (d.qpos, d.qvel)]
    flat, x, dt = block.reshape(-1), block[:, 0], model.opt.timestep * frame_skip
    x_before, reward, ctrl = np.zeros(n), np.zeros(n), np.zeros(n)
    np.concatenate(gather, out=flat)
    # tight: the controls' views and each action batch's row views, made once
    controls, rows = [d.ctrl for d in datas], [list(a) for a in acts]
    mj_step, rne = mujoco.mj_step, mujoco.mj_rnePostConstraint

    def step(k: int) -> None:
        a = acts[k % len(acts)]
        if outputs:
            np.copyto(x_before, x)
        if tight and contact_forces:
            for d, control, row in zip(datas, controls, rows[k % len(acts)], strict=True):
                control[...] = row
                mj_step(model, d, frame_skip)
                rne(model, d)
        elif tight:
            for d, control, row in zip(datas, controls, rows[k % len(acts)], strict=True):
                control[...] = row
                mj_step(model, d, frame_skip)
        elif contact_forces:
            for i, d in enumerate(datas):
                d.ctrl[:] = a[i]
                mujoco.mj_step(model, d, nstep=frame_skip)
                mujoco.mj_rnePostConstraint(model, d)
        else:
            for i, d in enumerate(datas):
                d.ctrl[:] = a[i]
                mujoco.mj_step(model, d, nstep=frame_skip)
        if outputs:
            np.concatenate(gather, out=flat)
            np.subtract(x, x_before, out=reward)
            np.divide(reward, dt, out=reward)
            np.einsum("ij,ij->i", a, a, out=ctrl)
            np.multiply(weight, ctrl, out=ctrl)
            np.subtract(reward, ctrl, out=reward)
        taken[0] += 1
        if taken[0] % horizon == 0:
            reset_all()
            if outputs:
                np.concatenate(gather, out=flat)

    stepper = Stepper(step, n, env.close)
    stepper.datas, stepper.action_space = datas, env.action_space
    stepper.outputs = {"obs": block, "reward": reward} if outputs else {}
    return stepper


def _raw_window(args: tuple[str, int, int, float]) -> float:
    v5_id, n, horizon, seconds = args
    stepper = raw_stepper(v5_id, n, horizon)
    try:
        return stepper.window(seconds)
    finally:
        stepper.close()


class RawParallel:
    """Raw ``mj_step`` in ``workers`` processes at once, ``n / workers`` envs each.

    This is the ceiling any multi-process backend can reach on this machine.
    """

    def __init__(self, v5_id: str, n: int, workers: int, horizon: int) -> None:
        import multiprocessing as mp

        self.args = (v5_id, n // workers, horizon)
        self.workers = workers
        self.pool = mp.get_context("spawn").Pool(workers)

    def window(self, seconds: float) -> float:
        """Summed env steps per second of the processes over one window."""
        jobs = [(*self.args, seconds)] * self.workers
        return float(sum(self.pool.map(_raw_window, jobs)))

    def close(self) -> None:
        """Stops the pool."""
        self.pool.close()
        self.pool.join()


def _spin_until(
    done: Any, spin_seconds: float = 0.002, nap: float = 0.0005, max_nap: float = 0.02
) -> None:
    """Polls ``done()`` without sleeping for ``spin_seconds``, then in sleeps from ``nap`` seconds.

    The sleeps double up to ``max_nap``: a lockstep worker idle while the other rows are timed
    would otherwise wake 2,000 times a second, and those wake-ups, counted among the machine's
    runnable tasks, took a core from the row being timed and made its adaptive waits block.
    """
    deadline = time.perf_counter() + spin_seconds
    while not done():
        if time.perf_counter() > deadline:
            time.sleep(nap)
            nap = min(2 * nap, max_nap)


def _lockstep_loop(
    v5_id: str,
    n: int,
    horizon: int,
    flags: np.ndarray,
    index: int,
    outputs: bool = False,
    tight: bool = False,
) -> None:
    stepper = raw_stepper(v5_id, n, horizon, seed=1 + index, outputs=outputs, tight=tight)
    flags[1 + index] = -1  # ready
    done = 0
    while True:
        _spin_until(lambda last=done: flags[0] != last)
        done = int(flags[0])
        if done < 0:
            break
        stepper.step(done)
        flags[1 + index] = done
    stepper.close()


def _lockstep_worker(
    v5_id: str,
    n: int,
    horizon: int,
    flags_name: str,
    index: int,
    outputs: bool = False,
    tight: bool = False,
) -> None:
    """Steps ``n`` raw ``MjData`` per increment of ``flags[0]``; reports in ``flags[1 + index]``."""
    from multiprocessing import shared_memory

    block = shared_memory.SharedMemory(name=flags_name)
    try:
        flags = np.ndarray((block.size // 8,), np.int64, block.buf)
        _lockstep_loop(v5_id, n, horizon, flags, index, outputs, tight)
    finally:
        block.close()


class RawLockstep(Stepper):
    """Raw ``mj_step`` split over this process and ``workers - 1`` worker processes in lockstep.

    Every step waits until all slices are stepped, as any vector env's ``step`` must, and the
    processes hand over through spin-polled counters in shared memory (no pipes, no Python
    engine): the ceiling of a lockstep multi-process vector env on this machine. Against the
    free-running processes of :class:`RawParallel` it shows what the lockstep itself costs when
    the cores' speeds differ from moment to moment.
    """

    def __init__(
        self,
        v5_id: str,
        n: int,
        workers: int,
        horizon: int,
        outputs: bool = False,
        tight: bool = False,
    ) -> None:
        import multiprocessing as mp
        from multiprocessing import shared_memory

        bounds = np.linspace(0, n, workers + 1).round().astype(int)
        sizes = np.diff(bounds).tolist()
        # flags[0]: the step to take (-1: stop); flags[1 + i]: the last step worker i finished
        self.block = shared_memory.SharedMemory(create=True, size=8 * workers)
        self.flags = np.ndarray((workers,), dtype=np.int64, buffer=self.block.buf)
        self.flags[:] = 0
        ctx = mp.get_context("spawn")
        self.procs = [
            ctx.Process(
                target=_lockstep_worker,
                args=(v5_id, size, horizon, self.block.name, i, outputs, tight),
            )
            for i, size in enumerate(sizes[1:])
        ]
        for proc in self.procs:
            proc.start()
        _spin_until(lambda: bool((self.flags[1:] == -1).all()) or not self._alive())
        if not self._alive():
            raise RuntimeError("a lockstep worker failed to start")
        self.local = raw_stepper(v5_id, sizes[0], horizon, outputs=outputs, tight=tight)
        super().__init__(self._step_all, n, self._stop)

    def _alive(self) -> bool:
        return all(proc.is_alive() for proc in self.procs)

    def _step_all(self, k: int) -> None:
        step = k + 1  # workers wait for flags[0] to leave 0
        self.flags[0] = step
        self.local.step(k)
        _spin_until(lambda: bool((self.flags[1:] == step).all()))

    def _stop(self) -> None:
        """Stops the workers and frees the shared counters."""
        self.flags[0] = -1
        for proc in self.procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
        self.local.close()
        del self.flags
        self.block.close()
        self.block.unlink()


def gym_stepper(v5_id: str, n: int, mode: str, horizon: int) -> Stepper:
    """The gymnasium vector env of the plain v5 env, truncating at ``horizon`` as ours does."""
    spec = dataclasses.replace(gym.spec(v5_id), max_episode_steps=horizon)
    vec = gym.make_vec(spec, num_envs=n, vectorization_mode=mode)
    vec.reset(seed=0)
    acts = _actions(vec.single_action_space, n)
    return Stepper(lambda k: vec.step(acts[k % len(acts)]), n, vec.close)


def ours_stepper(
    env_id: str, n: int, backend: str, workers: int, in_parent: bool = True
) -> Stepper:
    kwargs: dict[str, Any] = {}
    if backend == "process":
        kwargs = {"num_workers": workers, "step_in_parent": in_parent}
    elif backend in ("thread", "auto"):
        kwargs = {"num_workers": workers}
    vec = make_vec(env_id, n, backend=backend, **kwargs)
    vec.reset(seed=0)
    acts = _actions(vec.single_action_space, n)
    stepper = Stepper(lambda k: vec.step(acts[k % len(acts)]), n, vec.close)
    stepper.choice = vec.backend_choice
    return stepper


def _auto_note(row: Any) -> str:
    choice = getattr(row, "choice", None)
    if choice is None:
        return ""
    return f"auto picked {choice.backend} ({choice.num_workers}): {choice.reason}"


def _busy_loop(stop: Any) -> None:
    """The neighbour: spins on a core until ``stop`` is set."""
    while not stop.is_set():
        for _ in range(100_000):
            pass


class Neighbour:
    """A child process that keeps one core busy while it is open (another job on the machine)."""

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=_busy_loop, args=(self.stop,), daemon=True)
        self.proc.start()
        time.sleep(1.0)  # started and spinning before anything is measured

    def close(self) -> None:
        """Stops the neighbour."""
        self.stop.set()
        self.proc.join(timeout=5.0)
        if self.proc.is_alive():
            self.proc.kill()


class MetaWorldHandLoop:
    """The reference: ``n`` Meta-World envs stepped in a plain Python loop, reset by hand."""

    def __init__(self, tasks: list[Any]) -> None:
        import metaworld.env_dict

        self.envs = []
        for task in tasks:
            env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[task.env_name]()
            env.set_task(task.to_metaworld())
            env.reset()
            self.envs.append(env)
        self.acts = _actions(self.envs[0].action_space, len(tasks))

    def step(self, k: int) -> None:
        """Steps every env once (resetting those whose episode ended)."""
        actions = self.acts[k % len(self.acts)]
        for env, action in zip(self.envs, actions, strict=True):
            truncated = env.step(action)[3]
            if truncated:
                env.reset()

    def close(self) -> None:
        """Closes the envs."""
        for env in self.envs:
            env.close()


def _vec_step(vec: Any, acts: list[np.ndarray], k: int) -> Any:
    return vec.step(acts[k % len(acts)])


def metaworld_rows(n: int, workers: int) -> dict[str, Stepper]:
    """Hand loop, metarl sync and metarl process over ML1 reach-v3 with the same ``n`` tasks."""
    import envs

    env_id = "metarl/MetaWorldML1-v0"
    tasks = envs.get_task_distribution(env_id).split_tasks("train")[:n]
    hand = MetaWorldHandLoop(tasks)
    rows = {"Meta-World envs, hand loop": Stepper(hand.step, n, hand.close)}
    for backend, w in (("sync", 1), ("process", workers)):
        kwargs: dict[str, Any] = {"num_workers": w} if backend == "process" else {}
        vec = make_vec(env_id, n, tasks=tasks, backend=backend, **kwargs)
        vec.reset(seed=0)
        acts = _actions(vec.single_action_space, n)
        name = "metarl sync" if backend == "sync" else f"metarl process ({w} processes)"
        rows[name] = Stepper(functools.partial(_vec_step, vec, acts), n, vec.close)
    return rows


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return (
        f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min), "
        f"{runnable_tasks():.0f} tasks runnable now"
    )


def measure(rows: dict[str, Any], seconds: float, rounds: int) -> dict[str, list[float]]:
    """Rates of every row in ``rounds`` interleaved windows (noise hits all rows alike)."""
    rates: dict[str, list[float]] = {name: [] for name in rows}
    try:
        for _ in range(rounds):
            for name, row in rows.items():
                rates[name].append(row.window(seconds / rounds))
    finally:
        for row in rows.values():
            row.close()
    return rates


#: Seconds :func:`settle` waits at most by default (``--settle``).
SETTLE_SECONDS = 10.0


def add_settle_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Adds ``--settle SECONDS`` (at most :data:`SETTLE_SECONDS` by default; >= 0, one line else).

    ``what``: where the wait happens, for the help (e.g. "before each table").
    """

    def seconds(text: str) -> float:
        value = float(text)
        if not 0.0 <= value < math.inf:
            message = f"--settle must be a number of seconds >= 0, got {text}"
            raise argparse.ArgumentTypeError(message)
        return value

    parser.add_argument(
        "--settle",
        type=seconds,
        default=SETTLE_SECONDS,
        help=f"most seconds to wait {what} for the machine's runnable tasks to fall to the "
        "script's own (0: no wait; the smoke tests, on a machine busy with other tests)",
    )


def settle(expected: float, timeout: float = SETTLE_SECONDS) -> float:
    """Waits until the machine runs about ``expected`` tasks (ours included); returns the count.

    The rows of the table before (64 gymnasium async workers, a process pool) take a few
    seconds to exit, and ``auto`` reads the runnable tasks when it is made: it should see the
    machine the table is about, not those leftovers. Gives up after ``timeout`` seconds.
    """
    deadline = time.perf_counter() + timeout
    while True:
        count = mean_runnable_tasks(10, 0.02)
        if count <= expected + 0.5 or time.perf_counter() >= deadline:
            return count


def _process_row(w: int) -> str:
    """The label of the process backend's row (this process steps a slice too)."""
    return f"metarl process ({w} processes: this one + {w - 1} workers)"


def _metarl_rows(env_id: str, n: int, w: int, quiet: bool = False) -> dict[str, Stepper]:
    # auto first: it measures the free cores when it is made, before the other rows start workers
    auto = ours_stepper(env_id, n, "auto", w)
    rows = {"metarl sync": ours_stepper(env_id, n, "sync", 1)}
    rows[f"metarl thread ({w} threads in this process)"] = ours_stepper(env_id, n, "thread", w)
    rows[_process_row(w)] = ours_stepper(env_id, n, "process", w)
    if quiet:
        rows[f"metarl process ({w} worker processes, parent waits)"] = ours_stepper(
            env_id, n, "process", w, in_parent=False
        )
    rows[f"metarl auto (at most {w})"] = auto
    return rows


def paired_ratio(rates: dict[str, list[float]], name: str, ref: str) -> float:
    """Median over rounds of ``name``'s window over ``ref``'s window of the same round.

    Both windows of a pair are seconds apart, so the VM's drift over minutes cancels in each
    ratio; the ratio of the two medians instead compares windows up to a whole table apart.
    """
    return float(np.median(round_ratios(rates, name, ref)))


def round_ratios(rates: dict[str, list[float]], name: str, ref: str) -> list[float]:
    """``name``'s window over ``ref``'s window, round by round."""
    return (np.asarray(rates[name]) / np.asarray(rates[ref])).tolist()


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median: a pair of order statistics.

    With ``n`` values, ``[x_(k), x_(n+1-k)]`` (1-based, sorted) covers the population median with
    probability ``1 - 2 P(Binomial(n, 1/2) < k)``; ``k`` is the largest with that at least
    ``level``. None when ``n`` is too small for ``level`` (under 6 values for 95 %).
    """
    x = sorted(values)
    n = len(x)
    below = 0.0  # P(Binomial(n, 1/2) < k), for k = 1, 2, ...
    k = 0
    while k < n // 2:
        below += math.comb(n, k) / 2**n
        if 1 - 2 * below < level:
            break
        k += 1
    return None if k == 0 else (x[k - 1], x[n - k])


def _ref_name(ref: str) -> str:
    names = {"raw mj_step (1 core)": "raw", "gymnasium SyncVectorEnv": "gym sync"}
    return "lockstep" if "lockstep" in ref else names.get(ref, ref)


def _table(
    title: str,
    rows: dict[str, Any],
    seconds: float,
    rounds: int,
    refs: tuple[str, ...],
    paired: str,
) -> dict[str, Any]:
    """Measures ``rows`` interleaved and prints their table with the ratios to each of ``refs``.

    The last column is the ratio to ``paired`` window by window (:func:`paired_ratio`).
    """
    before = _load()
    rates = measure(rows, seconds, rounds)
    best = {k: max(v) for k, v in rates.items()}
    med = {k: float(np.median(v)) for k, v in rates.items()}
    pairs = {k: paired_ratio(rates, k, paired) for k in rates}
    after = _load()
    print(f"\n## {title}, best / median of {rounds} windows\n")
    print(f"Before: {before}; after: {after}.\n")
    heads = " | ".join(f"× {_ref_name(r)}" for r in refs)
    print(f"| stepper | env steps/s (best) | (median) | {heads} | × {_ref_name(paired)}, paired |")
    print("|---|---:|---:|" + "---:|" * (len(refs) + 1))
    for name in rows:
        ratios = " | ".join(
            f"{best[name] / best[ref]:.2f} / {med[name] / med[ref]:.2f}" for ref in refs
        )
        print(f"| {name} | {best[name]:,.0f} | {med[name]:,.0f} | {ratios} | {pairs[name]:.2f} |")
    spread = {k: median_interval(round_ratios(rates, k, paired)) for k in rates if k != paired}
    shown = [  # ours; the JSON keeps every row's
        f"{k.removeprefix('metarl ')} {ci[0]:.2f}-{ci[1]:.2f}"
        for k, ci in spread.items()
        if ci and k.startswith(("metarl ", LEAST_OUTPUTS_ROW, TIGHT_ROW))
    ]
    if shown:
        print(
            f"\nPaired ratios to {_ref_name(paired)}, 95 % interval of the median over the "
            f"{rounds} rounds (order statistics): " + "; ".join(shown) + "."
        )
    notes = [_auto_note(row) for row in rows.values() if _auto_note(row)]
    if notes:
        print("\n" + "; ".join(notes) + ".")
    return {
        "best": best,
        "median": med,
        "paired": {"reference": paired, "ratios": pairs, "interval95": spread},
        "windows": rates,
        "load_before": before,
        "load_after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per row, in all")
    parser.add_argument(
        "--rounds", type=int, default=6, help="interleaved windows per row (best and median)"
    )
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="threads / processes of the thread and process backends",
    )
    parser.add_argument("--nav-envs", type=int, default=1000)
    parser.add_argument("--skip-async", action="store_true", help="skip gymnasium AsyncVectorEnv")
    parser.add_argument(
        "--skip-neighbour", action="store_true", help="skip the busy-loop neighbour tables"
    )
    parser.add_argument(
        "--neighbour-only", action="store_true", help="only the busy-loop neighbour tables"
    )
    parser.add_argument(
        "--lockstep-only",
        action="store_true",
        help="only the lockstep loops (bare, tight, with outputs), metarl sync and metarl "
        "process, quiet (more windows per minute)",
    )
    parser.add_argument(
        "--metaworld-envs", type=int, default=10, help="Meta-World rows' envs (0: skip them)"
    )
    parser.add_argument("--metaworld-only", action="store_true", help="only the Meta-World rows")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    add_settle_option(parser, "before each table")
    args = parser.parse_args()
    if args.lockstep_only and (args.neighbour_only or args.metaworld_only):
        parser.error(
            "--lockstep-only times the quiet MuJoCo tables; drop --neighbour-only and "
            "--metaworld-only"
        )
    n, sec = args.num_envs, args.seconds
    print(
        f"# env benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"mujoco {mujoco.__version__}, gymnasium {gym.__version__}, {n} envs, random actions"
    )
    results: dict[str, dict[str, Any]] = {}
    mujoco_ids = [("metarl/HalfCheetahVel-v0", "HalfCheetah-v5"), ("metarl/AntDir-v0", "Ant-v5")]
    w = args.workers
    lockstep = f"raw mj_step ({w} processes in lockstep)"
    if args.lockstep_only:
        for env_id, v5_id in mujoco_ids:
            h = _horizon(env_id)
            settle(1.0, args.settle)
            rows = {
                lockstep: RawLockstep(v5_id, n, w, h),
                TIGHT.format(w=w): RawLockstep(v5_id, n, w, h, tight=True),
                LEAST_OUTPUTS.format(w=w): RawLockstep(v5_id, n, w, h, outputs=True),
                "metarl sync": ours_stepper(env_id, n, "sync", 1),
                _process_row(w): ours_stepper(env_id, n, "process", w),
            }
            title = f"{env_id} ({v5_id} model), {n} envs, the process backend against lockstep"
            table = results[env_id] = _table(
                title, rows, sec, args.rounds, ("metarl sync",), lockstep
            )
            process, windows = _process_row(w), table["windows"]
            for key, row, what in (
                (
                    "process_over_least_outputs",
                    LEAST_OUTPUTS,
                    "the lockstep loop that also gathers observations and computes a reward",
                ),
                ("process_over_tight", TIGHT, "the tight lockstep loop"),
            ):
                ratio = paired_ratio(windows, process, row.format(w=w))
                ci = median_interval(round_ratios(windows, process, row.format(w=w)))
                table[key] = {"paired": ratio, "interval95": ci}
                shown = f" (95 % interval {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""
                print(f"\nThe process backend against {what}: {ratio:.2f}× paired{shown}.")
        _write(results, args.out)
        return
    for env_id, v5_id in [] if args.metaworld_only else mujoco_ids:
        h = _horizon(env_id)
        if not args.neighbour_only:
            settle(1.0, args.settle)
            rows: dict[str, Any] = {
                "raw mj_step (1 core)": raw_stepper(v5_id, n, h),
                f"raw mj_step ({w} processes, ceiling)": RawParallel(v5_id, n, w, h),
                lockstep: RawLockstep(v5_id, n, w, h),
                "gymnasium SyncVectorEnv": gym_stepper(v5_id, n, "sync", h),
            }
            if not args.skip_async:
                rows["gymnasium AsyncVectorEnv"] = gym_stepper(v5_id, n, "async", h)
            rows.update(_metarl_rows(env_id, n, w, quiet=True))
            title = f"{env_id} ({v5_id} model), {n} envs"
            refs: tuple[str, ...] = (
                "raw mj_step (1 core)",
                "gymnasium SyncVectorEnv",
                "metarl sync",
                lockstep,
            )
            results[env_id] = _table(title, rows, sec, args.rounds, refs, lockstep)
        if not args.skip_neighbour:
            settle(1.0, args.settle)
            neighbour = Neighbour()
            try:
                settle(2.0, args.settle)  # this process and the neighbour
                rows = {lockstep: RawLockstep(v5_id, n, w, h), **_metarl_rows(env_id, n, w)}
                title = f"{env_id}, {n} envs, with a busy-loop neighbour process"
                refs = ("metarl sync", lockstep)
                results[env_id + " (neighbour)"] = _table(
                    title, rows, sec, args.rounds, refs, "metarl sync"
                )
            finally:
                neighbour.close()
    if not (args.metaworld_only or args.neighbour_only):
        nav_stepper = ours_stepper("metarl/Navigation2D-v0", args.nav_envs, "sync", 1)
        nav = max(measure({"nav": nav_stepper}, sec, args.rounds)["nav"])
        results["metarl/Navigation2D-v0"] = {"best": {"metarl sync": nav}}
        print(f"\n## metarl/Navigation2D-v0, {args.nav_envs} envs, sync: {nav:,.0f} env steps/s")
    if args.neighbour_only:
        pass
    elif args.metaworld_envs and importlib.util.find_spec("metaworld") is None:
        print("\n## Meta-World: skipped (pip install 'metarl[metaworld]')")
    elif args.metaworld_envs:
        m = args.metaworld_envs
        before = _load()
        rates = measure(metaworld_rows(m, args.workers), sec, args.rounds)
        best = {k: max(v) for k, v in rates.items()}
        med = {k: float(np.median(v)) for k, v in rates.items()}
        results["metarl/MetaWorldML1-v0"] = {"best": best, "median": med}
        hand = "Meta-World envs, hand loop"
        print(f"\n## Meta-World ML1 reach-v3, {m} envs, best / median of {args.rounds} windows\n")
        print(f"Before: {before}; after: {_load()}.\n")
        print("| stepper | env steps/s (best) | (median) | × hand loop |")
        print("|---|---:|---:|---:|")
        for name in rates:
            ratio = f"{best[name] / best[hand]:.2f} / {med[name] / med[hand]:.2f}"
            print(f"| {name} | {best[name]:,.0f} | {med[name]:,.0f} | {ratio} |")
    _write(results, args.out)


#: The lockstep row whose slices step in the tight loop (``raw_stepper(tight=True)``).
TIGHT_ROW = "raw mj_step, tight loop"
TIGHT = TIGHT_ROW + " ({w} processes in lockstep)"
#: The lockstep row whose slices also gather the observations and compute a reward.
LEAST_OUTPUTS_ROW = "raw mj_step + obs and reward"
LEAST_OUTPUTS = LEAST_OUTPUTS_ROW + ", 7 numpy calls ({w} processes in lockstep)"


def _horizon(env_id: str) -> int:
    """The episode length every row of ``env_id``'s tables runs: the env's registered horizon."""
    horizon = env_info(env_id).max_episode_steps
    if horizon is None:
        raise ValueError(f"{env_id} has no registered horizon; the raw rows need one")
    return horizon


def _write(results: dict[str, dict[str, Any]], out: str | None) -> None:
    """The figures as JSON in ``out`` (every window kept), where one was given."""
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

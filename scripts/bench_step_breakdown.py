"""Where a process-backend step loses to the bare lockstep loop: each layer timed on its own.

``scripts/bench_envs.py`` compares whole steppers; this script takes the process backend's step
apart on HalfCheetahVel (64 envs, 2 slices by default) and times, interleaved in short windows
as bench_envs does, the microseconds of one call of:

- raw ``mj_step`` over one slice's ``MjData`` (nothing of ours; the half step any stepper needs);
- metarl's MuJoCo engine stepping one slice in this process (the same physics, plus what an env
  must produce: observations, rewards, the reward terms; it resets every sub-env at the
  registered horizon, as the vector env's autoreset does);
- the bare lockstep loop of bench_envs (raw ``mj_step`` split over the processes, spin-polled
  counters in shared memory): the period of a lockstep step with nothing of ours in it;
- :class:`~envs.process_engine.ProcessEngine` alone (slices in processes, semaphores, shared
  memory; no vector env), reset at the horizon;
- the whole vector env with the ``process`` backend (what a user calls);
- the vector env's own bookkeeping, with an engine that returns a stored step at once;
- the process engine again with slices that only call ``mj_step`` and return a stored step
  (:class:`PhysicsOnlyEngine`): the process machinery alone (semaphores, shared memory, the
  actions checked and copied, the results written), without our engine's observations, rewards
  and reward terms;
- the bare lockstep loop again, each slice also doing the least numpy work an env that returns
  observations and rewards must do after the physics (``raw_stepper(outputs=True)``: the
  observations gathered in one call, a reward in five; seven calls in all): what Python envs pay
  for their outputs on this machine, with none of our code.

The differences between rows say what each layer adds (the engine's own work per slice is part of
what the process engine adds, and the bookkeeping part of what the vector env adds). Every row is
timed in ``--rounds`` windows taken in turn, so a burst of outside load hits all rows alike; the
table gives the median and the fastest window per row, each layer's difference taken within each
round (median over rounds) and between the fastest windows, and the machine's load before and
after.

    python scripts/bench_step_breakdown.py [--seconds 24] [--rounds 16] [--out file.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import mujoco
import numpy as np
from bench_envs import (  # the sibling script (python puts this script's folder on the path)
    RawLockstep,
    Stepper,
    _actions,
    _horizon,
    _load,
    add_settle_option,
    measure,
    ours_stepper,
    paired_ratio,
    raw_stepper,
    settle,
)

from envs.core import write_step
from envs.process_engine import ProcessEngine
from envs.registration import env_info, get_engine_class
from envs.vector import make_vec


class PhysicsOnlyEngine:
    """A MuJoCo engine whose ``step`` only runs the ``mj_step`` loop and returns a stored step.

    Everything else (reset, seeding, tasks, spaces) is the wrapped engine's; in a
    :class:`ProcessEngine` it times the process machinery without our engine's own work per slice.
    """

    def __init__(self, num_envs: int, *, engine_id: str, **kwargs: Any) -> None:
        self._engine = get_engine_class(engine_id)(num_envs, **kwargs)
        self._stored: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def step(self, actions: np.ndarray) -> Any:
        """Steps the physics; returns the first step's results (computed once, in full)."""
        if self._stored is None:
            self._stored = self._engine.step(actions)
            return self._stored
        self._engine._simulate_slice(np.asarray(actions, dtype=np.float64), slice(None))
        return self._stored

    step_checked = step  # (else the wrapped engine's, in full)

    def step_into(self, actions: np.ndarray, out: Any) -> None:
        """What a ProcessEngine's slices call: :meth:`step`, its stored step copied into ``out``."""
        write_step(self.step(actions), out)


def engine_stepper(env_id: str, n: int, workers: int, physics_only: bool = False) -> Stepper:
    """The engine of ``env_id`` over ``n`` sub-envs, alone (``workers > 1``: a ProcessEngine).

    ``physics_only``: the ProcessEngine's slices are :class:`PhysicsOnlyEngine`.
    """
    cls, info = get_engine_class(env_id), env_info(env_id)
    kwargs = dict(info.kwargs)
    if physics_only:
        cls, kwargs = PhysicsOnlyEngine, {"engine_id": env_id, **kwargs}  # type: ignore[assignment]
    engine: Any = cls(n, **kwargs) if workers == 1 else ProcessEngine(cls, n, workers, kwargs)
    every = np.arange(n)
    engine.seed(list(range(n)))
    engine.ensure_tasks(every)
    engine.reset(every)
    acts = _actions(engine.action_space, n)
    horizon = _horizon(env_id)  # the vector env's autoreset period, as the raw rows'

    def step(k: int) -> None:
        engine.step(acts[k % len(acts)])
        if k % horizon == horizon - 1:
            engine.reset(every)

    return Stepper(step, n, engine.close)


class _InstantEngine:
    """Stands in for a vector env's engine: ``step`` returns one stored step at once."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.out = engine.step(np.zeros((engine.num_envs, *engine.action_space.shape)))

    def step(self, actions: np.ndarray) -> Any:
        return self.out

    def close(self) -> None:
        self._engine.close()


def bookkeeping_stepper(env_id: str, n: int) -> Stepper:
    """The vector env's ``step`` around an engine that does no work (no truncation)."""
    vec = make_vec(env_id, n, backend="sync", horizon=2**62)
    vec.reset(seed=0)
    vec.engine = _InstantEngine(vec.engine)
    acts = _actions(vec.single_action_space, n)
    return Stepper(lambda k: vec.step(acts[k % len(acts)]), n, vec.close)


def rows_for(env_id: str, v5_id: str, n: int, workers: int) -> dict[str, tuple[Stepper, int]]:
    """Each row's stepper and the sub-envs one of its calls steps."""
    half = n // workers
    horizon = _horizon(env_id)
    return {
        f"raw mj_step, one slice ({half} envs)": (raw_stepper(v5_id, half, horizon), half),
        f"metarl engine, one slice ({half} envs)": (engine_stepper(env_id, half, 1), half),
        f"bare lockstep loop ({workers} processes, {n} envs)": (
            RawLockstep(v5_id, n, workers, horizon),
            n,
        ),
        f"ProcessEngine alone ({workers} processes, {n} envs)": (
            engine_stepper(env_id, n, workers),
            n,
        ),
        f"vector env, process backend ({n} envs)": (
            ours_stepper(env_id, n, "process", workers),
            n,
        ),
        f"vector env bookkeeping, engine returns at once ({n} envs)": (
            bookkeeping_stepper(env_id, n),
            n,
        ),
        f"ProcessEngine, slices only stepping MuJoCo ({workers} processes, {n} envs)": (
            engine_stepper(env_id, n, workers, physics_only=True),
            n,
        ),
        f"bare lockstep loop, also gathering obs and a reward ({workers} processes, {n} envs)": (
            RawLockstep(v5_id, n, workers, horizon, outputs=True),
            n,
        ),
    }


def _layers(micros: dict[str, float], names: list[str]) -> dict[str, float]:
    """What each layer adds, from the rows' µs per call (in the order of :func:`rows_for`)."""
    raw, engine, lockstep, proc, vec, books, bare, least = (micros[k] for k in names)
    return {
        "lockstep hand-over and the slower half (lockstep − raw slice)": lockstep - raw,
        "the process engine over the lockstep loop (ProcessEngine − lockstep)": proc - lockstep,
        "… its machinery (ProcessEngine, slices only stepping MuJoCo − lockstep)": bare - lockstep,
        "… our engine's work in it (ProcessEngine − the same, slices only stepping)": proc - bare,
        "… our engine's own work per slice, in this process (engine − raw slice)": engine - raw,
        "the vector env around it (vector env − ProcessEngine)": vec - proc,
        "… of which its bookkeeping timed alone": books,
        "all of ours (vector env − lockstep)": vec - lockstep,
        "the least any env's outputs add (lockstep with obs and reward − lockstep)": (
            least - lockstep
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="metarl/HalfCheetahVel-v0")
    parser.add_argument("--v5", default="HalfCheetah-v5", help="the gymnasium model of --env")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=24.0, help="timing per row, in all")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    add_settle_option(parser, "first")
    args = parser.parse_args()
    if args.workers < 2 or args.num_envs < args.workers or args.num_envs % args.workers:
        parser.error(
            f"--num-envs {args.num_envs} is not a multiple of --workers {args.workers} (>= 2)"
        )
    if args.rounds < 1 or not args.seconds > 0:
        parser.error(f"--rounds must be >= 1 and --seconds > 0, got {args.rounds}, {args.seconds}")
    settle(1.0, args.settle)
    before = _load()
    built = rows_for(args.env, args.v5, args.num_envs, args.workers)
    rates = measure({k: v[0] for k, v in built.items()}, args.seconds, args.rounds)
    after = _load()
    # µs per call of each window; the fastest window is the one least disturbed from outside
    per_call = {k: [built[k][1] / r * 1e6 for r in v] for k, v in rates.items()}
    micros = {k: float(np.median(v)) for k, v in per_call.items()}
    fastest = {k: float(min(v)) for k, v in per_call.items()}
    names = list(built)
    cpu = platform.processor() or platform.machine()
    print(
        f"# {args.env}: a process-backend step taken apart ({cpu}, {os.cpu_count()} cores, "
        f"mujoco {mujoco.__version__}), median and fastest of {args.rounds} windows\n"
    )
    print(f"Before: {before}; after: {after}.\n")
    print("| row | µs per call (median) | (fastest window) |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {micros[name]:,.0f} | {fastest[name]:,.0f} |")
    # each layer's difference taken within a round (windows seconds apart share the VM's drift),
    # median over the rounds, as bench_envs' paired ratio
    rounds = [_layers({k: v[r] for k, v in per_call.items()}, names) for r in range(args.rounds)]
    adds = {what: float(np.median([layers[what] for layers in rounds])) for what in rounds[0]}
    adds_fastest = _layers(fastest, names)
    lockstep = micros[names[2]]
    print("\n| what the layer adds | µs per step (paired) | (fastest) | share of lockstep |")
    print("|---|---:|---:|---:|")
    for what, value in adds.items():
        print(f"| {what} | {value:,.0f} | {adds_fastest[what]:,.0f} | {value / lockstep:.0%} |")
    vec = micros[names[4]]
    paired = paired_ratio(rates, names[4], names[2])
    bare = paired_ratio(rates, names[6], names[2])
    least = paired_ratio(rates, names[7], names[2])
    print(
        f"\nThe vector env reaches {lockstep / vec:.2f}× the bare lockstep loop in this run "
        f"({paired:.2f}× paired: the median over rounds of the ratio of the two windows); the "
        f"process engine with slices that only step MuJoCo {lockstep / micros[names[6]]:.2f}× "
        f"({bare:.2f}× paired); the bare loop that also gathers the observations and computes a "
        f"reward (seven numpy calls per slice) {lockstep / micros[names[7]]:.2f}× "
        f"({least:.2f}× paired)."
    )
    if args.out:
        figures = {"micros": micros, "fastest": fastest, "adds": adds, "paired": paired}
        figures |= {"paired_physics_only": bare, "paired_least_outputs": least}
        figures |= {"adds_fastest": adds_fastest, "windows": rates}
        with open(args.out, "w") as f:
            json.dump({**figures, "load_before": before, "load_after": after}, f, indent=2)


if __name__ == "__main__":
    main()

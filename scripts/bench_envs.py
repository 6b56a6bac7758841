"""Env-stepping throughput of metarl's vector env against raw MuJoCo and gymnasium, in one run.

For HalfCheetahVel and AntDir at 64 envs with random actions it measures, on this machine and in
this process: raw ``mujoco.mj_step`` over 64 ``MjData`` of the same model (the floor), gymnasium's
``SyncVectorEnv`` and ``AsyncVectorEnv`` of the plain v5 env, and metarl's vector env with the
``sync`` and ``process`` backends; then Navigation2D at 1,000 envs. It prints a markdown table
with env steps/s and the ratios against raw and against gymnasium's SyncVectorEnv.

    python scripts/bench_envs.py [--seconds 3] [--num-envs 64] [--workers 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np

from envs.vector import make_vec


def _rate(step: Callable[[int], None], batch: int, seconds: float) -> float:
    """Env steps per second of ``step`` (one call = ``batch`` env steps), after a warm-up."""
    for i in range(3):
        step(i)
    calls, start = 0, time.perf_counter()
    while True:
        step(calls)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 5:
            return calls * batch / elapsed


def _actions(space: gym.spaces.Box, n: int, count: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    low, high = space.low, space.high
    return [
        rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype) for _ in range(count)
    ]


def bench_raw(v5_id: str, n: int, seconds: float) -> float:
    env = gym.make(v5_id).unwrapped
    model, frame_skip = env.model, env.frame_skip
    datas = [mujoco.MjData(model) for _ in range(n)]
    acts = _actions(env.action_space, n)

    def step(k: int) -> None:
        a = acts[k % len(acts)]
        for i, d in enumerate(datas):
            d.ctrl[:] = a[i]
            mujoco.mj_step(model, d, nstep=frame_skip)
            if d.time > 50.0:  # keep the state in a sane range on long runs
                mujoco.mj_resetData(model, d)

    return _rate(step, n, seconds)


def _raw_worker(args: tuple[str, int, float]) -> float:
    v5_id, n, seconds = args
    return bench_raw(v5_id, n, seconds)


def bench_raw_parallel(v5_id: str, n: int, seconds: float, workers: int) -> float:
    """Raw ``mj_step`` in ``workers`` processes at once, ``n / workers`` envs each.

    This is the ceiling any multi-process backend can reach on this machine.
    """
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        rates = pool.map(_raw_worker, [(v5_id, n // workers, seconds)] * workers)
    return float(sum(rates))


def bench_gym(v5_id: str, n: int, seconds: float, mode: str) -> float:
    vec = gym.make_vec(v5_id, num_envs=n, vectorization_mode=mode)
    vec.reset(seed=0)
    acts = _actions(vec.single_action_space, n)
    try:
        return _rate(lambda k: vec.step(acts[k % len(acts)]), n, seconds)
    finally:
        vec.close()


def bench_ours(env_id: str, n: int, seconds: float, backend: str, workers: int) -> float:
    kwargs = {"num_workers": workers} if backend == "process" else {}
    vec = make_vec(env_id, n, backend=backend, **kwargs)
    vec.reset(seed=0)
    acts = _actions(vec.single_action_space, n)
    try:
        return _rate(lambda k: vec.step(acts[k % len(acts)]), n, seconds)
    finally:
        vec.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per row")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="workers of the process backend")
    parser.add_argument("--nav-envs", type=int, default=1000)
    parser.add_argument("--skip-async", action="store_true", help="skip gymnasium AsyncVectorEnv")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    n, sec = args.num_envs, args.seconds
    print(
        f"# env benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"mujoco {mujoco.__version__}, gymnasium {gym.__version__}, {n} envs, random actions"
    )
    results: dict[str, dict[str, float]] = {}
    for env_id, v5_id in [
        ("metarl/HalfCheetahVel-v0", "HalfCheetah-v5"),
        ("metarl/AntDir-v0", "Ant-v5"),
    ]:
        row: dict[str, float] = {}
        row["raw mj_step (1 core)"] = bench_raw(v5_id, n, sec)
        row[f"raw mj_step ({args.workers} processes, ceiling)"] = bench_raw_parallel(
            v5_id, n, sec, args.workers
        )
        row["gymnasium SyncVectorEnv"] = bench_gym(v5_id, n, sec, "sync")
        if not args.skip_async:
            row["gymnasium AsyncVectorEnv"] = bench_gym(v5_id, n, sec, "async")
        row["metarl sync"] = bench_ours(env_id, n, sec, "sync", 1)
        row[f"metarl process ({args.workers} workers)"] = bench_ours(
            env_id, n, sec, "process", args.workers
        )
        results[env_id] = row
        raw, gsync, ours = (
            row["raw mj_step (1 core)"],
            row["gymnasium SyncVectorEnv"],
            row["metarl sync"],
        )
        print(f"\n## {env_id} ({v5_id} model), {n} envs\n")
        print("| stepper | env steps/s | × raw | × gym sync | × metarl sync |")
        print("|---|---:|---:|---:|---:|")
        for name, rate in row.items():
            ratios = f"{rate / raw:.2f} | {rate / gsync:.2f} | {rate / ours:.2f}"
            print(f"| {name} | {rate:,.0f} | {ratios} |")
    nav = bench_ours("metarl/Navigation2D-v0", args.nav_envs, sec, "sync", 1)
    results["metarl/Navigation2D-v0"] = {"metarl sync": nav}
    print(f"\n## metarl/Navigation2D-v0, {args.nav_envs} envs, sync: {nav:,.0f} env steps/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

"""The main job of `make demo`: a tour of every task family, with what it sampled and how fast.

For each registered task env it samples tasks from the env's distribution with a seeded generator,
runs one vectorized batch (one task per sub-env) with random actions, and prints the sampled tasks,
the mean return and the env steps per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import envs
from envs.vector import make_vec


def _short(task: envs.Task) -> str:
    parts = []
    for key, value in task.to_dict().items():
        flat = np.asarray(value, dtype=np.float64).ravel()
        text = ", ".join(f"{v:.2f}" for v in flat[:3]) + (", ..." if flat.size > 3 else "")
        parts.append(f"{key}=({text})" if flat.size > 1 else f"{key}={flat[0]:.2f}")
    return " ".join(parts)


def tour(num_envs: int, steps: int, seed: int) -> None:
    """Samples tasks for every registered env and runs one random-action batch on each."""
    rng = np.random.default_rng(seed)
    header = f"sampled task (first of {num_envs})"
    print(f"{'env id':32} {header:58} {'return':>9} {'steps/s':>10}")
    for env_id in envs.task_env_ids():
        tasks = envs.get_task_distribution(env_id).sample(num_envs, rng)
        vec = make_vec(env_id, num_envs, tasks=tasks)
        obs, _ = vec.reset(seed=seed)
        horizon = vec.horizon or steps
        returns = np.zeros(num_envs)
        start = time.perf_counter()
        for _ in range(min(steps, horizon)):
            obs, reward, *_ = vec.step(vec.action_space.sample())
            returns += reward
        rate = num_envs * min(steps, horizon) / (time.perf_counter() - start)
        vec.close()
        print(f"{env_id:32} {_short(tasks[0])[:58]:58} {returns.mean():9.2f} {rate:10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    np.random.seed(args.seed)
    tour(args.num_envs, args.steps, args.seed)


if __name__ == "__main__":
    main()

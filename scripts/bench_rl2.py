"""Training throughput of RL² on HalfCheetahVel against stable-baselines3 PPO, in one run.

Both learners train on ``metarl/HalfCheetahVel-v0`` (H = 100) on this machine in this process, and
the figure is env steps per second of training *including* the policy updates:

- **RL²**: iterations of :func:`metarl.algorithms.rl2.train` with
  ``configs/rl2/halfcheetah_vel.yaml`` (64 trials of 2 episodes stepped as one batched vector env,
  one batched GRU forward per step, PPO with truncated BPTT), after one warm-up iteration;
- **SB3 PPO**: ``stable_baselines3.PPO("MlpPolicy")`` with its defaults (one env, 2048-step
  rollouts, 10 epochs of 64-sample minibatches) on the gymnasium env, after a warm-up rollout;
- and, for context, the vector env alone stepped with random actions (the ceiling).

The two learners are timed in alternating rounds (``--rounds``), so that a change in the load of
a shared machine affects both figures alike.

Prints a markdown table and the ratio RL² / SB3; optionally writes JSON.

    python scripts/bench_rl2.py [--rounds 2] [--iterations 2] [--sb3-steps 2048] [--device D]
                                [--threads 1] [--set KEY=VALUE ...] [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the metarl/* ids)
from metarl.algorithms import rl2 as R
from metarl.config import load_config
from metarl.device import get_device
from metarl.memory import keep_freed_memory

CONFIG = "configs/rl2/halfcheetah_vel.yaml"
ENV_ID = "metarl/HalfCheetahVel-v0"
QUICK = ["env.num_trials=4", "algo.num_minibatches=2", "env.horizon=10", "algo.bptt_len=5"]


def random_action_rate(cfg: R.RL2Config, steps: int) -> float:
    """Env steps/s of the same vector env stepped with random actions (no policy, no update)."""
    vec = R.make_env(cfg, cfg.env.num_trials)
    space = vec.single_action_space
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (vec.num_envs, *space.shape)).astype(space.dtype) for _ in "ab"]
    everyone = np.ones(vec.num_envs, dtype=bool)
    horizon = int(vec.horizon or 1)
    vec.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        if t and t % horizon == 0:
            vec.reset(options={"reset_mask": everyone})
        vec.step(actions[t % 2])
    elapsed = time.perf_counter() - start
    vec.close()
    return steps * vec.num_envs / elapsed


Round = Callable[[], tuple[int, float]]
"""Runs one timed round of training; returns ``(env steps, seconds)``."""


def rl2_round(cfg: R.RL2Config, device: torch.device, iterations: int) -> Round:
    """RL² training (sampling and PPO updates) for ``iterations`` iterations per round."""
    vec = R.make_env(cfg, cfg.env.num_trials)
    policy = R.build_policy(cfg.policy, vec, torch.Generator(device=device).manual_seed(0), device)
    params = R.init_params(policy)
    warm = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=1))
    R.train(warm, policy, params, vec, device=device)  # allocators, caches
    timed = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=iterations))
    steps = iterations * cfg.env.num_trials * cfg.env.episodes_per_trial * int(vec.horizon or 1)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        R.train(timed, policy, params, vec, device=device)
        return steps, time.perf_counter() - start

    return run


def sb3_round(steps: int, horizon: int, device: torch.device) -> Round:
    """stable-baselines3 PPO (MLP policy, defaults, one env) learning ``steps`` per round."""
    from stable_baselines3 import PPO

    env = gym.make(ENV_ID, max_episode_steps=horizon)
    n_steps = min(2048, steps)
    model = PPO(
        "MlpPolicy", env, n_steps=n_steps, batch_size=min(64, n_steps), seed=0, device=device
    )
    model.learn(total_timesteps=n_steps)  # warm-up: one rollout and one update

    def run() -> tuple[int, float]:
        before, start = model.num_timesteps, time.perf_counter()
        model.learn(total_timesteps=steps, reset_num_timesteps=False)
        return int(model.num_timesteps - before), time.perf_counter() - start

    return run


def interleave(rounds: int, runners: dict[str, Round]) -> dict[str, dict[str, float]]:
    """Alternates the learners round by round, so a change in machine load hits both alike."""
    totals = {name: [0, 0.0] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            steps, seconds = run()
            totals[name][0] += steps
            totals[name][1] += seconds
    return {
        name: {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds}
        for name, (steps, seconds) in totals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each learner")
    parser.add_argument("--iterations", type=int, default=2, help="RL² iterations per round")
    parser.add_argument(
        "--sb3-steps", type=int, default=None, help="SB3 PPO env steps per round (default 2048)"
    )
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the RL² config, e.g. env.backend=process",
    )
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    keep_freed_memory()  # as `metarl train` does (SB3 in this process gets it too)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    overrides = (QUICK if args.quick else []) + list(args.set)
    cfg = load_config(R.RL2Config, CONFIG, overrides)
    env = cfg.env
    horizon = int(env.horizon or 100)
    print(
        f"# RL² training throughput: {env.id}, {env.num_trials} trials × "
        f"{env.episodes_per_trial} episodes × H {horizon}, GRU {cfg.policy.hidden_size}, PPO "
        f"{cfg.ppo.epochs} epochs × {cfg.algo.num_minibatches} minibatches, BPTT "
        f"{cfg.algo.bptt_len}; policy on {device}, envs on CPU; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    sb3_steps = args.sb3_steps or (64 if args.quick else 2048)
    runners = {
        "sb3": sb3_round(sb3_steps, horizon, device),
        "rl2": rl2_round(cfg, device, args.iterations),
    }
    rates = interleave(args.rounds, runners)
    ours, sb3 = rates["rl2"], rates["sb3"]
    ceiling = random_action_rate(cfg, env.episodes_per_trial * horizon)
    ratio = ours["steps_per_second"] / sb3["steps_per_second"]
    print("| training (env steps incl. updates) | env steps | seconds | env steps/s | × SB3 |")
    print("|---|---|---|---|---|")
    for name, row in (("stable-baselines3 PPO, MLP, 1 env", sb3), ("metarl RL² (GRU, PPO)", ours)):
        rate = row["steps_per_second"]
        print(
            f"| {name} | {row['steps']:,} | {row['seconds']:.2f} | {rate:,.0f} | "
            f"{rate / sb3['steps_per_second']:.1f} |"
        )
    print(f"\nthe vector env alone (random actions): {ceiling:,.0f} env steps/s")
    print(f"ratio RL² / SB3 PPO: {ratio:.1f}×")
    if args.out:
        result = {
            "config": CONFIG,
            "overrides": overrides,
            "device": str(device),
            "rounds": args.rounds,
            "rl2": ours,
            "sb3_ppo": sb3,
            "random_action_steps_per_second": ceiling,
            "ratio": ratio,
        }
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

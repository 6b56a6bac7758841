r"""Training throughput of RL² on HalfCheetahVel against stable-baselines3 peers, in one run.

Every learner trains on ``metarl/HalfCheetahVel-v0`` (H = 100) on this machine in this process,
and the figure is env steps per second of training *including* the policy updates:

- **RL²**: iterations of :func:`metarl.algorithms.rl2.train` with
  ``configs/rl2/halfcheetah_vel.yaml`` (64 trials of 2 episodes stepped as one batched vector env,
  one batched GRU step per env step, PPO with truncated BPTT), after one warm-up iteration;
- **SB3 PPO**: ``stable_baselines3.PPO("MlpPolicy")`` on 64 gymnasium envs in SB3's
  ``DummyVecEnv`` (``make_vec_env``), with RL²'s batch: ``n_steps`` = 200 per env (the same
  64 × 200 = 12,800 steps per update), 2 epochs of 4 minibatches (``batch_size`` 3,200);
- **sb3-contrib RecurrentPPO**: ``RecurrentPPO("MlpLstmPolicy")`` with an LSTM of 64 units and
  the same envs, batch, epochs and minibatches (skipped, with the install command, if
  ``sb3_contrib`` is missing);
- **the vector env alone**, stepped with uniform random actions, the same 64 sub-envs;
- **the vector env replaying RL²'s actions**: the actions RL²'s policy took in one training
  iteration (recorded at ``vec.step``), stepped again with the same resets and no policy or
  update. MuJoCo's cost per step depends on the actions (the cheetah's contacts), and a Gaussian
  policy's small controls make its steps dearer than uniform random ones, so this row, not the
  uniform one, is the floor that RL²'s own sampling can reach (the same holds for MAML's
  sampling, ``scripts/bench_maml_rl.py --sampling-only``);
- **a plain loop with none of metarl's code** (``scripts/bare_rl2.py``): MuJoCo's bindings and
  plain torch doing the same work (64 cheetahs, a GRU step per env step, PPO with the same
  epochs, minibatches and BPTT), and the same plain env stepped with uniform random actions.
  Their ratio is what a hand-written RL² reaches against its env on this machine, measured in
  the same run: the limit that metarl's ratio to its env is to be judged against.

All are timed in alternating rounds (``--rounds``), each round the same number of env steps
for every learner (``--iterations`` RL² iterations' worth), so that a change in the load of a
shared machine hits all of them alike. Printed: the median rate of each over the rounds, the
median of the per-round ratios, and the 1-minute load average (``os.getloadavg``) before every
round. Optionally writes JSON.

Setup: sb3-contrib is a benchmark-only peer, never a metarl dependency, so it goes into a
separate venv with what metarl needs to run from the source tree (torch, gymnasium[mujoco],
PyYAML, matplotlib, tqdm, tensorboard, stable-baselines3)::

    python -m venv bench-venv
    bench-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    bench-venv/bin/pip install "gymnasium[mujoco]>=1,<2" pyyaml matplotlib tqdm tensorboard \
        stable-baselines3==2.9.2
    bench-venv/bin/pip install sb3-contrib==2.9.2 --no-deps
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD bench-venv/bin/python scripts/bench_rl2.py --rounds 5

Without sb3-contrib the RecurrentPPO row is skipped with a line that says how to install it.

    python scripts/bench_rl2.py [--rounds 3] [--iterations 2] [--device D] [--threads 1]
                                [--set KEY=VALUE ...] [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import bare_rl2  # scripts/bare_rl2.py: scripts/ is sys.path[0] when run as a script
import numpy as np
import torch

import envs  # noqa: F401  (registers the metarl/* ids)
from metarl.algorithms import rl2 as R
from metarl.config import load_config
from metarl.config_sections import section
from metarl.device import get_device
from metarl.memory import keep_freed_memory

CONFIG = "configs/rl2/halfcheetah_vel.yaml"
QUICK = ["env.num_trials=4", "algo.num_minibatches=2", "env.horizon=10", "algo.bptt_len=5"]
CONTRIB = "sb3-contrib==2.9.2 --no-deps"

Round = Callable[[], tuple[int, float]]
"""Runs one timed round; returns ``(env steps, seconds)``."""


def random_round(cfg: R.RL2Config, rollouts: int) -> Round:
    """The same vector env stepped with uniform random actions (no policy, no update)."""
    probe = R.make_env(cfg, 1)
    space, horizon = probe.single_action_space, int(probe.horizon or 1)
    probe.close()
    rng = np.random.default_rng(0)
    shape = (cfg.env.num_trials, *(space.shape or ()))
    pair = [rng.uniform(-1, 1, shape).astype(space.dtype or np.float32) for _ in "ab"]
    length = cfg.env.episodes_per_trial * horizon
    return replay_round(cfg, [pair[t % 2] for t in range(length)], rollouts)


def replay_round(cfg: R.RL2Config, actions: list[np.ndarray], iterations: int) -> Round:
    """The vector env replaying ``actions`` (one iteration's, in order), ``iterations`` times."""
    vec = R.make_env(cfg, cfg.env.num_trials)
    everyone = np.ones(vec.num_envs, dtype=bool)
    horizon = int(vec.horizon or 1)
    if len(actions) != cfg.env.episodes_per_trial * horizon:
        raise ValueError(f"expected one iteration's actions, got {len(actions)} steps")
    vec.reset(seed=0)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(iterations):
            for t, action in enumerate(actions):
                if t % horizon == 0:
                    vec.reset(options={"reset_mask": everyone})
                vec.step(action)
        return iterations * len(actions) * vec.num_envs, time.perf_counter() - start

    return run


def rl2_round(
    cfg: R.RL2Config, device: torch.device, iterations: int, record: list[np.ndarray]
) -> Round:
    """RL² training (sampling and PPO updates) for ``iterations`` iterations per round.

    The actions of the warm-up iteration's sampling are appended to ``record``.
    """
    vec = R.make_env(cfg, cfg.env.num_trials)
    policy = R.build_policy(cfg.policy, vec, torch.Generator(device=device).manual_seed(0), device)
    params = R.init_params(policy)
    warm = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=1))
    step = vec.step

    def recording_step(action: np.ndarray) -> Any:
        record.append(np.array(action, copy=True))
        return step(action)

    vec.step = recording_step  # type: ignore[method-assign]
    try:
        R.train(warm, policy, params, vec, device=device)  # allocators, caches
    finally:
        del vec.step  # the class's method again
    timed = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=iterations))
    steps = iterations * cfg.env.num_trials * cfg.env.episodes_per_trial * int(vec.horizon or 1)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        R.train(timed, policy, params, vec, device=device)
        return steps, time.perf_counter() - start

    return run


def sb3_round(cfg: R.RL2Config, device: torch.device, iterations: int, recurrent: bool) -> Round:
    """SB3 PPO (MLP) or sb3-contrib RecurrentPPO (LSTM) on RL²'s batch, ``iterations`` updates."""
    from stable_baselines3.common.env_util import make_vec_env

    env, algo, ppo = cfg.env, cfg.algo, section(cfg.ppo, "ppo")
    horizon = int(env.horizon or 100)
    n_steps = env.episodes_per_trial * horizon  # 200 per env: RL²'s 64 × 200 batch
    vec = make_vec_env(
        env.id, n_envs=env.num_trials, seed=0, env_kwargs={"max_episode_steps": horizon}
    )
    kwargs: dict[str, Any] = {
        "n_steps": n_steps,
        "batch_size": n_steps * env.num_trials // algo.num_minibatches,
        "n_epochs": ppo.epochs,
        "seed": 0,
        "device": device,
    }
    if recurrent:
        from sb3_contrib import RecurrentPPO  # type: ignore[import-not-found]  # optional peer

        lstm = {"lstm_hidden_size": cfg.policy.hidden_size}
        model: Any = RecurrentPPO("MlpLstmPolicy", vec, policy_kwargs=lstm, **kwargs)
    else:
        from stable_baselines3 import PPO

        model = PPO("MlpPolicy", vec, **kwargs)
    batch = n_steps * env.num_trials
    model.learn(total_timesteps=batch)  # warm-up: one rollout and one update

    def run() -> tuple[int, float]:
        before, start = model.num_timesteps, time.perf_counter()
        model.learn(total_timesteps=iterations * batch, reset_num_timesteps=False)
        return int(model.num_timesteps - before), time.perf_counter() - start

    return run


def bare_rounds(cfg: R.RL2Config, iterations: int) -> dict[str, Round]:
    """The plain loops of ``scripts/bare_rl2.py`` with RL²'s config's shapes."""
    env, algo, ppo = cfg.env, cfg.algo, section(cfg.ppo, "ppo")
    shape = (env.num_trials, env.episodes_per_trial, int(env.horizon or 100))
    return {
        "bare_env": bare_rl2.random_env_round(*shape, iterations),
        "bare_rl2": bare_rl2.bare_rl2_round(
            *shape,
            iterations,
            hidden=cfg.policy.hidden_size,
            gamma=algo.gamma,
            lam=algo.gae_lambda,
            epochs=ppo.epochs,
            minibatches=algo.num_minibatches,
            bptt=algo.bptt_len or shape[1] * shape[2],
            clip=ppo.clip_eps,
            lr=cfg.optim.lr,
        ),
    }


def interleave(rounds: int, runners: dict[str, Round]) -> tuple[dict[str, list[float]], list]:
    """Alternates the learners round by round; returns each one's rate per round and the loads."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    loads = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, run in runners.items():
            steps, seconds = run()
            rates[name].append(steps / seconds)
    loads.append(os.getloadavg()[0])
    return rates, loads


NAMES = {
    "random": "the vector env alone, uniform random actions",
    "replay": "the vector env replaying RL²'s actions (the floor)",
    "rl2": "metarl RL² (GRU, PPO)",
    "sb3": "stable-baselines3 PPO, MLP, 64 envs",
    "contrib": "sb3-contrib RecurrentPPO, LSTM 64, 64 envs",
    "bare_env": "plain loop, no metarl code: MuJoCo env alone, uniform random actions",
    "bare_rl2": "plain loop, no metarl code: RL² (GRU, PPO)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each learner")
    parser.add_argument("--iterations", type=int, default=2, help="updates per learner per round")
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
    keep_freed_memory()  # as `metarl train` does (the peers in this process get it too)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    overrides = (QUICK if args.quick else []) + list(args.set)
    cfg = load_config(R.RL2Config, CONFIG, overrides)
    env = cfg.env
    print(
        f"# RL² training throughput: {env.id}, {env.num_trials} trials × "
        f"{env.episodes_per_trial} episodes × H {env.horizon}, GRU {cfg.policy.hidden_size}, PPO "
        f"{section(cfg.ppo, 'ppo').epochs} epochs × {cfg.algo.num_minibatches} minibatches, BPTT "
        f"{cfg.algo.bptt_len}; policy on {device}, envs on CPU; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    recorded: list[np.ndarray] = []
    rl2 = rl2_round(cfg, device, args.iterations, recorded)
    runners = {
        "random": random_round(cfg, args.iterations),
        "replay": replay_round(cfg, recorded, args.iterations),
        "rl2": rl2,
        "sb3": sb3_round(cfg, device, args.iterations, recurrent=False),
        **(bare_rounds(cfg, args.iterations) if device.type == "cpu" else {}),
    }
    try:
        import sb3_contrib  # noqa: F401  (an optional peer)
    except ImportError:
        print(f"sb3-contrib RecurrentPPO skipped: not installed (pip install {CONTRIB})\n")
    else:
        runners["contrib"] = sb3_round(cfg, device, args.iterations, recurrent=True)
    rates, loads = interleave(args.rounds, runners)
    median = {name: statistics.median(values) for name, values in rates.items()}

    def ratio(a: str, b: str) -> float:  # the median of the per-round ratios
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    print("| training (env steps incl. updates) | env steps/s (median) | per round | RL² × |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        each = ", ".join(f"{v:,.0f}" for v in values)
        times = "" if name == "rl2" else f"{ratio('rl2', name):.2f}"
        print(f"| {NAMES[name]} | {median[name]:,.0f} | {each} | {times} |")
    load = ", ".join(f"{x:.2f}" for x in loads)
    print(f"\nload average (1 min) before each round and after: {load}")
    print(f"RL² / the vector env's random-action rate: {ratio('rl2', 'random'):.2f}")
    print(f"RL² / the vector env replaying RL²'s actions: {ratio('rl2', 'replay'):.2f}")
    print(f"replaying RL²'s actions / uniform random actions: {ratio('replay', 'random'):.2f}")
    print(f"ratio RL² / SB3 PPO (64 envs): {ratio('rl2', 'sb3'):.2f}×")
    if "contrib" in rates:
        print(f"ratio RL² / RecurrentPPO (64 envs): {ratio('rl2', 'contrib'):.2f}×")
    if "bare_rl2" in rates:
        print(
            "plain loop: RL² / its env's random-action rate (the limit measured here): "
            f"{ratio('bare_rl2', 'bare_env'):.2f}; metarl's: {ratio('rl2', 'random'):.2f}"
        )
        print(f"metarl RL² / the plain RL² loop: {ratio('rl2', 'bare_rl2'):.2f}")
    if args.out:
        result = {
            "config": CONFIG,
            "overrides": overrides,
            "device": str(device),
            "rounds": args.rounds,
            "iterations": args.iterations,
            "steps_per_second": rates,
            "median_steps_per_second": median,
            "load_average": loads,
            "ratio": ratio("rl2", "sb3"),
            "ratio_random": ratio("rl2", "random"),
            "ratio_replay": ratio("rl2", "replay"),
            "ratio_replay_random": ratio("replay", "random"),
            "ratio_recurrent_ppo": ratio("rl2", "contrib") if "contrib" in rates else None,
            "ratio_bare_limit": ratio("bare_rl2", "bare_env") if "bare_rl2" in rates else None,
            "ratio_bare": ratio("rl2", "bare_rl2") if "bare_rl2" in rates else None,
        }
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

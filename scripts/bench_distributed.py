"""Meta-iterations per second on 2 ranks against 1 rank, side by side in one run.

For each row of :data:`ROWS` the same experiment runs a few warm-up meta-iterations and then
``--iterations`` timed ones, first on 1 rank, then on 2 ranks (gloo, one torch thread per rank,
one process per rank, started with the variables torchrun sets). Printed per row: the rates, the
speed-up, the share of the 2-rank time spent inside collectives (waiting for the slower rank
included; the rest is compute), and the machine's 1-minute load average before and after each
measurement, since a machine shared with other work gives other figures than an idle one.

Rows are functions that build a :class:`metarl.driver.Experiment` in the current world (the
ranks are already joined): add one to :data:`ROWS` to bench another trainer. A row whose function
is None is listed as not available.

    python scripts/bench_distributed.py [--rows maml_omniglot_5w1s] [--iterations 10]
        [--warmup 2] [--out results/bench_distributed/bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metarl import distributed  # noqa: E402
from metarl.driver import Experiment  # noqa: E402

CPU = torch.device("cpu")


def maml_omniglot_5w1s() -> Experiment:
    """MAML, Omniglot 5-way 1-shot (configs/maml/omniglot_5w1s.yaml: meta-batch 32, conv4)."""
    from metarl.algorithms import build_supervised_learner
    from metarl.algorithms.supervised import SupervisedConfig, SupervisedExperiment, build_family
    from metarl.config import load_config

    cfg = load_config(SupervisedConfig, ROOT / "configs/maml/omniglot_5w1s.yaml")
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(0))
    return SupervisedExperiment(cfg, learner, build_family(cfg.task, "train", CPU), CPU)


def _maml_rl(overrides: list[str]) -> Experiment:
    """MAML-TRPO HalfCheetahVel (configs/maml_trpo/halfcheetah_vel.yaml), this rank's tasks."""
    from metarl.algorithms import maml_rl
    from metarl.config import load_config
    from metarl.rl.parallel import owned

    path = ROOT / "configs/maml_trpo/halfcheetah_vel.yaml"
    cfg = load_config(maml_rl.MAMLRLConfig, path, overrides)
    tasks = len(owned(cfg.env.meta_batch_size, "env.meta_batch_size"))
    vec = maml_rl.make_env(cfg, tasks, cfg.env.episodes_per_task)
    policy = maml_rl.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    return maml_rl.MAMLRLExperiment(cfg, policy, maml_rl.init_params(policy), vec, CPU)


def _rl2(overrides: list[str]) -> Experiment:
    """RL² PPO HalfCheetahVel (configs/rl2/halfcheetah_vel.yaml), this rank's trials."""
    from metarl.algorithms import rl2
    from metarl.config import load_config
    from metarl.rl.parallel import owned

    cfg = load_config(rl2.RL2Config, ROOT / "configs/rl2/halfcheetah_vel.yaml", overrides)
    vec = rl2.make_env(cfg, len(owned(cfg.env.num_trials, "env.num_trials")))
    policy = rl2.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    return rl2.RL2Experiment(cfg, policy, rl2.init_params(policy), vec, CPU)


def maml_trpo_halfcheetah_vel() -> Experiment:
    """MAML-TRPO HalfCheetahVel as shipped: meta-batch 40 x 20 episodes, H = 100."""
    return _maml_rl([])


def maml_trpo_halfcheetah_vel_small() -> Experiment:
    """The same with a meta-batch of 10 x 10 episodes (1/4 of the tasks, 1/2 the episodes)."""
    return _maml_rl(["env.meta_batch_size=10", "env.episodes_per_task=10"])


def rl2_halfcheetah_vel() -> Experiment:
    """RL² PPO HalfCheetahVel as shipped: 64 trials of 2 episodes, H = 100."""
    return _rl2([])


def rl2_halfcheetah_vel_small() -> Experiment:
    """The same with 16 trials (a quarter)."""
    return _rl2(["env.num_trials=16"])


ROWS: dict[str, Callable[[], Experiment] | None] = {
    "maml_omniglot_5w1s": maml_omniglot_5w1s,
    "maml_trpo_halfcheetah_vel": maml_trpo_halfcheetah_vel,
    "rl2_halfcheetah_vel": rl2_halfcheetah_vel,
    "maml_trpo_halfcheetah_vel_small": maml_trpo_halfcheetah_vel_small,
    "rl2_halfcheetah_vel_small": rl2_halfcheetah_vel_small,
}
"""Row name -> function building the experiment (None: not available yet)."""


def _worker(rank: int, size: int, port: int, row: str, args: argparse.Namespace, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    distributed.init(CPU, timeout_s=600)
    build = ROWS[row]
    assert build is not None
    exp = build()
    for it in range(args.warmup):
        exp.update(it)
    distributed.barrier()
    started, waited = time.perf_counter(), distributed.collective_seconds()
    for it in range(args.warmup, args.warmup + args.iterations):
        metrics = exp.update(it)
    float(next(iter(metrics.values())))  # the last iteration's work is done
    mine = (time.perf_counter() - started, distributed.collective_seconds() - waited)
    every = distributed.gather_objects(mine)
    if every is not None:
        Path(out).write_text(json.dumps(every))
    distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(row: str, size: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        load_before = os.getloadavg()[0]
        mp.spawn(_worker, args=(size, _free_port(), row, args, out), nprocs=size, join=True)
        load_after = os.getloadavg()[0]
        times = json.loads(Path(out).read_text())
    wall = max(t for t, _ in times)
    return {
        "iterations_per_s": args.iterations / wall,
        "collective_share": max(c / t for t, c in times),
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    """Measures every requested row on 1 and 2 ranks and prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    cores = os.cpu_count()
    print(f"{cores} cores; 1 torch thread per rank; {args.iterations} timed meta-iterations")
    print(
        "| row | 1 rank it/s (load) | 2 ranks it/s (load) | speed-up | 2 ranks: time in "
        "collectives |"
    )
    print("|---|---|---|---|---|")
    results = {}
    for row in args.rows:
        if ROWS[row] is None:
            print(f"| {row} | n/a | n/a | n/a | n/a |")
            continue
        one, two = _measure(row, 1, args), _measure(row, 2, args)
        results[row] = {"1": one, "2": two}

        def cell(m: dict[str, float]) -> str:
            load = f"load {m['load_before']:.1f}->{m['load_after']:.1f}"
            return f"{m['iterations_per_s']:.3f} ({load})"

        speedup = two["iterations_per_s"] / one["iterations_per_s"]
        share = f"{100 * two['collective_share']:.0f}%"
        print(f"| {row} | {cell(one)} | {cell(two)} | {speedup:.2f}x | {share} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"cores": cores, "iterations": args.iterations, "rows": results}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()

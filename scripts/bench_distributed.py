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


ROWS: dict[str, Callable[[], Experiment] | None] = {
    "maml_omniglot_5w1s": maml_omniglot_5w1s,
    # MAML-TRPO HalfCheetahVel (meta-batch 40 x 20 episodes) and RL² HalfCheetahVel: their
    # functions are added here by the data-parallel RL trainers
    "maml_trpo_halfcheetah_vel": None,
    "rl2_halfcheetah_vel": None,
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

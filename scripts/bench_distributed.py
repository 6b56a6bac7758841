"""Meta-iterations per second on 2 ranks against 1 rank, side by side in one run.

For each row of :data:`ROWS` the same experiment runs a few warm-up meta-iterations and then
``--iterations`` timed ones in four ways (:data:`MODES`): on 1 rank; on 2 ranks (gloo, one torch
thread per rank, one process per rank, started with the variables torchrun sets); on 1 rank with
half the meta-batch (the tasks or trials one of the 2 ranks owns); and as 2 processes at once,
each a world of one with half the batch, never meeting. Printed per row: the rates, the speed-up,
the share of the 2-rank time spent inside collectives (waiting for the slower rank included; the
rest is compute), and the machine's 1-minute load average before and after each measurement,
since a machine shared with other work gives other figures than an idle one.

The last two are the bounds of data parallelism on this machine, measured in the same run. Each
of 2 ranks does at least half the work, so 2 ranks can be no faster than one process doing it
alone ("bound alone": where the cost does not halve with half the batch, per-call overheads of
small tensors say, it is below 2x); and no faster than two processes doing it at the same time
with no collectives at all ("bound 2 at once": on top, what two busy processes cost each other on
this machine: shared caches, memory bandwidth, vCPUs that are hyperthreads of one core). "of
bound 2 at once" is how much of that the 2 ranks reach; the rest is what the collectives and the
waits for the slower rank cost.

Rows are functions that build a :class:`metarl.driver.Experiment` in the current world (the
ranks are already joined) from config overrides, with the overrides of the row and of its half:
add one to :data:`ROWS` to bench another trainer.

    python scripts/bench_distributed.py [--rows maml_omniglot_5w1s] [--iterations 10]
        [--warmup 2] [--out results/bench_distributed/bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
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


def _maml_omniglot(overrides: list[str]) -> Experiment:
    """MAML, Omniglot 5-way 1-shot (configs/maml/omniglot_5w1s.yaml: meta-batch 32, conv4)."""
    from metarl.algorithms import build_supervised_learner
    from metarl.algorithms.supervised import SupervisedConfig, SupervisedExperiment, build_family
    from metarl.config import load_config

    cfg = load_config(SupervisedConfig, ROOT / "configs/maml/omniglot_5w1s.yaml", overrides)
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


@dataclasses.dataclass(frozen=True)
class Row:
    """A row: an experiment builder, its config overrides, those of half the batch, a label."""

    build: Callable[[list[str]], Experiment]
    overrides: list[str]
    half: list[str]
    what: str


ROWS: dict[str, Row] = {
    "maml_omniglot_5w1s": Row(
        _maml_omniglot, [], ["task.meta_batch_size=16"], "meta-batch 32 tasks, conv4"
    ),
    "maml_trpo_halfcheetah_vel": Row(
        _maml_rl, [], ["env.meta_batch_size=20"], "as shipped: meta-batch 40 x 20 episodes, H 100"
    ),
    "rl2_halfcheetah_vel": Row(
        _rl2, [], ["env.num_trials=32"], "as shipped: 64 trials of 2 episodes, H 100"
    ),
    "maml_trpo_halfcheetah_vel_small": Row(
        _maml_rl,
        ["env.meta_batch_size=10", "env.episodes_per_task=10"],
        ["env.meta_batch_size=5", "env.episodes_per_task=10"],
        "meta-batch 10 x 10 episodes (1/4 of the tasks, 1/2 the episodes)",
    ),
    "rl2_halfcheetah_vel_small": Row(
        _rl2, ["env.num_trials=16"], ["env.num_trials=8"], "16 trials (a quarter)"
    ),
}
"""Row name -> how to build it."""


def _worker(
    index: int,
    size: int,
    port: int,
    row: str,
    mode: str,
    args: argparse.Namespace,
    out: str,
) -> None:
    """Process ``index`` of a measurement: a rank of ``size``, or (mode "apart") a world of one."""
    apart = mode == "apart"
    rank, world_size = (0, 1) if apart else (index, size)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    distributed.init(CPU, timeout_s=600)
    spec = ROWS[row]
    exp = spec.build(spec.overrides + (spec.half if mode in ("half", "apart") else []))
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
        Path(f"{out}.{index}" if apart else out).write_text(json.dumps(every))
    distributed.finish_rank()  # a rank of several exits here; tearing gloo down can abort a peer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: What each measurement runs: processes, and whether each does half the batch.
MODES = {
    "1": "1 rank, the whole batch",
    "2": "2 ranks, the whole batch between them",
    "half": "1 rank, half the batch",
    "apart": "2 processes at once, each a world of one with half the batch (no collectives)",
}


def _measure(row: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Times one mode of a row (see :data:`MODES`)."""
    procs = 2 if mode in ("2", "apart") else 1
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.json")
        load_before = os.getloadavg()[0]
        run = (procs, _free_port(), row, mode, args, out)
        mp.spawn(_worker, args=run, nprocs=procs, join=True)
        load_after = os.getloadavg()[0]
        if mode == "apart":
            times = [json.loads(Path(f"{out}.{i}").read_text())[0] for i in range(procs)]
        else:
            times = json.loads(Path(out).read_text())
    wall = max(t for t, _ in times)
    return {
        "iterations_per_s": args.iterations / wall,
        "collective_share": max(c / t for t, c in times),
        "load_before": load_before,
        "load_after": load_after,
    }


def _summary(measured: list[dict[str, float]]) -> dict[str, float]:
    """The median rate and collective share over rounds, and the lowest and highest load."""
    loads = [m[k] for m in measured for k in ("load_before", "load_after")]
    return {
        "iterations_per_s": statistics.median(m["iterations_per_s"] for m in measured),
        "collective_share": statistics.median(m["collective_share"] for m in measured),
        "load_low": min(loads),
        "load_high": max(loads),
    }


def _cell(m: dict[str, float]) -> str:
    return f"{m['iterations_per_s']:.3f} (load {m['load_low']:.1f}-{m['load_high']:.1f})"


def main() -> None:
    """Measures every requested row on 1 and 2 ranks and prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times each row's four measurements are repeated, back to back; medians are shown",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    cores = os.cpu_count()
    print(
        f"{cores} cores; 1 torch thread per rank; {args.iterations} timed meta-iterations; "
        f"{args.rounds} rounds of the four measurements per row, medians (ratios: within a "
        "round, then the median)"
    )
    for row in args.rows:
        print(f"- {row}: {ROWS[row].what}; half: {' '.join(ROWS[row].half)}")
    print(
        "| row | 1 rank it/s (load) | 2 ranks it/s (load) | speed-up | 2 ranks: time in "
        "collectives | 1 rank, half the batch | 2 processes apart, half each | bound alone | "
        "bound 2 at once | of bound 2 at once |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for row in args.rows:
        rounds = [{mode: _measure(row, mode, args) for mode in MODES} for _ in range(args.rounds)]
        rate = [{mode: r[mode]["iterations_per_s"] for mode in MODES} for r in rounds]
        m = {mode: _summary([r[mode] for r in rounds]) for mode in MODES}
        # ratios within a round (its modes ran back to back), then the median over the rounds
        speedup = statistics.median(r["2"] / r["1"] for r in rate)
        alone = statistics.median(r["half"] / r["1"] for r in rate)
        together = statistics.median(r["apart"] / r["1"] for r in rate)
        of_bound = statistics.median(r["2"] / r["apart"] for r in rate)
        results[row] = {**m, "rounds": rounds}
        results[row]["ratios"] = {
            "speedup": speedup,
            "bound_alone": alone,
            "bound_two_at_once": together,
            "of_bound_two_at_once": of_bound,
        }
        share = f"{100 * m['2']['collective_share']:.0f}%"
        cells = [_cell(m["1"]), _cell(m["2"]), f"{speedup:.2f}x", share]
        cells += [_cell(m["half"]), _cell(m["apart"]), f"{alone:.2f}x", f"{together:.2f}x"]
        print(f"| {row} | {' | '.join(cells)} | {of_bound:.0%} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "cores": cores,
            "iterations": args.iterations,
            "rounds": args.rounds,
            "rows": results,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()

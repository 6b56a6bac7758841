"""Two memory benchmarks: page faults under glibc's malloc, and iMAML's flat meta-gradient memory.

1. Page faults of a training-like allocation pattern: glibc's defaults vs keep_freed_memory().

One round allocates 8 live 16 MiB tensors and frees them together (as a batch's activations).
With glibc's defaults the freed 128 MiB can be handed back to the kernel (trimmed, or unmapped
when the blocks came from mmap) and faulted back in the next round, up to 8 x 4,096 minor faults
a round; after ``metarl.memory.keep_freed_memory()`` the heap pages are reused and a round should
take none. Each setting runs in its own process, since the settings apply once per process.
Page-fault counts depend on the kernel and on other load, so this is a benchmark, not a unit test.

    python scripts/bench_memory.py [--rounds 4] [--check]

``--check`` exits non-zero unless the tuned process takes under 2,000 faults over two rounds.

2. ``--meta-gradient``: peak memory of one meta-gradient of MAML (second order, backpropagating
through every inner step) and iMAML (Rajeswaran et al. 2019: implicit gradient by conjugate
gradient at the adapted parameters) as the inner steps go from 1 to 20, side by side, on the conv4
of MAML's Omniglot configs with random 28x28 images (no data needed). Each point runs in a fresh
process: the peak is the process's peak resident memory above its level just before the
meta-gradient (``ru_maxrss``; on CUDA, ``torch.cuda.max_memory_allocated``). MAML's grows with
the steps; iMAML's should not. The machine load is printed with the table.

    python scripts/bench_memory.py --meta-gradient [--steps 1 5 10 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys


def _child(tuned: bool, rounds: int) -> None:
    import resource

    import torch

    from metarl.memory import keep_freed_memory

    applied = keep_freed_memory() if tuned else False

    def faults_of_a_round() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tensors = [torch.ones(4 << 20) for _ in range(8)]
        del tensors
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(rounds):  # the heap grows to the working set
        faults_of_a_round()
    print(json.dumps({"applied": applied, "faults": faults_of_a_round() + faults_of_a_round()}))


def _meta_gradient_child(algo: str, steps: int, device_name: str) -> None:
    import resource

    import torch

    from envs.supervised import TaskBatch
    from metarl.algorithms import build_supervised_learner
    from metarl.algorithms.supervised_config import (
        AlgoConfig,
        InnerConfig,
        ModelConfig,
        SupervisedConfig,
        TaskConfig,
    )

    torch.set_num_threads(1)
    device = torch.device(device_name)
    ways, shots, tasks = 5, 5, 4
    cfg = SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=ways, shots=shots, query_shots=shots),
        model=ModelConfig(network="conv4_strided", filters=64),
        algo=AlgoConfig(name=algo),
        inner=InnerConfig(lr=0.1, steps=steps),
    )
    gen = torch.Generator(device=device).manual_seed(0)
    learner = build_supervised_learner(cfg, device, gen)
    params = learner.init_params()
    n = ways * shots
    labels = torch.arange(ways, device=device).repeat_interleave(shots).expand(tasks, n)
    batch = TaskBatch(
        torch.rand(tasks, n, 1, 28, 28, generator=gen, device=device),
        labels.clone(),
        torch.rand(tasks, n, 1, 28, 28, generator=gen, device=device),
        labels.clone(),
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[1]) * resource.getpagesize()
    loss = learner.outer_loss(params, batch, 0).loss
    grads = torch.autograd.grad(loss, list(params.values()))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    finite = all(bool(torch.isfinite(g).all()) for g in grads)
    print(json.dumps({"peak_mib": peak / 2**20, "finite": finite}))


def _meta_gradient(steps: list[int], device: str) -> int:
    import os

    rows = {}
    for n in steps:
        for algo in ("maml", "imaml"):
            out = subprocess.run(
                [sys.executable, __file__, "--mg-child", algo, str(n), device],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows[algo, n] = json.loads(out.strip().splitlines()[-1])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"peak memory of one meta-gradient (MiB), conv4-64, 4 tasks of 5-way 5-shot, {device}")
    print(f"machine load (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    print("| inner steps | MAML | iMAML |")
    print("|---|---|---|")
    for n in steps:
        maml, imaml = rows["maml", n], rows["imaml", n]
        print(f"| {n} | {maml['peak_mib']:.0f} | {imaml['peak_mib']:.0f} |")
    bad = [k for k, v in rows.items() if not v["finite"]]
    if bad:
        print(f"non-finite meta-gradients: {bad}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="warm-up rounds before measuring")
    parser.add_argument("--check", action="store_true", help="fail unless the pages are reused")
    parser.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--meta-gradient", action="store_true", help="MAML vs iMAML meta-gradient memory"
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (--meta-gradient)")
    parser.add_argument("--mg-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mg_child:
        _meta_gradient_child(args.mg_child[0], int(args.mg_child[1]), args.mg_child[2])
        return 0
    if args.meta_gradient:
        return _meta_gradient(args.steps, args.device)
    if args.child:
        _child(args.child == "tuned", args.rounds)
        return 0
    results = {}
    for kind in ("default", "tuned"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    print(f"{platform.system()} {platform.libc_ver()[0] or '-'}: minor page faults of two rounds")
    print("| malloc | settings applied | page faults |")
    print("|---|---|---|")
    for kind, row in results.items():
        print(f"| {kind} | {row['applied']} | {row['faults']} |")
    if args.check and results["tuned"]["applied"] and results["tuned"]["faults"] >= 2000:
        print("freed pages were not reused", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

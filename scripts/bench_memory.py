"""Page faults of a training-like allocation pattern: glibc's defaults vs keep_freed_memory().

One round allocates 8 live 16 MiB tensors and frees them together (as a batch's activations).
With glibc's defaults the freed 128 MiB can be handed back to the kernel (trimmed, or unmapped
when the blocks came from mmap) and faulted back in the next round, up to 8 x 4,096 minor faults
a round; after ``metarl.memory.keep_freed_memory()`` the heap pages are reused and a round should
take none. Each setting runs in its own process, since the settings apply once per process.
Page-fault counts depend on the kernel and on other load, so this is a benchmark, not a unit test.

    python scripts/bench_memory.py [--rounds 4] [--check]

``--check`` exits non-zero unless the tuned process takes under 2,000 faults over two rounds.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="warm-up rounds before measuring")
    parser.add_argument("--check", action="store_true", help="fail unless the pages are reused")
    parser.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
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

r"""A MANN checkpoint on Santoro et al. 2016's evaluation: accuracy by drawing in whole episodes.

Santoro et al. (2016, Table 1) report MANN's accuracy at each class's 1st, 2nd, 3rd, 4th, 5th and
10th drawing of 5-way Omniglot episodes of 10 drawings per class, read in a random order with the
label of each step shown at the next (the protocol MANN trains on). The 82.8 % that MAML's Table 1
quotes as MANN's "5-way 1-shot" is the 2nd drawing, and its 94.9 % "5-shot" the 5th.
``metarl eval`` measures a MANN run as every other learner (the support, then each query read as
its own last step); this script measures the committed checkpoint of a run the paper's way, on
held-out tasks of the run's test split, and writes ``OUT/instances.json`` and
``OUT/instances.md`` (mean and 95% interval per drawing, beside the paper's row).

    python scripts/mann_instances.py --run results/mann-omniglot_5w1s-mem16 \
        --out results/mann-omniglot_5w1s-mem16-instances \
        [--num-tasks 1000] [--drawings 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER = {1: 36.4, 2: 82.8, 3: 91.0, 4: 92.6, 5: 94.9, 10: 98.1}
"""Santoro et al. 2016, Table 1, MANN on 5-way Omniglot (recalled, not checked here; the 2nd and
5th agree with MAML's Table 1, Finn et al. 2017)."""
CHUNK = 50
_SEED_OFFSET = 104_729  # the episodes' orders: apart from the training and eval streams


def instance_curves(run: Path, num_tasks: int, drawings: int, seed: int) -> torch.Tensor:
    """``[num_tasks, drawings]`` accuracy at each class's drawing, from ``run``'s last checkpoint.

    Raises:
        FileNotFoundError: If ``run`` has no config.yaml or checkpoint.
        ValueError: If the run is not a MANN run or the arguments are out of range.
    """
    from metarl.algorithms.supervised import build_family, build_supervised_learner
    from metarl.checkpoint import final_checkpoint, load_checkpoint
    from metarl.cli import load_run_config

    if num_tasks < 1 or drawings < 2:
        raise ValueError(
            f"--num-tasks must be >= 1 and --drawings >= 2, got {num_tasks} and {drawings}"
        )
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run} has no config.yaml")
    final = final_checkpoint(run)
    if final is None:
        raise FileNotFoundError(f"{run} has no checkpoint (*.pt or checkpoints/*.pt)")
    _, cfg = load_run_config(run / "config.yaml")
    if cfg.algo.name != "mann":
        raise ValueError(f"{run} is a {cfg.algo.name} run; this evaluation is MANN's")
    device = torch.device("cpu")
    learner = build_supervised_learner(cfg, device, torch.Generator().manual_seed(cfg.run.seed))
    state = load_checkpoint(final, map_location=device)
    params = {k: v.to(device) for k, v in state["params"].items()}
    shots = drawings // 2
    task = dataclasses.replace(cfg.task, test_shots=shots, test_query_shots=drawings - shots)
    family = build_family(task, "test", device)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for start in range(0, num_tasks, CHUNK):
        batch = family.sample(min(CHUNK, num_tasks - start), gen, training=False)
        rows.append(learner.instance_accuracy(params, batch, seed * _SEED_OFFSET + start))
    return torch.cat(rows)


def summary(curves: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and 95% half-interval (1.96 standard errors) of each drawing, in percent."""
    n = curves.shape[0]
    mean = curves.mean(dim=0) * 100
    std = curves.std(dim=0, unbiased=True) * 100 if n > 1 else torch.zeros_like(mean)
    return mean.tolist(), (1.96 * std / math.sqrt(n)).tolist()


def table(mean: list[float], ci: list[float], num_tasks: int, run: str) -> str:
    """The markdown table: our drawings beside Santoro et al.'s."""
    shown = [d for d in (1, 2, 3, 4, 5, 10) if d <= len(mean)]
    head = " | ".join(
        f"{d}{'st' if d == 1 else 'nd' if d == 2 else 'rd' if d == 3 else 'th'}" for d in shown
    )
    lines = [
        f"| drawing of the class | {head} |",
        "| --- |" + " --- |" * len(shown),
        f"| `{run}` ({num_tasks} test episodes) | "
        + " | ".join(f"{mean[d - 1]:.1f} ± {ci[d - 1]:.1f} %" for d in shown)
        + " |",
        "| MANN, Santoro et al. 2016, Table 1 (recalled, not checked here) | "
        + " | ".join(f"{PAPER[d]} %" for d in shown)
        + " |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", default="results/mann-omniglot_5w1s-mem16", help="a MANN run directory"
    )
    parser.add_argument("--out", required=True, help="folder for instances.json and instances.md")
    parser.add_argument("--num-tasks", type=int, default=1000, help="held-out episodes")
    parser.add_argument("--drawings", type=int, default=10, help="drawings per class (paper: 10)")
    parser.add_argument("--seed", type=int, default=1, help="draws the tasks and their orders")
    args = parser.parse_args(argv)
    run = Path(args.run)
    try:
        curves = instance_curves(run, args.num_tasks, args.drawings, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean, ci = summary(curves)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "run": str(run),
        "num_tasks": args.num_tasks,
        "drawings": args.drawings,
        "seed": args.seed,
        "accuracy_percent": mean,
        "ci95_percent": ci,
        "paper": {str(k): v for k, v in PAPER.items()},
    }
    (out / "instances.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = table(mean, ci, args.num_tasks, run.name)
    (out / "instances.md").write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""UCB1 on RL²'s held-out bandits: the tuned variant the eval files report, and textbook UCB1.

The classic-baseline columns of the RL² bandit runs (``results/rl2-bandit_k*_n*/eval.json``) use
UCB1 as the RL² appendix describes it: every arm starts at one success and one failure
(pseudo-counts), and the bonus scale ``c`` is tuned (``metarl.rl.classic_bandit.UCB1_C`` = 0.2).
Textbook UCB1 (Auer et al. 2002, Fig. 1) pulls each arm once, then plays the highest
``s_a / n_a + sqrt(2 ln t / n_a)``, i.e. plain counts and ``c = 1``. This script redraws each
run's held-out tasks (the draw ``metarl train``'s evaluation makes, seed ``run.seed + 1``),
checks that the tuned variant reproduces the eval file's UCB1 column when all of its tasks are
used, and writes both variants (and ``c = 1`` with pseudo-counts) to ``OUT/ucb1.json``.

``python scripts/ucb1_variants.py --out results/rl2-bandit-ucb1`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from envs.light.bandit import BanditEngine, BanditTask
from envs.vector import make_vec
from metarl.config import load_yaml
from metarl.rl import classic_bandit as classic
from metarl.rl.evaluation import heldout_tasks

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("rl2-bandit_k5_n10", "rl2-bandit_k10_n10", "rl2-bandit_k5_n100", "rl2-bandit_k10_n100")


def textbook_ucb1(tasks: list[BanditTask], num_pulls: int, seed: int) -> np.ndarray:
    """Trial returns of textbook UCB1 (each arm once, then ``c = 1`` on plain counts).

    Returns:
        ``[len(tasks)]`` total reward of each task's trial.
    """
    rng = np.random.default_rng(seed)
    engine = BanditEngine(len(tasks), num_arms=len(tasks[0].probs))
    engine.set_tasks(list(tasks))

    def policy(successes: np.ndarray, pulls: np.ndarray, t: int, g: np.random.Generator):
        means = np.divide(successes, pulls, out=np.zeros(pulls.shape), where=pulls > 0)
        with np.errstate(invalid="ignore"):  # 0/0 for unpulled arms at t = 1: their index is inf
            indices = classic.ucb1_indices(means, pulls, max(t, 1), c=1.0)
        best = indices.max(axis=1, keepdims=True)  # ties uniformly at random
        return np.argmax(np.where(indices >= best, g.random(indices.shape), -1.0), axis=1)

    return classic.simulate_bandit(engine, num_pulls, policy, rng).sum(axis=1)


def _summary(totals: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(totals.mean()),
        "ci95": float(1.96 * totals.std(ddof=1) / np.sqrt(len(totals))),
    }


def variants(run: str, num_tasks: int | None, results: Path) -> dict[str, Any]:
    """The three UCB1 variants on ``run``'s held-out tasks, and the eval file's UCB1 number.

    Raises:
        ValueError: If the tuned variant does not reproduce the eval file on all of its tasks.
    """
    cfg = load_yaml((results / run / "config.yaml").read_text(encoding="utf-8"))
    result = json.loads((results / run / "eval.json").read_text(encoding="utf-8"))
    env_id, pulls = cfg["env"]["id"], int(result["extra"]["episodes_per_trial"])
    seed, n = int(result["seed"]), num_tasks or int(result["num_tasks"])
    vec = make_vec(env_id, 1)
    try:
        tasks = heldout_tasks(vec.distribution, n, seed, "test")
        if not all(isinstance(t, BanditTask) for t in tasks):
            raise ValueError(f"{run}: {env_id} is not a bandit family")
        bandits = [t for t in tasks if isinstance(t, BanditTask)]
    finally:
        vec.close()
    tuned = classic.bandit_baselines(bandits, pulls, np.random.default_rng(seed))["ucb1"].sum(1)
    pseudo = classic.bandit_baselines(bandits, pulls, np.random.default_rng(seed), ucb1_c=1.0)
    out = {
        "env": env_id,
        "pulls": pulls,
        "num_tasks": n,
        "seed": seed,
        "ucb1": _summary(tuned),
        "ucb1_pseudo_counts_c1": _summary(pseudo["ucb1"].sum(1)),
        "ucb1_textbook": _summary(textbook_ucb1(bandits, pulls, seed)),
    }
    if n == result["num_tasks"]:
        reported = result["extra"]["trial_return"]["ucb1"]["mean"]
        if not np.isclose(out["ucb1"]["mean"], reported, rtol=0, atol=1e-9):
            raise ValueError(f"{run}: tuned UCB1 gives {out['ucb1']['mean']}, file {reported}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for ucb1.json")
    parser.add_argument("--num-tasks", type=int, default=None, help="default: the eval file's")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    runs = {run: variants(run, args.num_tasks, args.results) for run in RUNS}
    data: dict[str, Any] = {
        "note": (
            "ucb1: c = 0.2 with one success and one failure per arm (RL² appendix; the eval "
            "files' column); ucb1_pseudo_counts_c1: the same with c = 1; ucb1_textbook: "
            "Auer et al. 2002 (each arm once, then c = 1 on plain counts)"
        ),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ucb1.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for run, row in runs.items():
        cells = ", ".join(
            f"{k} {v['mean']:.2f}" for k, v in row.items() if isinstance(v, dict) and "mean" in v
        )
        print(f"{run}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job of `make demo`: a short meta-training run plus a few-shot evaluation.

1. A tour of every task env: tasks sampled from each distribution with a seeded generator, one
   vectorized batch (one task per sub-env) with random actions, the mean return and env steps/s.
2. MAML-TRPO on 2D navigation (configs/maml_trpo/navigation2d.yaml, the paper's setup) for a
   short budget, then the MAML test protocol on held-out goals: the return after 0..3
   policy-gradient steps, beside a policy pre-trained on all goals for the same budget and a
   random initialisation, fine-tuned the same way (``--job maml-trpo``, the default).
   ``--job maml-sinusoid`` runs MAML on sinusoid regression instead (MSE after 0..10 steps).

MKL runs in its reproducible mode (``MKL_CBWR=COMPATIBLE,STRICT`` unless set otherwise), so that
the table does not depend on which x86-64 CPU runs it. The MAML-TRPO job writes what it measured
to ``--results-dir`` (default ``results/demo``): the resolved config, the eval JSON/CSV/PNG, and
``run.json`` (commit, CPU, library versions, wall clock, the printed table).
``scripts/readme_tables.py`` renders the README's demo table from them.

Omniglot is optional: without its archives the supervised tour samples sinusoids only and says
how to get them (``metarl data omniglot``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from readme_tables import demo_table

import envs
from envs.vector import make_vec
from metarl.memory import keep_freed_memory


def _short(task: envs.Task) -> str:
    parts = []
    for key, value in task.to_dict().items():
        if isinstance(value, str | bytes):  # Meta-World: the task class name and its data
            parts.append(f"{key}={value[:16]!s}" if isinstance(value, str) else "")
            continue
        flat = np.asarray(value, dtype=np.float64).ravel()
        text = ", ".join(f"{v:.2f}" for v in flat[:3]) + (", ..." if flat.size > 3 else "")
        parts.append(f"{key}=({text})" if flat.size > 1 else f"{key}={flat[0]:.2f}")
    return " ".join(p for p in parts if p)


def tour(num_envs: int, steps: int, seed: int) -> None:
    """Samples tasks for every registered env and runs one random-action batch on each."""
    rng = np.random.default_rng(seed)
    header = f"sampled task (first of {num_envs})"
    print(f"{'env id':32} {header:58} {'return':>9} {'steps/s':>10}")
    for env_id in envs.task_env_ids():
        if "MetaWorld" in env_id:  # optional extra; building its task lists takes up to minutes
            print(f"{env_id:32} (Meta-World: left out of the tour; see the README)")
            continue
        tasks = envs.get_task_distribution(env_id).sample(num_envs, rng)
        vec = make_vec(env_id, num_envs, tasks=tasks)
        obs, _ = vec.reset(seed=seed)
        vec.action_space.seed(seed)  # gymnasium seeds a space's own generator from entropy
        horizon = vec.horizon or steps
        returns = np.zeros(num_envs)
        start = time.perf_counter()
        for _ in range(min(steps, horizon)):
            obs, reward, *_ = vec.step(vec.action_space.sample())
            returns += reward
        rate = num_envs * min(steps, horizon) / (time.perf_counter() - start)
        vec.close()
        print(f"{env_id:32} {_short(tasks[0])[:58]:58} {returns.mean():9.2f} {rate:10,.0f}")
    supervised_tour(seed)


def supervised_tour(seed: int) -> None:
    """Samples a meta-batch from each supervised family and times the sampling."""
    import torch

    from envs.supervised import OmniglotFamily, SinusoidFamily

    gen = torch.Generator().manual_seed(seed)
    sinusoid = SinusoidFamily()
    batch = sinusoid.sample(25, 10, 10, gen)
    start = time.perf_counter()
    for _ in range(100):
        sinusoid.sample(25, 10, 10, gen)
    rate = 100 / (time.perf_counter() - start)
    amp, phase = batch.params["amplitude"][0].item(), batch.params["phase"][0].item()
    print(
        f"\n{'sinusoid (25 tasks, K=10)':32} {f'amplitude={amp:.2f} phase={phase:.2f}':58} "
        f"{'':9} {rate:10,.0f} batches/s"
    )
    start = time.perf_counter()
    try:
        omniglot = OmniglotFamily("train", "maml")
    except FileNotFoundError:
        print(
            f"{'omniglot':32} not found, skipped (optional: `metarl data omniglot` downloads it, "
            "about 16 MB)"
        )
        return
    load = time.perf_counter() - start
    batch = omniglot.sample(32, 5, 1, 1, gen)
    start = time.perf_counter()
    for _ in range(100):
        omniglot.sample(32, 5, 1, 1, gen)
    rate = 100 / (time.perf_counter() - start)
    chars = batch.params["characters"][0].tolist()
    print(
        f"{'omniglot 5-way 1-shot (32 tasks)':32} {f'characters={chars}':58} {'':9} "
        f"{rate:10,.0f} batches/s (images loaded in {load:.1f} s)"
    )


def maml_sinusoid(iterations: int, seed: int, run_root: Path) -> None:
    """Meta-trains MAML on sinusoids briefly and prints its adaptation curve vs. the init's."""
    import torch

    from metarl.algorithms import build_supervised_learner, supervised
    from metarl.config import load_config
    from metarl.evaluation import write_eval_results
    from metarl.runs import open_run_from_config

    run_dir = run_root / time.strftime("maml-sinusoid-%Y%m%d-%H%M%S")
    cfg = load_config(
        supervised.SupervisedConfig,
        "configs/maml/sinusoid.yaml",
        [
            f"optim.iterations={iterations}",
            f"run.seed={seed}",
            f'run.run_dir="{run_dir}"',
            "run.device=cpu",
            "run.checkpoint_every=500",
        ],
    )
    device = torch.device("cpu")
    torch.set_num_threads(cfg.run.num_threads or torch.get_num_threads())
    learner = build_supervised_learner(cfg, device, torch.Generator().manual_seed(seed))
    init = {k: v.detach() for k, v in learner.init_params().items()}
    print(
        f"\nMAML on sinusoid regression: {iterations} meta-iterations (paper: 70,000), "
        f"meta-batch {cfg.task.meta_batch_size}, K={cfg.task.shots}; run dir {run_dir}"
    )
    start = time.perf_counter()
    with open_run_from_config(cfg, cfg.run) as run:
        result = supervised.train(
            cfg, learner, supervised.build_family(cfg.task, "train", device), run, device
        )
        print(f"trained in {time.perf_counter() - start:.1f} s")
        test = supervised.build_family(cfg.task, "test", device)
        kwargs = {"num_tasks": 200, "steps": 10, "seed": seed + 1}
        trained = supervised.adaptation_curves(learner, result.params, test, **kwargs)
        untrained = supervised.adaptation_curves(learner, init, test, **kwargs)
        files = write_eval_results(
            run.eval_dir / "eval.json",
            algorithm="maml",
            task_family=cfg.task.name,
            metric="mse",
            steps=list(range(11)),
            curves={"maml": trained, "random init": untrained},
            seed=seed + 1,
        )
    print(
        "\nMSE on 200 held-out sinusoids, 5 support points (mean ± 95% CI); paper after 1/10 "
        "steps: 0.67/0.35 at 70k iterations"
    )
    print(f"{'steps':>5}  {'MAML':>16}  {'random init':>16}")
    ci = lambda v: 1.96 * v.std(0, ddof=1) / np.sqrt(len(v))  # noqa: E731
    for k in (0, 1, 2, 3, 5, 10):
        print(
            f"{k:5d}  {trained[:, k].mean():8.3f} ± {ci(trained)[k]:5.3f}  "
            f"{untrained[:, k].mean():8.3f} ± {ci(untrained)[k]:5.3f}"
        )
    print(f"curve: {files.png}")


def maml_trpo_navigation(
    iterations: int,
    seed: int,
    run_root: Path,
    eval_tasks: int = 20,
    eval_episodes: int = 20,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    """Meta-trains MAML-TRPO on Navigation2D briefly and prints the adaptation table.

    Returns:
        What ``run.json`` records about the job; its files are copied to ``results_dir``.
    """
    import torch

    from metarl.algorithms import maml_rl_eval
    from metarl.config import load_config

    run_dir = run_root / time.strftime("maml_trpo-navigation2d-%Y%m%d-%H%M%S")
    cfg = load_config(
        maml_rl_eval.CONFIG_CLASS,
        "configs/maml_trpo/navigation2d.yaml",
        [
            f"optim.iterations={iterations}",
            f"eval.pretrain_iterations={iterations}",
            "eval.oracle=false",  # the SB3 oracle takes minutes; `metarl eval` runs it
            f"eval.episodes_per_task={eval_episodes}",
            f"run.num_eval_tasks={eval_tasks}",
            f"run.seed={seed}",
            f'run.run_dir="{run_dir}"',
            "run.device=cpu",
            f"run.checkpoint_every={iterations}",
            "run.num_threads=1",
        ],
    )
    torch.set_num_threads(1)
    print(
        f"\nMAML-TRPO on Navigation2D: {iterations} meta-iterations (released script: 100), "
        f"meta-batch {cfg.env.meta_batch_size} goals × {cfg.env.episodes_per_task} episodes × "
        f"H {cfg.env.horizon}, then the same budget of multi-task pre-training for the baseline; "
        f"run dir {run_dir}"
    )
    start = time.perf_counter()
    path = maml_rl_eval.train_from_config(cfg, torch.device("cpu"))
    seconds = time.perf_counter() - start
    result = json.loads(path.read_text())
    print(f"trained and evaluated in {seconds:.0f} s")
    print(
        f"\nReturn on {eval_tasks} held-out goals after k policy-gradient steps of {eval_episodes} "
        "episodes "
        "(mean ± 95% CI); paper (100 iterations): MAML −40 → −12 → −3, pretrained −41 → −20"
    )
    table = demo_table(result)
    print(table)
    print(f"curves: {path.with_suffix('.png')}")
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "config.yaml", results_dir / "config.yaml")
        for suffix in (".json", ".csv", ".png"):
            shutil.copyfile(path.with_suffix(suffix), results_dir / f"eval{suffix}")
    return {
        "job": "maml-trpo",
        "config": "configs/maml_trpo/navigation2d.yaml",
        "iterations": iterations,
        "eval_tasks": eval_tasks,
        "eval_episodes": eval_episodes,
        "train_and_eval_seconds": round(seconds, 1),
        "table": table,
    }


def torch_threads() -> int:
    """Torch's intra-op thread count now (the MAML-TRPO job sets it to 1)."""
    import torch

    return torch.get_num_threads()


def provenance() -> dict[str, Any]:
    """The commit (at start), machine and library versions a result was measured with."""
    import mujoco
    import torch

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if status is None else bool(status),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "mujoco": mujoco.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--job", choices=["maml-trpo", "maml-sinusoid"], default="maml-trpo", help="what to train"
    )
    parser.add_argument(
        "--iterations", type=int, help="meta-iterations (default: 20 MAML-TRPO, 10,000 sinusoid)"
    )
    parser.add_argument("--eval-tasks", type=int, default=20, help="held-out goals (MAML-TRPO)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-root", default="runs/demo")
    parser.add_argument(
        "--results-dir",
        default="results/demo",
        help="where the MAML-TRPO job copies its config and eval files and writes run.json "
        "('' to write nothing)",
    )
    args = parser.parse_args()
    # MKL picks its matrix-multiply kernels by CPU (vendor, instruction set) and they round
    # differently, so 20 TRPO iterations drift apart on two CPUs. Its conditional numerical
    # reproducibility mode runs one code path on any x86-64 CPU; set before MKL's first call.
    os.environ.setdefault("MKL_CBWR", "COMPATIBLE,STRICT")
    started, cpu_started = time.perf_counter(), time.process_time()
    when = datetime.datetime.now(datetime.timezone.utc)
    source = provenance() if args.results_dir and args.job == "maml-trpo" else {}
    keep_freed_memory()  # as `metarl train` does
    np.random.seed(args.seed)
    tour(args.num_envs, args.steps, args.seed)
    if args.job == "maml-sinusoid":
        maml_sinusoid(args.iterations or 10000, args.seed, Path(args.run_root))
        return
    results_dir = Path(args.results_dir) if args.results_dir else None
    job = maml_trpo_navigation(
        args.iterations or 20,
        args.seed,
        Path(args.run_root),
        args.eval_tasks,
        args.eval_episodes,
        results_dir,
    )
    if results_dir is not None:
        record = {
            **job,
            "command": " ".join(["python", *sys.argv]),
            "seed": args.seed,
            "started_utc": when.isoformat(timespec="seconds"),
            "wall_clock_seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(time.process_time() - cpu_started, 1),
            **source,
            "torch_threads": torch_threads(),
        }
        (results_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"results: {results_dir}/ (run.json, config.yaml, eval.json/csv/png)")


if __name__ == "__main__":
    main()

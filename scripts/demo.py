"""The main job of `make demo`: a short meta-training run plus a few-shot evaluation.

1. A tour of every task env: tasks sampled from each distribution with a seeded generator, one
   vectorized batch (one task per sub-env) with random actions, the mean return and env steps/s.
2. MAML-TRPO on 2D navigation (configs/maml_trpo/navigation2d.yaml, the paper's setup) for a
   short budget, then the MAML test protocol on held-out goals: the return after 0..3
   policy-gradient steps, beside a policy pre-trained on all goals for the same budget and a
   random initialisation, fine-tuned the same way (``--job maml-trpo``, the default).
   ``--job maml-sinusoid`` runs MAML on sinusoid regression instead (MSE after 0..10 steps).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import envs
from envs.vector import make_vec
from metarl.memory import keep_freed_memory


def _short(task: envs.Task) -> str:
    parts = []
    for key, value in task.to_dict().items():
        flat = np.asarray(value, dtype=np.float64).ravel()
        text = ", ".join(f"{v:.2f}" for v in flat[:3]) + (", ..." if flat.size > 3 else "")
        parts.append(f"{key}=({text})" if flat.size > 1 else f"{key}={flat[0]:.2f}")
    return " ".join(parts)


def tour(num_envs: int, steps: int, seed: int) -> None:
    """Samples tasks for every registered env and runs one random-action batch on each."""
    rng = np.random.default_rng(seed)
    header = f"sampled task (first of {num_envs})"
    print(f"{'env id':32} {header:58} {'return':>9} {'steps/s':>10}")
    for env_id in envs.task_env_ids():
        tasks = envs.get_task_distribution(env_id).sample(num_envs, rng)
        vec = make_vec(env_id, num_envs, tasks=tasks)
        obs, _ = vec.reset(seed=seed)
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
    omniglot = OmniglotFamily("train", "maml")
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
    iterations: int, seed: int, run_root: Path, eval_tasks: int = 20, eval_episodes: int = 20
) -> None:
    """Meta-trains MAML-TRPO on Navigation2D briefly and prints the adaptation table."""
    import json

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
    result = json.loads(path.read_text())
    print(f"trained and evaluated in {time.perf_counter() - start:.0f} s")
    curves = {"MAML-TRPO": result, **result.get("baselines", {})}
    steps = result["steps"]
    print(
        f"\nReturn on {eval_tasks} held-out goals after k policy-gradient steps of {eval_episodes} "
        "episodes "
        "(mean ± 95% CI); paper (100 iterations): MAML −40 → −12 → −3, pretrained −41 → −20"
    )
    print(f"{'':12}" + "".join(f"{f'{k} steps':>16}" for k in steps))
    for name, curve in curves.items():
        pairs = zip(curve["mean"], curve["ci95"], strict=True)
        cells = "".join(f"{m:9.1f} ± {c:4.1f}" for m, c in pairs)
        print(f"{name:12}{cells}")
    print(f"curves: {path.with_suffix('.png')}")


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
    args = parser.parse_args()
    keep_freed_memory()  # as `metarl train` does
    np.random.seed(args.seed)
    tour(args.num_envs, args.steps, args.seed)
    if args.job == "maml-trpo":
        maml_trpo_navigation(
            args.iterations or 20,
            args.seed,
            Path(args.run_root),
            args.eval_tasks,
            args.eval_episodes,
        )
    else:
        maml_sinusoid(args.iterations or 10000, args.seed, Path(args.run_root))


if __name__ == "__main__":
    main()

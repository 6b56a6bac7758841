"""Wall time of a MAML-TRPO meta-iteration on HalfCheetahVel, and sampling throughput, in one run.

The meta-iteration of ``configs/maml_trpo/halfcheetah_vel.yaml`` (meta-batch 40, 20 episodes per
task, horizon 100, second-order TRPO) is split into sampling (env steps plus one batched policy
forward per step, per-task parameters after adaptation), adaptation (linear baselines, advantages,
the inner step) and the outer update. Sampling throughput (env steps/s with the policies in the
loop) is compared with the env benchmark's figure measured here in the same process: the same
vector env (``make_vec``, sync backend, same number of envs, same horizon) stepped with random
actions. MuJoCo's cost per step depends on the actions (a policy's small Gaussian controls make
the cheetah's steps dearer than uniform random ones), so it is also compared with the same env
replaying the meta-iteration's own actions (every batch, pre- and post-update): identical
physics, only the policy taken out of the loop. Every row is timed the way the sampler works:
per batch, the reset (seed, one task per sub-env) plus H steps. Prints markdown tables and
optionally writes JSON. Like ``metarl train``, it keeps freed memory in the process
(:mod:`metarl.memory`).

``--sampling-only`` skips the outer update: it times the sampling of one meta-iteration (θ at its
initialisation, then the adapted θ'_i) ``--rounds`` times, interleaved on one env with the same
resets stepping uniform random actions, Gaussian random actions at the initial policy's std and
the round's replayed actions, and prints the medians, the medians of the per-round ratios and
the load average (a few minutes at full size).

    python scripts/bench_maml_rl.py [--iterations 2] [--device cpu|cuda|auto] [--threads 1]
                                    [--first-order] [--quick] [--out F]
                                    [--sampling-only [--rounds 5]]
                                    [--outer-repeats 3] [--outer-only]

The outer update is also timed on its own, on one meta-batch, with each of TRPO's KL products
(``trpo.fvp``): the Gauss-Newton form (two backward passes over graphs saved once per update, per
conjugate-gradient iteration), the same with ``trpo.compile`` (both products read from compiled
graphs built once per update; its first, compiling update is the warm-up), that with
``trpo.step_curvature=cg`` (the step length's ``s^T H s`` from conjugate gradient's residual, one
product fewer) and the double backward through the inner step, interleaved, with the number of
products, the matrix-product FLOPs counted (``torch.utils.flop_counter``), the same matrix products
timed in a bare loop (the matmul bound) and the machine load beside them.

``--device cuda`` puts the policy (and the inner and outer updates) on the GPU; envs stay on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from typing import Literal

import numpy as np
import torch
from gymnasium.spaces import Box
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from envs.vector import TaskVectorEnv
from metarl.algorithms import maml_rl as M
from metarl.algorithms import maml_rl_inner as inner_module
from metarl.config import load_config
from metarl.config_sections import section
from metarl.device import get_device
from metarl.memory import keep_freed_memory
from metarl.rl import trpo as trpo_module
from metarl.rl.sampler import actions_to_env, sample_episodes

CONFIG = "configs/maml_trpo/halfcheetah_vel.yaml"
QUICK = ["env.meta_batch_size=4", "env.episodes_per_task=2", "env.horizon=10"]

Replay = tuple[list, list[int], list[torch.Tensor]]
"""A meta-iteration's tasks, reset seeds and each batch's actions ``[T, E, H, ...]``."""


def _horizon(vec: TaskVectorEnv) -> int:
    assert vec.horizon is not None  # make_env gives the config's horizon
    return vec.horizon


def _env_tasks(cfg: M.MAMLRLConfig, tasks: list) -> list:
    return [t for t in tasks for _ in range(cfg.env.episodes_per_task)]


def env_rate(
    vec: TaskVectorEnv, env_tasks: list, seeds: list[int], batches: list[list[np.ndarray]]
) -> float:
    """Env steps/s of ``vec`` stepping given actions, no policy in the loop.

    Each batch is timed like the sampler's: the reset it does (``seed``, one task per sub-env,
    800 MuJoCo resets at full size) plus H steps (the last one auto-resets every sub-env).
    """
    elapsed = 0.0
    for seed, actions in zip(seeds, batches, strict=True):
        start = time.perf_counter()
        vec.reset(seed=seed, options={"tasks": env_tasks})
        for a in actions:
            vec.step(a)
        elapsed += time.perf_counter() - start
    return sum(len(b) for b in batches) * vec.num_envs / elapsed


def random_actions(vec: TaskVectorEnv, horizon: int, rng: np.random.Generator) -> list[np.ndarray]:
    """H batches of uniform random actions in the action space (the env benchmark's)."""
    space = vec.single_action_space
    assert isinstance(space, Box)
    shape = (vec.num_envs, *space.shape)
    return [rng.uniform(space.low, space.high, shape).astype(space.dtype) for _ in range(horizon)]


def replayed_actions(vec: TaskVectorEnv, actions: torch.Tensor) -> list[np.ndarray]:
    """A batch's actions ``[T, E, H, ...]`` as the H arrays the sampler gave ``vec.step``."""
    steps = actions.flatten(0, 1).transpose(0, 1)
    return [np.ascontiguousarray(actions_to_env(a, vec)) for a in steps]


def gaussian_actions(
    vec: TaskVectorEnv, horizon: int, std: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """H batches of ``N(0, std²)`` actions: random, but distributed like the initial policy's."""
    space = vec.single_action_space
    shape = (vec.num_envs, *(space.shape or ()))
    return [rng.normal(0.0, std, shape).astype(space.dtype) for _ in range(horizon)]


def random_action_rate(cfg: M.MAMLRLConfig, replay: Replay, repeats: int = 3) -> float:
    """Env steps/s of the same vector env stepped with random actions (the env benchmark).

    The same resets (seeds, tasks) and number of batches as the sampler's meta-iteration.
    """
    tasks, seeds, _ = replay
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    rng = np.random.default_rng(0)
    batches = [random_actions(vec, _horizon(vec), rng) for _ in seeds]
    rates = [env_rate(vec, _env_tasks(cfg, tasks), seeds, batches) for _ in range(repeats)]
    vec.close()
    return float(np.median(rates))


def replay_rate(cfg: M.MAMLRLConfig, replay: Replay, repeats: int = 3) -> float:
    """Env steps/s of the vector env stepping a meta-iteration's recorded actions.

    Every batch of the last meta-iteration (pre- and post-update), from the same reset seeds
    and tasks: identical physics, only the policy taken out of the loop.
    """
    tasks, seeds, actions = replay
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    batches = [replayed_actions(vec, a) for a in actions]
    rates = [env_rate(vec, _env_tasks(cfg, tasks), seeds, batches) for _ in range(repeats)]
    vec.close()
    return float(np.median(rates))


def sampling_rounds(cfg: M.MAMLRLConfig, device: torch.device, rounds: int) -> dict[str, list]:
    """Random actions, replayed actions and the policies in the loop, interleaved on one env.

    A meta-iteration's sampling (θ on the meta-batch, then the adapted θ'_i; no outer update, so
    θ stays at its initialisation) is timed ``rounds`` times, each time next to the same vector
    env stepping that round's actions without the policy, uniform random actions and Gaussian
    random actions at the initial policy's std, from the same resets. The order of the four
    rotates from round to round, so a change of machine load hits each alike. Returns each one's
    env steps/s per round and the load averages.
    """
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator(device=device).manual_seed(0), device)
    params = M.init_params(policy)
    tasks = vec.distribution.sample(cfg.env.meta_batch_size, np.random.default_rng(0))
    env_tasks = _env_tasks(cfg, tasks)
    seeds = [k * vec.num_envs for k in range(cfg.inner.steps + 1)]
    gen = torch.Generator(device=device).manual_seed(0)
    path = M.collect_meta_batch(cfg, policy, params, vec, tasks, seeds, gen, device).adapted
    rng = np.random.default_rng(0)
    episodes, horizon = cfg.env.episodes_per_task, _horizon(vec)
    steps = len(seeds) * vec.num_envs * horizon
    out: dict[str, list] = {"random": [], "gaussian": [], "replayed": [], "policy": [], "load": []}
    std = cfg.policy.init_std
    recorded: list[torch.Tensor] = []

    def run_policy() -> float:
        recorded.clear()
        elapsed = 0.0
        for k, (seed, theta) in enumerate(zip(seeds, path, strict=True)):
            start = time.perf_counter()
            batch = sample_episodes(
                vec, policy, theta, tasks, episodes, per_task_params=k > 0, generator=gen,
                device=device, seed=seed,
            )  # fmt: skip
            elapsed += time.perf_counter() - start
            recorded.append(batch.actions)
        return steps / elapsed

    run_policy()  # the first round's actions to replay, and a warm-up
    for r in range(rounds):
        todo = {
            "random": lambda: env_rate(
                vec, env_tasks, seeds, [random_actions(vec, horizon, rng) for _ in seeds]
            ),
            "gaussian": lambda: env_rate(
                vec, env_tasks, seeds, [gaussian_actions(vec, horizon, std, rng) for _ in seeds]
            ),
            "replayed": lambda: env_rate(
                vec, env_tasks, seeds, [replayed_actions(vec, a) for a in recorded]
            ),
            "policy": run_policy,
        }
        names = list(todo)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(todo[name]())
        out["load"].append(os.getloadavg()[0])
    vec.close()
    return out


def meta_iterations(
    cfg: M.MAMLRLConfig, device: torch.device, iterations: int
) -> tuple[list[dict[str, float]], Replay]:
    """Times ``iterations`` meta-iterations (after one warm-up) split into their phases.

    Returns:
        One row of timings per iteration, and the last iteration's tasks, reset seeds and
        actions of each batch ``[T, E, H, ...]`` for :func:`replay_rate`.
    """
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator(device=device).manual_seed(0), device)
    params = M.init_params(policy)
    rows = []
    for it in range(iterations + 1):
        tasks = vec.distribution.sample(cfg.env.meta_batch_size, np.random.default_rng(it))
        gen = torch.Generator(device=device).manual_seed(it)
        seeds = [it * 10_000 + k * vec.num_envs for k in range(cfg.inner.steps + 1)]
        start = time.perf_counter()
        batch = M.collect_meta_batch(cfg, policy, params, vec, tasks, seeds, gen, device)
        tic = time.perf_counter()
        (params, _), metrics = M.outer_update(policy, params, None, batch, cfg)
        float(metrics["kl"])  # wait for the device
        outer = time.perf_counter() - tic
        steps = (cfg.inner.steps + 1) * vec.num_envs * vec.horizon
        row = {**batch.seconds, "outer_update": outer, "total": time.perf_counter() - start}
        row["sampling_steps_per_second"] = steps / batch.seconds["sampling"]
        if it > 0:  # the first iteration warms up allocators and caches
            rows.append(row)
        replay = (tasks, seeds, [*(b.actions for b in batch.inner), batch.valid.actions])
    vec.close()
    return rows, replay


def print_sampling(rates: dict[str, float], runs: dict[str, list] | None = None) -> None:
    """The sampling table: env steps/s and ratios to random actions (and per-round medians)."""
    random_rate, replayed, ours = rates["random"], rates["replayed"], rates["policy"]
    print("\n| sampling (reset + H steps per batch) | env steps/s | ratio |")
    print("|---|---|---|")
    print(f"| random actions (make_vec sync) | {random_rate:,.0f} | 1.00 |")
    if "gaussian" in rates:
        gauss = rates["gaussian"]
        print(f"| random N(0, init_std²) actions | {gauss:,.0f} | {gauss / random_rate:.2f} |")
    print(
        f"| the policies' actions replayed (same physics) | {replayed:,.0f} | "
        f"{replayed / random_rate:.2f} |"
    )
    print(f"| per-task policies in the loop | {ours:,.0f} | {ours / random_rate:.2f} |")
    print(f"\nwith the policies in the loop: {ours / replayed:.2f}× the replayed actions' rate")
    if runs is not None:
        paired = {
            k: float(np.median(np.divide(runs[a], runs[b])))
            for k, a, b in (
                ("policy/random", "policy", "random"),
                ("gaussian/random", "gaussian", "random"),
                ("replayed/random", "replayed", "random"),
                ("policy/replayed", "policy", "replayed"),
            )
        }
        print(
            f"medians of {len(runs['policy'])} interleaved rounds; per-round ratios, median: "
            + ", ".join(f"{k} {v:.3f}" for k, v in paired.items())
        )
        print(
            "load average (1 min) after each round: " + ", ".join(f"{x:.2f}" for x in runs["load"])
        )
    else:
        print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


# ----------------------------------------------------------------------------------------------
# outer update: the Gauss-Newton and the double-backward KL products, and the matmul bound
# ----------------------------------------------------------------------------------------------

MATMULS = {"mm", "bmm", "addmm", "baddbmm"}


class _MatmulShapes(TorchDispatchMode):
    """Records the operand shapes of every matrix product dispatched (mm, bmm, addmm, baddbmm)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[tuple[int, ...], ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in MATMULS:
            operands = args[1:] if name in ("addmm", "baddbmm") else args[:2]
            self.shapes.append((name, tuple(tuple(t.shape) for t in operands[:2])))
        return func(*args, **(kwargs or {}))


def _matmul_seconds(
    shapes: list[tuple[str, tuple[tuple[int, ...], ...]]], device: torch.device
) -> float:
    """Wall time of a bare loop of the same matrix products (contiguous random operands)."""
    counts: dict[tuple[str, tuple[tuple[int, ...], ...]], int] = {}
    for key in shapes:
        counts[key] = counts.get(key, 0) + 1
    total = 0.0
    gen = torch.Generator(device=device).manual_seed(0)
    for (name, (a_shape, b_shape)), count in counts.items():
        a = torch.randn(a_shape, generator=gen, device=device)
        b = torch.randn(b_shape, generator=gen, device=device)
        op = torch.bmm if name in ("bmm", "baddbmm") else torch.mm
        op(a, b)  # warm-up
        reps = max(count, 3)
        _sync(device)
        tic = time.perf_counter()
        for _ in range(reps):
            op(a, b)
        _sync(device)
        total += (time.perf_counter() - tic) * count / reps
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# the outer-update rows: a label -> its trpo.fvp (the compiled rows also set trpo.compile, the
# last of them trpo.step_curvature=cg)
_COMPILED = "gauss_newton + compile"
_COMPILED_CG = "gauss_newton + compile + step_curvature cg"
OUTER_KINDS = ("gauss_newton", _COMPILED, _COMPILED_CG, "double_backward")
_FVP: dict[str, Literal["gauss_newton", "double_backward"]] = {
    "gauss_newton": "gauss_newton",
    _COMPILED: "gauss_newton",
    _COMPILED_CG: "gauss_newton",
    "double_backward": "double_backward",
}


def outer_update_figures(cfg: M.MAMLRLConfig, device: torch.device, repeats: int) -> dict:
    """Times the outer update of one meta-batch with each KL product, interleaved.

    One meta-batch is sampled (seed 0), then ``repeats`` rounds each time one TRPO outer update with
    ``trpo.fvp=gauss_newton``, one with it compiled (``trpo.compile``), one compiled with
    ``trpo.step_curvature=cg`` and one with ``double_backward`` from the same θ. Per product the
    matrix products are recorded and their FLOPs counted (``FlopCounterMode``), and at the start of
    every round the same matrix products are timed in a bare loop: the matmul bound of each outer
    update, measured in the same round (this VM's matmul speed drifts by 2x within minutes, so a
    bound timed once is not comparable with updates timed later; timed right after an update, the
    bare loop also ran slower after the eager products than after the compiled one, so it runs
    before the round's updates). The compiled update's matrix products are counted the same way on a
    run of its eager twin (the same graphs with ``torch.compiler.set_stance("force_eager")``), then
    its warm-up compiles and is timed apart.
    """
    vec = M.make_env(cfg, cfg.env.meta_batch_size, cfg.env.episodes_per_task)
    policy = M.build_policy(cfg.policy, vec, torch.Generator(device=device).manual_seed(0), device)
    params = M.init_params(policy)
    tasks = vec.distribution.sample(cfg.env.meta_batch_size, np.random.default_rng(0))
    gen = torch.Generator(device=device).manual_seed(0)
    seeds = [k * vec.num_envs for k in range(cfg.inner.steps + 1)]
    batch = M.collect_meta_batch(cfg, policy, params, vec, tasks, seeds, gen, device)
    vec.close()
    kinds = OUTER_KINDS
    trpo = section(cfg.trpo, "trpo")
    configs: dict[str, M.MAMLRLConfig] = {
        kind: dataclasses.replace(
            cfg,
            trpo=dataclasses.replace(
                trpo,
                fvp=_FVP[kind],
                compile=kind in (_COMPILED, _COMPILED_CG),
                step_curvature="cg" if kind == _COMPILED_CG else "product",
            ),
        )
        for kind in kinds
    }
    products = {kind: 0 for kind in kinds}

    def counted(factory):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            product = factory(*args, **kwargs)

            def count(vector):  # type: ignore[no-untyped-def]
                products[current] += 1
                return product(vector)

            return count

        return wrapped

    trpo_module.make_hvp_fn = counted(trpo_module.make_hvp_fn)
    inner_module.gauss_newton_fvp = counted(inner_module.gauss_newton_fvp)

    def run(kind: str) -> tuple[float, dict]:
        tic = time.perf_counter()
        (new, _), metrics = M.outer_update(policy, params, None, batch, configs[kind])
        float(metrics["kl"])
        return time.perf_counter() - tic, {k: v.detach().clone() for k, v in new.items()}

    figures: dict = {}
    for kind in kinds:  # one warm-up each, counted: products, matmul shapes and FLOPs
        current = kind
        products[kind] = 0
        compiled = kind in (_COMPILED, _COMPILED_CG)
        recorder, flops = _MatmulShapes(), FlopCounterMode(display=False)
        # the compiled update is counted on its eager twin: under a dispatch mode dynamo would
        # skip the frames for good and every later run would be eager
        with torch.compiler.set_stance("force_eager" if compiled else "default"):
            with recorder, flops:
                _, new = run(kind)
        figures[kind] = {
            "products": products[kind],
            "matmul_gflop": flops.get_total_flops() / 1e9,
            "shapes": recorder.shapes,
            "seconds": [],
            "params": new,
        }
        if compiled:  # its first run compiles
            figures[kind]["compile_update_seconds"], figures[kind]["params"] = run(kind)
    for _ in range(repeats):
        bounds = {kind: _matmul_seconds(figures[kind]["shapes"], device) for kind in kinds}
        for kind in kinds:
            current = kind
            seconds, _ = run(kind)
            figures[kind]["seconds"].append(seconds)
            figures[kind].setdefault("matmul_bound_seconds", []).append(bounds[kind])
            figures[kind].setdefault("reference_bound_seconds", []).append(
                bounds["double_backward"]
            )
            figures[kind].setdefault("load", []).append(os.getloadavg()[0])
    for kind in kinds:
        figures[kind].pop("shapes")
    thetas = {kind: figures[kind].pop("params") for kind in kinds}
    a, b = thetas["gauss_newton"], thetas["double_backward"]
    figures["max_param_difference"] = max(float((a[k] - b[k]).abs().max()) for k in a)
    c, d = thetas[_COMPILED], thetas[_COMPILED_CG]
    figures["max_param_difference_compiled"] = max(float((a[k] - c[k]).abs().max()) for k in a)
    figures["max_param_difference_cg"] = max(float((c[k] - d[k]).abs().max()) for k in c)
    return figures


def print_outer_update(figures: dict) -> None:
    """The outer-update table: seconds, products, FLOPs, the matmul bound, load (medians).

    The % of bound is the median of each round's bound over its update's seconds: the bound of
    the update's own matrix products, and the bound of the double-backward update's (the matrix
    work of the plain second-order product, the same for every row).
    """
    print(
        "\n| outer update (KL product) | seconds (median) | products | matmul GFLOP | "
        "matmul bound s (median) | % of own bound (median of rounds) | "
        "% of double-backward bound | load (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in OUTER_KINDS:
        row = figures[kind]
        median = float(np.median(row["seconds"]))
        bounds = row["matmul_bound_seconds"]
        share = float(np.median(np.asarray(bounds) / np.asarray(row["seconds"])))
        reference = np.asarray(row["reference_bound_seconds"]) / np.asarray(row["seconds"])
        print(
            f"| {kind} | {median:.2f} | {row['products']} | {row['matmul_gflop']:.1f} | "
            f"{float(np.median(bounds)):.2f} | {share:.0%} | {float(np.median(reference)):.0%} | "
            f"{float(np.median(row['load'])):.1f} |"
        )
    ratio = np.median(figures["double_backward"]["seconds"]) / np.median(
        figures["gauss_newton"]["seconds"]
    )
    compiled, cg = figures[_COMPILED], figures[_COMPILED_CG]
    speedup = np.median(figures["gauss_newton"]["seconds"]) / np.median(compiled["seconds"])
    print(
        f"\ndouble_backward / gauss_newton seconds: {ratio:.2f}; the two updates' θ differ by at "
        f"most {figures['max_param_difference']:.1e}. gauss_newton / gauss_newton + compile "
        f"seconds: {speedup:.2f} (its first update, which compiles, took "
        f"{compiled['compile_update_seconds']:.1f} s); θ differs from the eager product's by at "
        f"most {figures['max_param_difference_compiled']:.1e}. With trpo.step_curvature=cg "
        f"(sT H s from conjugate gradient's residual: one product fewer): "
        f"{np.median(compiled['seconds']) / np.median(cg['seconds']):.2f}x the compiled row's "
        f"speed; θ differs from it by at most {figures['max_param_difference_cg']:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2, help="timed meta-iterations")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--first-order", action="store_true", help="first-order meta-gradient")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)"
    )
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument(
        "--sampling-only",
        action="store_true",
        help="only the sampling comparison: random, replayed and policy actions, interleaved",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --sampling-only")
    parser.add_argument(
        "--outer-repeats",
        type=int,
        default=3,
        help="interleaved outer updates per KL product (trpo.fvp), after one counted warm-up; "
        "0 skips the outer-update comparison",
    )
    parser.add_argument(
        "--outer-only", action="store_true", help="only the outer-update comparison"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    keep_freed_memory()
    if args.threads:
        # On a shared or oversubscribed CPU, intra-op threads convoy and small ops slow down 10×.
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    overrides = (QUICK if args.quick else []) + (
        ["inner.first_order=true"] if args.first_order else []
    )
    cfg = load_config(M.MAMLRLConfig, CONFIG, overrides)
    env = cfg.env
    print(
        f"# MAML-TRPO ({'first' if cfg.inner.first_order else 'second'} order) benchmark: "
        f"{env.id}, meta-batch {env.meta_batch_size} × "
        f"{env.episodes_per_task} episodes × H {env.horizon}; policy on {device}, envs on CPU; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n"
    )
    if args.sampling_only:
        runs = sampling_rounds(cfg, device, args.rounds)
        rates = {k: float(np.median(runs[k])) for k in ("random", "gaussian", "replayed", "policy")}
        print_sampling(rates, runs)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                json.dump({"config": CONFIG, "overrides": overrides, **runs}, handle, indent=2)
        return
    outer = None
    if args.outer_repeats and not cfg.inner.first_order:
        outer = outer_update_figures(cfg, device, args.outer_repeats)
        print_outer_update(outer)
    if args.outer_only:
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                json.dump({"config": CONFIG, "overrides": overrides, "outer_update": outer}, handle)
        return
    rows, replay = meta_iterations(cfg, device, args.iterations)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    random_rate = random_action_rate(cfg, replay)
    ratio = mean["sampling_steps_per_second"] / random_rate
    replayed = replay_rate(cfg, replay)
    print("| phase | seconds per meta-iteration | share |")
    print("|---|---|---|")
    for key in ("sampling", "adaptation", "outer_update", "total"):
        print(f"| {key} | {mean[key]:.2f} | {mean[key] / mean['total']:.0%} |")
    ours = mean["sampling_steps_per_second"]
    print_sampling({"random": random_rate, "replayed": replayed, "policy": ours})
    if args.out:
        result = {
            "config": CONFIG,
            "overrides": overrides,
            "device": str(device),
            "iterations": rows,
        }
        result.update(
            mean=mean,
            random_action_steps_per_second=random_rate,
            replayed_action_steps_per_second=replayed,
            ratio=ratio,
            ratio_to_replayed=ours / replayed,
            outer_update=outer,
        )
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

"""The jobs of ``scripts/gpu_check.py``: shipped configs with ``--set`` overrides, full and quick.

Full sizes are for a 16-core CUDA machine (envs stepped by 8 worker processes); quick sizes are
a CPU smoke run of the same code paths. Every override is a dotted config field, validated by
``metarl train`` like any other.
"""

from __future__ import annotations

import dataclasses

__all__ = ["BENCH_STEPS", "SPEED_JOBS", "STAGE_BUDGETS", "TRAIN_JOBS", "BenchStep", "Job"]

STAGE_BUDGETS = {"env": 30.0, "tests": 60.0, "train": 200.0, "speed": 240.0, "bench": 280.0}
"""Seconds each stage may take; together under 9 minutes. On the first H200 (2026-12-04) the five
trainings took 35 s each with their evals (the RL² one was cut off at 135 s), the speed stage
ran out at the MAML-TRPO meta-batch 160 job at 200 s and the tests took 31 s. ``bench`` is not
in the default stages: it is a second call of its own (``--stages env,bench``)."""

QUIET = ["run.progress=false"]
RL_WORKERS = ["env.backend=process", "env.num_workers=8", "run.num_threads=8"]
SUPERVISED_QUICK = ["run.num_eval_tasks=2", "eval.steps=1"]
OMNIGLOT_QUICK = [*SUPERVISED_QUICK, "task.num_characters=30"]
TRPO_EVAL = ["eval.baselines=false", "eval.steps=1"]
TRPO_QUICK = ["env.meta_batch_size=2", "env.episodes_per_task=2", "env.horizon=10"]
TRPO_QUICK += ["run.num_eval_tasks=2", *TRPO_EVAL]
RL2_QUICK = ["env.num_trials=4", "env.horizon=10", "algo.bptt_len=10", "run.num_eval_tasks=2"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One shipped config and how the check runs it."""

    name: str
    """Printed and used in file names; ``--jobs`` picks by it."""
    config: str
    """Shipped YAML, relative to the repository."""
    full: tuple[str, ...]
    """``--set`` overrides at full size."""
    quick: tuple[str, ...]
    """``--set`` overrides of ``--quick``."""
    iterations: tuple[int, int] = (2, 1)
    """Training iterations of the train stage: (full, quick)."""
    speed: tuple[int, int, int, int] = (4, 2, 2, 1)
    """Speed stage: (iterations, warm-up) at full size, then at quick size."""
    eval_full: tuple[str, ...] = ()
    """``metarl eval`` options at full size."""
    eval_quick: tuple[str, ...] = ()
    """``metarl eval`` options of ``--quick``."""
    timeout: float = 60.0
    """Seconds one training (or one speed run, or one eval) may take."""
    label: str = ""
    """What is being run, for the tables (meta-batch, episodes)."""

    def sets(self, quick: bool) -> list[str]:
        """The ``--set`` overrides of this job, without its iteration count."""
        return [*QUIET, *(self.quick if quick else self.full)]

    def train_sets(self, quick: bool) -> list[str]:
        """The overrides of the train stage: ``sets`` and the iteration count."""
        return [*self.sets(quick), f"optim.iterations={self.iterations[quick]}"]

    def eval_args(self, quick: bool) -> list[str]:
        """Options of ``metarl eval``."""
        return list(self.eval_quick if quick else self.eval_full)

    def speed_iterations(self, quick: bool) -> tuple[int, int]:
        """(iterations, warm-up iterations) of the speed stage."""
        return (self.speed[2], self.speed[3]) if quick else (self.speed[0], self.speed[1])

    def describe(self, quick: bool) -> dict[str, str]:
        """The label shown in the tables."""
        return {"label": "quick" if quick else self.label}


TRAIN_JOBS = [
    Job(
        "maml-sinusoid",
        "configs/maml/sinusoid.yaml",
        full=("run.log_every=50", "run.num_eval_tasks=100", "eval.steps=5"),
        quick=("task.meta_batch_size=4", *SUPERVISED_QUICK),
        iterations=(300, 3),
        speed=(120, 20, 4, 2),
        eval_full=("--num-tasks", "100", "--steps", "5"),
        eval_quick=("--num-tasks", "4", "--steps", "1"),
        timeout=40.0,
        label="meta-batch 25",
    ),
    Job(
        "maml-omniglot_5w1s",
        "configs/maml/omniglot_5w1s.yaml",
        full=("run.log_every=10", "run.num_eval_tasks=20", "eval.steps=3"),
        quick=("task.meta_batch_size=2", *OMNIGLOT_QUICK),
        iterations=(30, 1),
        eval_full=("--num-tasks", "20", "--steps", "3"),
        eval_quick=("--num-tasks", "2", "--steps", "1"),
        label="meta-batch 32",
    ),
    Job(
        "protonet-omniglot_5w1s",
        "configs/protonet/omniglot_5w1s.yaml",
        full=("run.log_every=10", "run.num_eval_tasks=50"),
        quick=("task.train_ways=5", *OMNIGLOT_QUICK[:1], OMNIGLOT_QUICK[-1]),
        iterations=(30, 1),
        eval_full=("--num-tasks", "50"),
        eval_quick=("--num-tasks", "2"),
        timeout=45.0,
        label="60-way episodes",
    ),
    Job(
        "maml_trpo-halfcheetah_vel",
        "configs/maml_trpo/halfcheetah_vel.yaml",
        full=("env.meta_batch_size=20", "env.episodes_per_task=10", *RL_WORKERS)
        + ("run.num_eval_tasks=4", *TRPO_EVAL),
        quick=tuple(TRPO_QUICK),
        eval_full=("--num-tasks", "4", "--steps", "1"),
        eval_quick=("--num-tasks", "2", "--steps", "1"),
        timeout=90.0,
        label="meta-batch 20 × 10 episodes",
    ),
    Job(
        "rl2-halfcheetah_vel",
        "configs/rl2/halfcheetah_vel.yaml",
        full=(*RL_WORKERS, "run.num_eval_tasks=8"),
        quick=tuple(RL2_QUICK),
        iterations=(3, 1),
        eval_full=("--num-tasks", "8"),
        eval_quick=("--num-tasks", "2"),
        label="64 trials × 2 episodes",
    ),
]
"""Short trainings, each followed by ``metarl eval`` (the order they run in)."""

_SPEED_EVAL = ("run.num_eval_tasks=1",)
SPEED_JOBS = [
    dataclasses.replace(TRAIN_JOBS[0], full=("eval.steps=1", *_SPEED_EVAL), timeout=30.0),
    dataclasses.replace(
        TRAIN_JOBS[1],
        name="maml-omniglot_5w1s-mb32",
        full=("eval.steps=1", *_SPEED_EVAL),
        speed=(10, 3, 2, 1),
        timeout=45.0,
    ),
    dataclasses.replace(TRAIN_JOBS[2], full=_SPEED_EVAL, speed=(30, 10, 2, 1), timeout=40.0),
    dataclasses.replace(
        TRAIN_JOBS[3],
        name="maml_trpo-halfcheetah_vel-mb40",
        full=(*RL_WORKERS, *_SPEED_EVAL, *TRPO_EVAL),
        speed=(3, 1, 2, 1),
        timeout=75.0,
        label="meta-batch 40 × 20 episodes",
    ),
    dataclasses.replace(  # 8 eval trials: the 8 env workers split the eval vector env too
        TRAIN_JOBS[4], full=(*RL_WORKERS, "run.num_eval_tasks=8"), speed=(4, 1, 2, 1), timeout=45.0
    ),
    dataclasses.replace(
        TRAIN_JOBS[1],
        name="maml-omniglot_5w1s-mb128",
        full=("task.meta_batch_size=128", "eval.steps=1", *_SPEED_EVAL),
        quick=("task.meta_batch_size=8", *OMNIGLOT_QUICK),
        speed=(6, 2, 2, 1),
        label="meta-batch 128",
    ),
    dataclasses.replace(
        TRAIN_JOBS[3],
        name="maml_trpo-halfcheetah_vel-mb160",
        full=("env.meta_batch_size=160", *RL_WORKERS, *_SPEED_EVAL, *TRPO_EVAL),
        quick=("env.meta_batch_size=8", *TRPO_QUICK[1:]),
        speed=(2, 1, 2, 1),
        timeout=120.0,
        label="meta-batch 160 × 20 episodes",
    ),
]
"""Meta-iterations/s on CUDA, then on the CPU, per job: the default sizes first, then the larger
meta-batches where a GPU should pay off (Omniglot 32 → 128, MAML-TRPO 40 → 160 tasks)."""


@dataclasses.dataclass(frozen=True)
class BenchStep:
    """A benchmark script run on the device machine's CPU cores (16 there, and quiet)."""

    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout: float

    def argv(self, quick: bool, out_json: str) -> list[str]:
        """The script and its options, writing its figures as JSON to ``out_json``."""
        return [self.script, *(self.quick if quick else self.full), "--out", out_json]


BENCH_STEPS = [
    BenchStep(
        "bench_distributed-rl2",
        "scripts/bench_distributed.py",
        full=("--rows", "rl2_halfcheetah_vel", "rl2_halfcheetah_vel_small")
        + ("--iterations", "3", "--warmup", "1", "--rounds", "1"),
        quick=("--rows", "rl2_halfcheetah_vel_small", "--iterations", "1", "--warmup", "1")
        + ("--rounds", "1"),
        timeout=240.0,
    ),
    BenchStep(
        "bench_envs",
        "scripts/bench_envs.py",
        full=("--seconds", "5", "--rounds", "3", "--skip-async", "--metaworld-envs", "0"),
        quick=(
            *("--seconds", "0.3", "--rounds", "1", "--num-envs", "4"),
            *("--neighbour-only", "--settle", "0"),
        ),
        timeout=140.0,
    ),
]
"""The stage ``bench``: quiet-machine figures the 2-core VM cannot give (RL² on 2 ranks against
1, the process backend against a bare lockstep loop, with and without a busy neighbour)."""

"""Every family keeps its tensors on the device it is given: learners, trainings, evaluations.

The tests take the ``device`` fixture (``$METARL_TEST_DEVICE``, else the CPU). On the CPU,
torch's shape-only ``meta`` device is made the default for the duration of each test: a library
tensor created without ``device=`` is then a meta tensor, and combining it with the run's CPU
tensors raises, as a CPU-created tensor combined with CUDA tensors raises on a GPU.
``scripts/gpu_check.py`` runs this file with ``METARL_TEST_DEVICE=cuda``.
"""

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

from envs.supervised import ARCHIVE_NAMES, TaskBatch, resolve_omniglot_root
from metarl.algorithms import build_supervised_learner
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    ReptileConfig,
    SupervisedConfig,
    TaskConfig,
    build_family,
)
from metarl.cli import main as cli_main

GRADIENT_BASED = ["maml", "fomaml", "metasgd", "anil", "mamlpp", "reptile"]
METRIC = ["protonet", "matching", "relation"]


@pytest.fixture
def trap(device):
    """A context in which tensors created without a device land where they would break a run."""
    return torch.device("meta") if device.type == "cpu" else contextlib.nullcontext()


def _on(device: torch.device, tensor: torch.Tensor) -> bool:
    return tensor.device.type == device.type


def _check_outer_loss(learner, batch: TaskBatch, device: torch.device) -> None:
    params, lrs = learner.init_params(), learner.init_lrs()
    assert all(_on(device, p) for p in [*params.values(), *lrs.values()])
    out = learner.outer_loss(params, batch, 0, lrs=lrs)
    assert _on(device, out.loss) and out.loss.dim() == 0
    for name, value in out.metrics.items():
        if isinstance(value, torch.Tensor):
            assert _on(device, value), f"metric {name} is on {value.device}"
    out.loss.backward()
    grads = {k: p.grad for k, p in [*params.items(), *lrs.items()] if p.grad is not None}
    assert grads, "no parameter received a gradient"
    assert all(_on(device, g) for g in grads.values())
    assert math.isfinite(float(out.loss.detach()))


@pytest.mark.parametrize("name", GRADIENT_BASED)
def test_gradient_based_learners_keep_sinusoid_batches_on_the_device(name, device, trap):
    cfg = SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=(8, 8)),
        algo=AlgoConfig(name=name),
        inner=InnerConfig(steps=2 if name == "mamlpp" else 1),
        reptile=ReptileConfig(batch_size=5) if name == "reptile" else None,
    )
    with trap:
        learner = build_supervised_learner(
            cfg, device, torch.Generator(device=device).manual_seed(0)
        )
        family = build_family(cfg.task, "train", device)
        batch = family.sample(3, torch.Generator(device=device).manual_seed(0), training=True)
        assert _on(device, batch.support_x) and _on(device, batch.query_y)
        _check_outer_loss(learner, batch, device)


@pytest.mark.parametrize("name", [*METRIC, "maml"])
def test_conv_learners_keep_image_batches_on_the_device(name, device, trap):
    ways, shots, query = 3, 2, 2
    cfg = SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=ways, shots=shots, query_shots=query),
        model=ModelConfig(
            network="conv4_strided" if name == "maml" else "conv4_maxpool", filters=4
        ),
        algo=AlgoConfig(name=name),
        inner=InnerConfig(lr=0.4) if name == "maml" else None,
    )
    gen = torch.Generator(device=device).manual_seed(0)
    labels = torch.arange(ways, device=device)
    with trap:
        batch = TaskBatch(
            support_x=torch.rand(2, ways * shots, 1, 28, 28, generator=gen, device=device),
            support_y=labels.repeat_interleave(shots).repeat(2, 1),
            query_x=torch.rand(2, ways * query, 1, 28, 28, generator=gen, device=device),
            query_y=labels.repeat_interleave(query).repeat(2, 1),
        )
        learner = build_supervised_learner(
            cfg, device, torch.Generator(device=device).manual_seed(0)
        )
        _check_outer_loss(learner, batch, device)


def _omniglot_root() -> Path:
    root = resolve_omniglot_root()
    missing = [name for name in ARCHIVE_NAMES if not (root / name).is_file()]
    if missing:
        pytest.skip(f"Omniglot archives {missing} not found under {root}")
    return root


TINY = ["run.log_backends=[csv]", "run.progress=false", "run.num_eval_tasks=2"]
CLI_RUNS = {
    "maml-sinusoid": (
        "configs/maml/sinusoid.yaml",
        ["optim.iterations=2", "task.meta_batch_size=2", "eval.steps=1"],
    ),
    "maml-omniglot": (
        "configs/maml/omniglot_5w1s.yaml",
        ["optim.iterations=1", "task.meta_batch_size=2", "eval.steps=1"],
    ),
    "protonet-omniglot": (
        "configs/protonet/omniglot_5w1s.yaml",
        ["optim.iterations=1", "task.train_ways=5"],
    ),
    "maml_trpo-navigation2d": (
        "configs/maml_trpo/navigation2d.yaml",
        ["optim.iterations=1", "env.meta_batch_size=2", "env.episodes_per_task=2"]
        + ["eval.baselines=false", "eval.steps=1"],
    ),
    "maml_trpo-halfcheetah_vel": (
        "configs/maml_trpo/halfcheetah_vel.yaml",
        ["optim.iterations=1", "env.meta_batch_size=2", "env.episodes_per_task=2"]
        + ["env.horizon=10", "eval.baselines=false", "eval.steps=1"],
    ),
    "rl2-halfcheetah_vel": (
        "configs/rl2/halfcheetah_vel.yaml",
        ["optim.iterations=1", "env.num_trials=4", "env.horizon=10", "algo.bptt_len=10"],
    ),
}


@pytest.mark.parametrize("job", CLI_RUNS)
def test_each_family_trains_and_evaluates_from_the_cli_on_the_device(job, device, trap, tmp_path):
    config, sets = CLI_RUNS[job]
    if "omniglot" in job:
        _omniglot_root()
        sets = [*sets, "task.num_characters=30"]
    run_dir = tmp_path / "run"
    args = ["train", config, "--run-dir", str(run_dir), "--device", device.type]
    for item in [*TINY, *sets]:
        args += ["--set", item]
    with trap:
        assert cli_main(args) == 0
        out = tmp_path / "again.json"
        assert cli_main(["eval", str(run_dir), "--device", device.type, "--out", str(out)]) == 0
    for path in (run_dir / "eval" / "eval.json", out):
        result = json.loads(path.read_text())
        assert all(math.isfinite(m) for m in result["mean"]), path


def test_a_generator_on_another_device_is_refused_before_any_work():
    cfg = SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=5, query_shots=5, meta_batch_size=3),
        model=ModelConfig(network="mlp", hidden=(8, 8)),
        algo=AlgoConfig(name="maml"),
    )
    # torch.device("cuda") needs no GPU to exist: the check comes before anything is allocated
    with pytest.raises(ValueError, match="generator is on cpu but the learner is built on cuda"):
        build_supervised_learner(cfg, torch.device("cuda"), torch.Generator().manual_seed(0))

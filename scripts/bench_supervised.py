"""Meta-iterations per second of metarl's MAML against learn2learn's, same problem, same run.

For each problem it builds metarl's MAML learner, samples a pool of meta-batches once, and copies
the learner's initial weights into a plain ``nn.Module`` twin wrapped in learn2learn's
``l2l.algorithms.MAML``. Both then run the same meta-iteration on the same tensors:

- metarl: ``MAMLLearner.outer_loss`` (one ``vmap`` over the tasks) + backward + Adam step, exactly
  the body of :func:`metarl.algorithms.supervised.train`'s loop;
- learn2learn: per task ``clone()`` -> ``adapt()`` -> query loss -> ``backward()``, then the
  gradients averaged over tasks and an Adam step, as learn2learn's ``examples/vision/
  maml_omniglot.py`` does.

Before timing, it checks that both give the same outer loss and meta-gradient on the same data
from the same weights. The problems: (a) sinusoid MAML (1-40-40-1, meta-batch 25, K = 10,
α = 0.01, one second-order step); (b) Omniglot 5-way 1-shot, conv4 strided 64 filters,
meta-batch 32, α = 0.4, one step, second and first order. At 1 and 2 threads, it times the two
back to back, a few seconds each, several times; it prints a markdown table of the median rates
and of the median paired speed-up, in wall-clock and in CPU time.

learn2learn is a comparison only, never a dependency: run this with the benchmark venv
(``.bench-venv``, see the report that set it up). learn2learn imports torchvision at load time,
which does not import beside the CPU torch; an empty stand-in module is registered first.

    .bench-venv/bin/python scripts/bench_supervised.py [--seconds 1.5] [--repeats 9]
        [--threads 1 2] [--quick]

On a machine whose cores are busy with other work, set ``OMP_WAIT_POLICY=PASSIVE`` for the
2-thread rows: with OpenMP's default spin-waiting, every parallel op waits for a descheduled
thread and both libraries run tens of times slower than on 1 thread.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import io
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.supervised import TaskBatch
from metarl.algorithms import build_supervised_learner
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    TaskConfig,
    build_family,
)
from metarl.functional import Params
from metarl.memory import keep_freed_memory
from metarl.runs import check_finite

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# learn2learn without torchvision
# ----------------------------------------------------------------------------------------------


class _StubMeta(type):
    """Any attribute of a stand-in class is another stand-in class (``datasets.ImageFolder``)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``torchvision`` and its submodules as empty modules of stand-in classes."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def getattr_(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _StubMeta(name, (), {})

        module.__getattr__ = getattr_  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_learn2learn() -> types.ModuleType:
    """Imports learn2learn with torchvision replaced by stand-ins (they are never called here)."""
    if "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _TorchvisionStub())
    with contextlib.redirect_stderr(io.StringIO()):  # gym's deprecation banner
        import learn2learn

    return learn2learn


# ----------------------------------------------------------------------------------------------
# nn.Module twins of metarl's networks, with the same parameter names
# ----------------------------------------------------------------------------------------------


class TwinMLP(nn.Module):
    """``metarl.nn.MLP`` as a plain module: ``body.{0,2,..}`` linear layers, ``head``."""

    def __init__(self, hidden: tuple[int, ...], activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        widths = [1, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), activation()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``[batch, 1]`` to ``[batch, 1]``."""
        return self.head(self.body(x))


class TwinBlock(nn.Module):
    """conv 3x3 stride 2 -> ``nn.BatchNorm2d`` on batch statistics -> ReLU."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(filters, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``[batch, C, H, W]`` to ``[batch, filters, ceil(H / 2), ceil(W / 2)]``."""
        return F.relu(self.norm(self.conv(x)))


class TwinConv4(nn.Module):
    """``metarl.nn.Conv4(variant="strided")`` with torch's batch norm: spatial mean, ``head``."""

    def __init__(self, ways: int, filters: int = 64) -> None:
        super().__init__()
        self.body = nn.ModuleList(TwinBlock(1 if i == 0 else filters, filters) for i in range(4))
        self.head = nn.Linear(filters, ways)

    def forward(self, x: Tensor) -> Tensor:
        """Maps images ``[batch, 1, 28, 28]`` to logits ``[batch, ways]``."""
        for block in self.body:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def twin_of(cfg: SupervisedConfig, params: Params) -> nn.Module:
    """A plain module of ``cfg``'s network holding a copy of ``params``."""
    if cfg.model.network == "mlp":
        twin: nn.Module = TwinMLP(cfg.model.hidden)
    else:
        twin = TwinConv4(cfg.task.ways, cfg.model.filters)
    twin.load_state_dict({k: v.detach().clone() for k, v in params.items()}, strict=True)
    return twin


# ----------------------------------------------------------------------------------------------
# the two meta-iterations
# ----------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One benchmark row: a label and the config that defines it."""

    label: str
    cfg: SupervisedConfig


def problems() -> list[Problem]:
    """Sinusoid MAML and Omniglot 5-way 1-shot MAML (second and first order)."""
    run = RunConfig(progress=False)
    sinusoid = SupervisedConfig(
        task=TaskConfig(family="sinusoid", shots=10, query_shots=10, meta_batch_size=25),
        model=ModelConfig(network="mlp", hidden=(40, 40)),
        algo=AlgoConfig(name="maml"),
        inner=InnerConfig(lr=0.01, steps=1),
        optim=OptimConfig(lr=1e-3),
        run=run,
    )
    omniglot_task = TaskConfig(
        family="omniglot", ways=5, shots=1, query_shots=1, meta_batch_size=32
    )
    omniglot = {
        order: SupervisedConfig(
            task=omniglot_task,
            model=ModelConfig(network="conv4_strided", filters=64),
            algo=AlgoConfig(name="maml"),
            inner=InnerConfig(lr=0.4, steps=1, first_order=first),
            optim=OptimConfig(lr=1e-3),
            run=run,
        )
        for order, first in (("2nd order", False), ("1st order", True))
    }
    return [
        Problem("sinusoid MAML, 2nd order", sinusoid),
        Problem("Omniglot 5w1s MAML, 2nd order", omniglot["2nd order"]),
        Problem("Omniglot 5w1s MAML, 1st order", omniglot["1st order"]),
    ]


Step = Callable[..., Tensor]
"""``step(batch, iteration, update=True)``: one meta-iteration on a batch, returning the
(detached) outer loss; ``update=False`` stops before the optimiser step, leaving the
meta-gradient in the parameters' ``.grad``."""


def metarl_step(cfg: SupervisedConfig, seed: int = 0) -> tuple[Step, Params]:
    """Our meta-iteration: one ``SupervisedExperiment.update`` (constant lr)."""
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))
    params = learner.init_params()
    opt = torch.optim.Adam(params.values(), lr=cfg.optim.lr)

    def step(batch: TaskBatch, it: int, update: bool = True) -> Tensor:
        out = learner.outer_loss(params, batch, it)
        check_finite(it, loss=out.loss)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if update:
            opt.step()
        return out.loss.detach()

    return step, params


def l2l_step(cfg: SupervisedConfig, params: Params, l2l: types.ModuleType) -> tuple[Step, Params]:
    """learn2learn's meta-iteration, as its examples write it: a Python loop over tasks."""
    maml = l2l.algorithms.MAML(
        twin_of(cfg, params), lr=cfg.inner.lr, first_order=cfg.inner.first_order
    )
    opt = torch.optim.Adam(maml.parameters(), lr=cfg.optim.lr)
    classify = cfg.task.family != "sinusoid"
    loss_fn = F.cross_entropy if classify else F.mse_loss

    def step(batch: TaskBatch, it: int, update: bool = True) -> Tensor:
        opt.zero_grad()
        tasks = batch.num_tasks
        total = torch.zeros(())
        for i in range(tasks):
            learner = maml.clone()
            for _ in range(cfg.inner.steps):
                learner.adapt(loss_fn(learner(batch.support_x[i]), batch.support_y[i]))
            pred = learner(batch.query_x[i])
            loss = loss_fn(pred, batch.query_y[i])
            if classify:  # the examples also compute the accuracy of each task
                (pred.argmax(dim=1) == batch.query_y[i]).float().mean()
            loss.backward()
            total += loss.detach()
        for p in maml.parameters():
            p.grad.mul_(1.0 / tasks)
        if update:
            opt.step()
        return total / tasks

    return step, dict(maml.module.named_parameters())


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------


class Agreement(NamedTuple):
    """Outer losses of both implementations on one batch, and how far their meta-gradients are.

    Attributes:
        loss_ours: Our outer loss.
        loss_theirs: learn2learn's outer loss.
        grad_diff: Largest elementwise difference of the meta-gradients, relative to the largest
            meta-gradient element.
    """

    loss_ours: float
    loss_theirs: float
    grad_diff: float


def check_agreement(cfg: SupervisedConfig, batch: TaskBatch, l2l: types.ModuleType) -> Agreement:
    """Runs both on ``batch`` from the same weights, up to (not including) the optimiser step.

    Meta-gradients are compared rather than weights after an Adam step: Adam's first step is
    about ``lr * sign(g)``, and the conv biases, which batch norm cancels, have gradients that
    are pure rounding noise of either sign.
    """
    ours, params = metarl_step(cfg)
    theirs, twin_params = l2l_step(cfg, params, l2l)
    loss_ours, loss_theirs = ours(batch, 0, update=False), theirs(batch, 0, update=False)
    scale = max(p.grad.abs().max().item() for p in params.values())
    diff = max((params[k].grad - twin_params[k].grad).abs().max().item() for k in params)
    return Agreement(loss_ours.item(), loss_theirs.item(), diff / scale)


class Rate(NamedTuple):
    """Meta-iterations per second of wall-clock time and per second of this process's CPU time.

    On a shared machine the CPU-time rate is the steadier one: it does not count the time the
    process waits for a core (it still feels the caches and memory bandwidth others use).
    """

    wall: float
    cpu: float


def rate(step: Step, batches: list[TaskBatch], seconds: float, min_iterations: int = 3) -> Rate:
    """Meta-iterations per second of ``step`` cycling over ``batches``, after one warm-up."""
    step(batches[0], 0)
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        step(batches[count % len(batches)], count + 1)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= min_iterations:
            return Rate(count / elapsed, count / (time.process_time() - cpu_start))


class Measurement(NamedTuple):
    """Median rates of both implementations and the median of their paired ratios."""

    ours: Rate
    theirs: Rate
    speedup: Rate


def measure(
    problem: Problem,
    batches: list[TaskBatch],
    l2l: types.ModuleType,
    threads: int,
    seconds: float,
    repeats: int,
) -> Measurement:
    """Rates of metarl and learn2learn measured in adjacent pairs, and their paired ratios.

    Each repeat times one implementation right after the other (alternating who goes first),
    so the ratio of a pair sees nearly the same machine load; the speed-up is the median of
    these paired ratios, which drifts in the load of a shared machine hardly move.
    """
    torch.set_num_threads(threads)
    ours, params = metarl_step(problem.cfg)
    theirs, _ = l2l_step(problem.cfg, params, l2l)
    pairs = []
    for r in range(repeats):
        if r % 2 == 0:
            ours_rate = rate(ours, batches, seconds)
            theirs_rate = rate(theirs, batches, seconds)
        else:
            theirs_rate = rate(theirs, batches, seconds)
            ours_rate = rate(ours, batches, seconds)
        pairs.append((ours_rate, theirs_rate))

    def median(values: Iterable[float]) -> float:
        return statistics.median(values)

    return Measurement(
        Rate(median(o.wall for o, _ in pairs), median(o.cpu for o, _ in pairs)),
        Rate(median(t.wall for _, t in pairs), median(t.cpu for _, t in pairs)),
        Rate(median(o.wall / t.wall for o, t in pairs), median(o.cpu / t.cpu for o, t in pairs)),
    )


def sample_batches(cfg: SupervisedConfig, count: int, families: dict) -> list[TaskBatch]:
    """``count`` training meta-batches of ``cfg`` (families are cached by task family)."""
    if cfg.task.family not in families:
        families[cfg.task.family] = build_family(cfg.task, "train", CPU)
    gen = torch.Generator().manual_seed(0)
    family = families[cfg.task.family]
    return [family.sample(cfg.task.meta_batch_size, gen, training=True) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="measured pairs per median")
    parser.add_argument("--threads", type=int, nargs="+", help="torch threads (default: 1 2)")
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run (1 thread)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.5, 1
    if args.threads is None:
        args.threads = [1] if args.quick else [1, 2]
    torch.manual_seed(0)
    keep_freed_memory()  # as `metarl train` does; learn2learn, in this process, gets it too
    l2l = import_learn2learn()
    print(
        f"torch {torch.__version__}, learn2learn {l2l.__version__}, {os.cpu_count()} CPUs, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    families: dict = {}
    rows = []
    for problem in problems():
        batches = sample_batches(problem.cfg, 4, families)
        torch.set_num_threads(1)
        agree = check_agreement(problem.cfg, batches[0], l2l)
        loss_diff = abs(agree.loss_ours - agree.loss_theirs)
        print(
            f"{problem.label}: outer loss metarl {agree.loss_ours:.6f}, learn2learn "
            f"{agree.loss_theirs:.6f}, |diff| {loss_diff:.1e}; meta-gradients differ by at "
            f"most {agree.grad_diff:.1e} of the largest element"
        )
        if loss_diff > 1e-5 * max(1.0, abs(agree.loss_ours)) or agree.grad_diff > 1e-4:
            raise SystemExit(f"{problem.label}: the two implementations disagree")
        for threads in args.threads:
            result = measure(problem, batches, l2l, threads, args.seconds, args.repeats)
            rows.append((problem.label, threads, result, loss_diff))
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f}; speed-up = median over {args.repeats} "
        f"back-to-back pairs of {args.seconds:g} s runs\n"
    )
    print(
        "| problem | threads | metarl it/s | learn2learn it/s | speed-up "
        "| speed-up in CPU time | outer-loss diff |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, threads, m, diff in rows:
        print(
            f"| {label} | {threads} | {m.ours.wall:.2f} | {m.theirs.wall:.2f} "
            f"| {m.speedup.wall:.2f}x | {m.speedup.cpu:.2f}x | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()

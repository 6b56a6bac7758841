"""Meta-iterations/s of metarl's MAML against a hand-written torch.func MAML and learn2learn.

For each problem it builds metarl's MAML experiment, samples a pool of meta-batches once, and copies
the learner's initial weights into a plain ``nn.Module`` twin. Three implementations then run the
same meta-iteration on the same tensors, from the same weights, with the same ``torch.optim.Adam``:

- metarl: one ``SupervisedExperiment.update`` (outer loss: one ``vmap`` over the tasks; backward;
  Adam step; schedule; metrics) and the NaN check ``metarl train`` runs after it, exactly what
  :func:`metarl.algorithms.supervised.train` does per iteration, less logging (every
  ``run.log_every`` iterations) and checkpoints;
- torch.func: a minimal MAML written directly with ``torch.func``: ``vmap`` over the tasks of a
  function that takes ``grad`` of the support loss (``functional_call`` of the twin,
  ``F.mse_loss`` / ``F.cross_entropy``), one SGD step, and the query loss at the adapted weights;
  mean over tasks, backward, Adam step (first order: the inner gradient detached);
- learn2learn: per task ``clone()`` -> ``adapt()`` -> query loss -> ``backward()``, then the
  gradients averaged over tasks and an Adam step, as learn2learn's ``examples/vision/
  maml_omniglot.py`` does.

What is timed: one meta-iteration from a meta-batch already in memory, for all three. Task
sampling is left out of every column (learn2learn and a hand-written loop bring their own data
pipelines); metarl's own sampling time per meta-batch is printed beside the table.

Before timing, it checks that all three give the same outer loss and meta-gradient on the same
data from the same weights. The problems: (a) sinusoid MAML (1-40-40-1, meta-batch 25, K = 10,
α = 0.01, one second-order step); (b) Omniglot 5-way 1-shot, conv4 strided 64 filters,
meta-batch 32, α = 0.4, one step, second and first order. At 1 and 2 threads, it times the three
back to back (rotating who goes first), a few seconds each, several times; it prints a markdown
table of the median rates and of the median ratios of adjacent runs, in wall-clock and in CPU
time, with the load average of the machine while each row was measured.

learn2learn is a comparison only, never a dependency: put it on ``PYTHONPATH`` beside the
project's environment; without it the learn2learn column is skipped (the script says so).
learn2learn imports torchvision at load time, which does not import beside the CPU torch; an
empty stand-in module is registered first. Its 0.2.0 sdist ships C files that no longer compile
on Python 3.11, so regenerate them with Cython < 3.1, and give it the pure-Python modules it
imports (gym, requests), none installed into the project's environment:

    pip download --no-deps --no-binary :all: learn2learn==0.2.0 -d /tmp/l2l  # a few minutes
    tar xzf /tmp/l2l/learn2learn-0.2.0.tar.gz -C /tmp/l2l
    pip install --target /tmp/l2l/cy "cython<3.1" setuptools
    (cd /tmp/l2l/learn2learn-0.2.0 && PYTHONPATH=/tmp/l2l/cy python setup.py build_ext --inplace)
    pip install --no-deps --target /tmp/l2l/deps gym==0.26.2 gym_notices cloudpickle requests \
        urllib3 idna charset_normalizer certifi
    export PYTHONPATH=/tmp/l2l/learn2learn-0.2.0:/tmp/l2l/deps

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_supervised.py [--seconds 1.5] [--repeats 9]
        [--threads 1 2] [--quick]

On a machine whose cores are busy with other work, set ``OMP_WAIT_POLICY=PASSIVE`` for the
2-thread rows: with OpenMP's default spin-waiting, every parallel op waits for a descheduled
thread and every implementation runs tens of times slower than on 1 thread.
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
from torch.func import functional_call, grad, vmap

from envs.supervised import TaskBatch
from metarl.algorithms import build_supervised_learner
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    SupervisedExperiment,
    TaskConfig,
    build_family,
)
from metarl.config_sections import section
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
        import learn2learn  # type: ignore[import-not-found]  # a benchmark-only peer

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


class VmapBatchNorm(nn.Module):
    """Batch norm on batch statistics written out from ``mean`` and ``var``.

    ``F.batch_norm`` gives wrong second-order gradients under ``vmap`` of ``grad`` (~1e-3 of the
    largest meta-gradient element off learn2learn's); a ``torch.func`` MAML must write it out.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalises ``[batch, C, H, W]`` over batch and space, per channel."""
        centered = x - x.mean(dim=(0, 2, 3), keepdim=True)
        var = centered.square().mean(dim=(0, 2, 3), keepdim=True)
        y = centered * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class TwinBlock(nn.Module):
    """conv 3x3 stride 2 -> ``nn.BatchNorm2d`` (``vmap_safe``: :class:`VmapBatchNorm`) -> ReLU."""

    def __init__(self, in_channels: int, filters: int, vmap_safe: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, 3, stride=2, padding=1)
        self.norm: nn.Module = (
            VmapBatchNorm(filters)
            if vmap_safe
            else nn.BatchNorm2d(filters, track_running_stats=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps ``[batch, C, H, W]`` to ``[batch, filters, ceil(H / 2), ceil(W / 2)]``."""
        return F.relu(self.norm(self.conv(x)))


class TwinConv4(nn.Module):
    """``metarl.nn.Conv4(variant="strided")`` as a plain module: spatial mean, ``head``."""

    def __init__(self, ways: int, filters: int = 64, vmap_safe: bool = False) -> None:
        super().__init__()
        self.body = nn.ModuleList(
            TwinBlock(1 if i == 0 else filters, filters, vmap_safe) for i in range(4)
        )
        self.head = nn.Linear(filters, ways)

    def forward(self, x: Tensor) -> Tensor:
        """Maps images ``[batch, 1, 28, 28]`` to logits ``[batch, ways]``."""
        for block in self.body:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def twin_of(cfg: SupervisedConfig, params: Params, vmap_safe: bool = False) -> nn.Module:
    """A plain module of ``cfg``'s network holding a copy of ``params`` (see :class:`TwinBlock`)."""
    if cfg.model.network == "mlp":
        twin: nn.Module = TwinMLP(cfg.model.hidden)
    else:
        twin = TwinConv4(cfg.task.ways, cfg.model.filters, vmap_safe)
    twin.load_state_dict({k: v.detach().clone() for k, v in params.items()}, strict=True)
    return twin


# ----------------------------------------------------------------------------------------------
# the three meta-iterations
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
"""``step(batch, iteration)``: one meta-iteration on a batch; returns the (detached) outer loss."""

Grads = Callable[[TaskBatch], tuple[Tensor, dict[str, Tensor]]]
"""``grads(batch)``: the outer loss and the meta-gradient by parameter name, no optimiser step."""


class _Replay:
    """Stands in for the experiment's task family: ``sample`` returns the batch it is handed."""

    def __init__(self) -> None:
        self.batch: TaskBatch | None = None

    def sample(self, num_tasks: int, generator: torch.Generator, training: bool) -> TaskBatch:
        assert self.batch is not None and self.batch.num_tasks == num_tasks
        return self.batch


def metarl_experiment(cfg: SupervisedConfig, seed: int = 0) -> SupervisedExperiment:
    """The experiment of ``cfg``, its task family replaced by a replay of given batches."""
    learner = build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))
    return SupervisedExperiment(cfg, learner, _Replay(), CPU)  # type: ignore[arg-type]  # a stand-in


def metarl_step(exp: SupervisedExperiment) -> Step:
    """Our meta-iteration: one ``SupervisedExperiment.update`` and the driver's NaN check."""
    replay = exp.family
    assert isinstance(replay, _Replay)

    def step(batch: TaskBatch, it: int) -> Tensor:
        replay.batch = batch
        metrics = exp.update(it)
        check_finite(it, **metrics)
        return metrics["train/loss"]

    return step


def metarl_grads(exp: SupervisedExperiment) -> Grads:
    """Our outer loss and meta-gradient (the learner's, as ``update`` computes them)."""

    def grads(batch: TaskBatch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = exp.learner.outer_loss(exp.params, batch, 0, lrs=exp.lrs).loss
        values = torch.autograd.grad(loss, list(exp.params.values()))
        return loss.detach(), dict(zip(exp.params, values, strict=True))

    return grads


def torchfunc_maml(cfg: SupervisedConfig, params: Params) -> tuple[Step, Grads]:
    """A minimal MAML written directly with ``torch.func``, on a twin holding ``params``."""
    model = twin_of(cfg, params, vmap_safe=True)
    weights = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam(weights.values(), lr=cfg.optim.lr)
    loss_fn = F.mse_loss if cfg.task.family == "sinusoid" else F.cross_entropy
    inner = section(cfg.inner, "inner")
    alpha, steps, first_order = inner.lr, inner.steps, inner.first_order

    def loss(w: Params, x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, w, (x,)), y)

    def task(w: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        for _ in range(steps):
            g = grad(loss)(w, sx, sy)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            w = {k: w[k] - alpha * g[k] for k in w}
        return loss(w, qx, qy)

    def outer(batch: TaskBatch) -> Tensor:
        args = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        return vmap(task, in_dims=(None, 0, 0, 0, 0))(weights, *args).mean()

    def step(batch: TaskBatch, it: int) -> Tensor:
        value = outer(batch)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value.detach()

    def grads(batch: TaskBatch) -> tuple[Tensor, dict[str, Tensor]]:
        value = outer(batch)
        values = torch.autograd.grad(value, list(weights.values()))
        return value.detach(), dict(zip(weights, values, strict=True))

    return step, grads


def l2l_maml(cfg: SupervisedConfig, params: Params, l2l: types.ModuleType) -> tuple[Step, Grads]:
    """learn2learn's meta-iteration, as its examples write it: a Python loop over tasks."""
    inner = section(cfg.inner, "inner")
    maml = l2l.algorithms.MAML(twin_of(cfg, params), lr=inner.lr, first_order=inner.first_order)
    opt = torch.optim.Adam(maml.parameters(), lr=cfg.optim.lr)
    classify = cfg.task.family != "sinusoid"
    loss_fn = F.cross_entropy if classify else F.mse_loss

    def backward(batch: TaskBatch) -> Tensor:
        opt.zero_grad()
        tasks = batch.num_tasks
        total = torch.zeros(())
        for i in range(tasks):
            learner = maml.clone()
            for _ in range(inner.steps):
                learner.adapt(loss_fn(learner(batch.support_x[i]), batch.support_y[i]))
            pred = learner(batch.query_x[i])
            loss = loss_fn(pred, batch.query_y[i])
            if classify:  # the examples also compute the accuracy of each task
                (pred.argmax(dim=1) == batch.query_y[i]).float().mean()
            loss.backward()
            total += loss.detach()
        for p in maml.parameters():
            p.grad.mul_(1.0 / tasks)
        return total / tasks

    def step(batch: TaskBatch, it: int) -> Tensor:
        value = backward(batch)
        opt.step()
        return value

    def grads(batch: TaskBatch) -> tuple[Tensor, dict[str, Tensor]]:
        value = backward(batch)
        return value, {k: p.grad.clone() for k, p in maml.module.named_parameters()}

    return step, grads


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------


class Agreement(NamedTuple):
    """Outer losses of two implementations on one batch, and how far their meta-gradients are.

    Attributes:
        loss_ours: Our outer loss.
        loss_theirs: The other implementation's outer loss.
        grad_diff: Largest elementwise difference of the meta-gradients, relative to the largest
            meta-gradient element.
    """

    loss_ours: float
    loss_theirs: float
    grad_diff: float

    @property
    def loss_diff(self) -> float:
        """``|loss_ours - loss_theirs|``."""
        return abs(self.loss_ours - self.loss_theirs)

    def agrees(self) -> bool:
        """Equal up to float32 rounding of different summation orders."""
        scale = max(1.0, abs(self.loss_ours))
        return self.loss_diff <= 1e-5 * scale and self.grad_diff <= 1e-4


def agreement(ours: Grads, theirs: Grads, batch: TaskBatch) -> Agreement:
    """Both on ``batch`` from the same weights, up to (not including) the optimiser step.

    Meta-gradients are compared rather than weights after an Adam step: Adam's first step is
    about ``lr * sign(g)``, and the conv biases, which batch norm cancels, have gradients that
    are pure rounding noise of either sign.
    """
    (loss_ours, g_ours), (loss_theirs, g_theirs) = ours(batch), theirs(batch)
    scale = max(g.abs().max().item() for g in g_ours.values())
    diff = max((g_ours[k] - g_theirs[k]).abs().max().item() for k in g_ours)
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
    """Median rates of each implementation, median paired ratios of metarl to each, the load.

    Attributes:
        rates: Median rate of each implementation, by name.
        speedups: Median over repeats of metarl's rate over the other's, by the other's name.
        load: The 1-minute load average, averaged over the start and end of the measurement.
    """

    rates: dict[str, Rate]
    speedups: dict[str, Rate]
    load: float


def measure(
    steps: dict[str, Step], batches: list[TaskBatch], threads: int, seconds: float, repeats: int
) -> Measurement:
    """Rates of the implementations measured back to back, and metarl's paired ratios.

    Each repeat times every implementation right after the other (rotating who goes first), so
    the ratios of a repeat see nearly the same machine load; a speed-up is the median of these
    paired ratios, which drifts in the load of a shared machine hardly move. ``steps`` has
    ``"metarl"`` first.
    """
    torch.set_num_threads(threads)
    names = list(steps)
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Rate]] = []
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        runs.append({name: rate(steps[name], batches, seconds) for name in order})
    load = (load_before + os.getloadavg()[0]) / 2

    def median(values: Iterable[float]) -> float:
        return statistics.median(values)

    rates, speedups = {}, {}
    for n in names:
        rates[n] = Rate(median(run[n].wall for run in runs), median(run[n].cpu for run in runs))
        if n != "metarl":
            speedups[n] = Rate(
                median(run["metarl"].wall / run[n].wall for run in runs),
                median(run["metarl"].cpu / run[n].cpu for run in runs),
            )
    return Measurement(rates, speedups, load)


def sample_batches(
    cfg: SupervisedConfig, count: int, families: dict
) -> tuple[list[TaskBatch], float]:
    """``count`` training meta-batches of ``cfg`` and the seconds metarl takes to sample one."""
    if cfg.task.family not in families:
        families[cfg.task.family] = build_family(cfg.task, "train", CPU)
    gen = torch.Generator().manual_seed(0)
    family = families[cfg.task.family]
    batches = [family.sample(cfg.task.meta_batch_size, gen, training=True) for _ in range(count)]
    draws, start = 20, time.process_time()
    for _ in range(draws):
        family.sample(cfg.task.meta_batch_size, gen, training=True)
    return batches, (time.process_time() - start) / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="measured rounds per median")
    parser.add_argument("--threads", type=int, nargs="+", help="torch threads (default: 1 2)")
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run (1 thread)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.5, 1
    if args.threads is None:
        args.threads = [1] if args.quick else [1, 2]
    torch.manual_seed(0)
    keep_freed_memory()  # as `metarl train` does; the others, in this process, get it too
    try:
        l2l: types.ModuleType | None = import_learn2learn()
    except ImportError:
        l2l = None
    print(
        f"torch {torch.__version__}, learn2learn "
        f"{l2l.__version__ if l2l else 'not installed'}, {os.cpu_count()} CPUs, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    if l2l is None:
        print("learn2learn is not installed: its column is skipped (metarl vs torch.func only)")
    families: dict = {}
    rows = []
    for problem in problems():
        batches, sample_seconds = sample_batches(problem.cfg, 4, families)
        torch.set_num_threads(1)
        exp = metarl_experiment(problem.cfg)
        diffs = []
        for name, make in _makers(l2l).items():
            agree = agreement(metarl_grads(exp), make(problem.cfg, exp.params)[1], batches[0])
            print(
                f"{problem.label}: outer loss metarl {agree.loss_ours:.6f}, {name} "
                f"{agree.loss_theirs:.6f}, |diff| {agree.loss_diff:.1e}; meta-gradients differ "
                f"by at most {agree.grad_diff:.1e} of the largest element"
            )
            if not agree.agrees():
                raise SystemExit(f"{problem.label}: metarl and {name} disagree")
            diffs.append(agree.loss_diff)
        print(f"{problem.label}: metarl samples a meta-batch in {1e3 * sample_seconds:.2f} ms CPU")
        for threads in args.threads:
            # fresh weights and optimisers for every row, all three from the same weights
            exp = metarl_experiment(problem.cfg)
            steps = {"metarl": metarl_step(exp)}
            steps.update({n: f(problem.cfg, exp.params)[0] for n, f in _makers(l2l).items()})
            result = measure(steps, batches, threads, args.seconds, args.repeats)
            rows.append((problem.label, threads, result, max(diffs)))
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; ratio = "
        f"median over {args.repeats} rounds of back-to-back {args.seconds:g} s runs of metarl's "
        "rate over the other's; load = 1-minute load average while the row was measured\n"
    )
    names = ["torch.func", *(["learn2learn"] if l2l else [])]
    print(
        "| problem | threads | metarl it/s | "
        + " | ".join(f"{n} it/s" for n in names)
        + " | "
        + " | ".join(f"metarl / {n} (CPU time)" for n in names)
        + " | load | max outer-loss diff |"
    )
    print("|---" * (5 + 2 * len(names)) + "|")
    for label, threads, m, diff in rows:
        rates = " | ".join(f"{m.rates[n].wall:.2f}" for n in names)
        ratios = " | ".join(f"{m.speedups[n].wall:.2f}x ({m.speedups[n].cpu:.2f}x)" for n in names)
        print(
            f"| {label} | {threads} | {m.rates['metarl'].wall:.2f} | {rates} | {ratios} "
            f"| {m.load:.1f} | {diff:.1e} |"
        )


def _makers(l2l: types.ModuleType | None) -> dict[str, Callable[..., tuple[Step, Grads]]]:
    """The implementations metarl is compared with, by name (learn2learn when installed)."""
    makers: dict[str, Callable[..., tuple[Step, Grads]]] = {"torch.func": torchfunc_maml}
    if l2l is not None:
        makers["learn2learn"] = lambda cfg, params: l2l_maml(cfg, params, l2l)
    return makers


if __name__ == "__main__":
    main()

"""scripts/bench_supervised.py: its nn.Module twins equal our networks; it runs where it can."""

import importlib.util
import types
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from metarl.algorithms import build_supervised_learner

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_supervised", ROOT / "scripts" / "bench_supervised.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("vmap_safe", [False, True])
@pytest.mark.parametrize("index", [0, 1])
def test_twin_module_computes_what_our_network_computes(index, vmap_safe):
    bench = _bench_module()
    cfg = bench.problems()[index].cfg
    learner = build_supervised_learner(cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    params = learner.init_params()
    twin = bench.twin_of(cfg, params, vmap_safe=vmap_safe)
    g = torch.Generator().manual_seed(1)
    shape = (10, 1) if cfg.task.family == "sinusoid" else (5, 1, 28, 28)
    x = torch.rand(shape, generator=g)
    expected = functional_call(learner.model, params, (x,))
    torch.testing.assert_close(twin(x), expected, rtol=1e-5, atol=1e-5)


class _FakeMAML(torch.nn.Module):
    """learn2learn's ``MAML`` interface (``clone``, ``adapt``, ``module``), written out by hand.

    The benchmark's peer is learn2learn, which lives only in the benchmark venv; this stand-in
    lets the suite run every peer-free part of the script (our meta-iteration, the agreement
    check, the timing loop) in CI. The real comparison is ``.bench-venv/bin/python
    scripts/bench_supervised.py --quick``.
    """

    def __init__(self, model, lr, first_order=False):
        super().__init__()
        self.module, self.lr, self.first_order = model, lr, first_order

    def clone(self):
        return _FakeClone(self.module, dict(self.module.named_parameters()), self)


class _FakeClone:
    def __init__(self, module, params, maml):
        self.module, self.params, self.maml = module, params, maml

    def __call__(self, x):
        return functional_call(self.module, self.params, (x,))

    def adapt(self, loss):
        names = list(self.params)
        grads = torch.autograd.grad(
            loss, [self.params[k] for k in names], create_graph=not self.maml.first_order
        )
        self.params = {
            k: self.params[k] - self.maml.lr * g for k, g in zip(names, grads, strict=True)
        }


FAKE_L2L = types.SimpleNamespace(algorithms=types.SimpleNamespace(MAML=_FakeMAML))


def test_agreement_check_and_timing_loop_run_against_a_stand_in_peer():
    bench = _bench_module()
    problem = bench.problems()[0]
    assert problem.cfg.task.family == "sinusoid"
    batches, sample_seconds = bench.sample_batches(problem.cfg, 2, {})
    assert sample_seconds > 0
    exp = bench.metarl_experiment(problem.cfg)
    makers = bench._makers(FAKE_L2L)
    assert list(makers) == ["torch.func", "learn2learn"]
    for make in makers.values():
        agree = bench.agreement(
            bench.metarl_grads(exp), make(problem.cfg, exp.params)[1], batches[0]
        )
        assert agree.agrees(), agree
    steps = {"metarl": bench.metarl_step(exp)}
    steps.update({n: make(problem.cfg, exp.params)[0] for n, make in makers.items()})
    result = bench.measure(steps, batches, threads=1, seconds=0.01, repeats=2)
    assert set(result.rates) == {"metarl", "torch.func", "learn2learn"}
    assert set(result.speedups) == {"torch.func", "learn2learn"}
    assert all(
        r.wall > 0 and r.cpu > 0 for r in (*result.rates.values(), *result.speedups.values())
    )
    assert len(exp.opt.state) == len(exp.params)  # metarl's steps went through its optimiser


def test_without_learn2learn_only_the_torch_func_peer_is_compared():
    assert list(_bench_module()._makers(None)) == ["torch.func"]

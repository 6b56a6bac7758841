"""scripts/bench_supervised.py: its nn.Module twins equal our networks; it runs where it can."""

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from metarl.algorithms import build_supervised_learner

ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_supervised", ROOT / "scripts" / "bench_supervised.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("index", [0, 1])
def test_twin_module_computes_what_our_network_computes(index):
    bench = _bench_module()
    cfg = bench.problems()[index].cfg
    learner = build_supervised_learner(cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    params = learner.init_params()
    twin = bench.twin_of(cfg, params)
    g = torch.Generator().manual_seed(1)
    shape = (10, 1) if cfg.task.family == "sinusoid" else (5, 1, 28, 28)
    x = torch.rand(shape, generator=g)
    expected = functional_call(learner.model, params, (x,))
    torch.testing.assert_close(twin(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not BENCH_PYTHON.exists(), reason="needs the learn2learn venv .bench-venv")
def test_quick_benchmark_runs_and_both_agree():
    proc = subprocess.run(
        [str(BENCH_PYTHON), "scripts/bench_supervised.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| 1 |") == 3  # one row per problem

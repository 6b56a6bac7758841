"""Every script and CLI entry point runs end to end on a tiny budget."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, timeout=180):
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_metarl_envs_lists_every_env_with_its_task_parameters():
    out = _run("-m", "metarl.cli", "envs")
    assert "metarl/HalfCheetahVel-v0  (horizon 100)" in out
    assert "goal_velocity: U[0.0, 2.0]" in out
    assert "metarl/TabularMDP-v0" in out and "metarl/Bandit-K50-v0" in out
    assert "usage: metarl" in _run("-m", "metarl.cli", "--help")


@pytest.mark.slow
def test_demo_runs_maml_trpo_on_a_tiny_budget(tmp_path):
    out = _run(
        "scripts/demo.py",
        "--num-envs",
        "2",
        "--steps",
        "3",
        "--iterations",
        "1",
        "--eval-tasks",
        "2",
        "--eval-episodes",
        "2",
        "--run-root",
        str(tmp_path),
        "--results-dir",
        str(tmp_path / "results"),
    )
    assert "metarl/AntGoal-v0" in out and "metarl/Navigation2D-v0" in out
    table = out[out.index("Return on 2 held-out goals") :]
    for row in ("MAML-TRPO", "pretrained", "random"):
        assert row in table
    assert "3 steps" in table
    assert list(tmp_path.glob("maml_trpo-navigation2d-*/eval/eval.png"))
    written = {p.name for p in (tmp_path / "results").iterdir()}
    assert written == {"run.json", "config.yaml", "eval.json", "eval.csv", "eval.png"}


def test_demo_sinusoid_job_runs_on_a_tiny_budget(tmp_path):
    out = _run(
        "scripts/demo.py",
        "--job",
        "maml-sinusoid",
        "--num-envs",
        "2",
        "--steps",
        "3",
        "--iterations",
        "3",
        "--run-root",
        str(tmp_path),
    )
    assert "MSE on 200 held-out sinusoids" in out and "random init" in out
    assert list(tmp_path.glob("maml-sinusoid-*/eval/eval.png"))


@pytest.mark.slow
def test_env_benchmark_prints_its_table(tmp_path):
    out = _run(
        "scripts/bench_envs.py",
        "--seconds",
        "0.05",
        "--num-envs",
        "2",
        "--nav-envs",
        "10",
        "--skip-async",
        "--metaworld-envs",
        "2",
        "--settle",
        "0",
        "--out",
        str(tmp_path / "b.json"),
    )
    assert "| metarl sync |" in out and "× raw" in out and "× lockstep" in out
    assert "with a busy-loop neighbour process" in out and "| metarl auto (at most 2) |" in out
    assert "tasks runnable now" in out and "auto picked" in out
    assert (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_train_and_evaluate_scripts_wrap_the_cli(tmp_path):
    _run(
        "scripts/train.py",
        "configs/maml/sinusoid.yaml",
        "--set",
        "optim.iterations=2",
        "--set",
        "run.num_eval_tasks=3",
        "--set",
        "eval.steps=1",
        "--run-dir",
        str(tmp_path / "run"),
    )
    out = _run("scripts/evaluate.py", str(tmp_path / "run"), "--num-tasks", "3", "--steps", "1")
    assert "after  1 steps" in out


@pytest.mark.slow
def test_memory_benchmark_prints_its_table():
    out = _run("scripts/bench_memory.py", "--rounds", "1")
    assert "| default |" in out and "| tuned |" in out

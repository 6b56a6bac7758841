"""scripts/gpu_check.py: the dry run resolves every config for CUDA; the CPU quick mode runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402
from gpu_jobs import SPEED_JOBS, TRAIN_JOBS  # noqa: E402


def _run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "scripts/gpu_check.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dry_run_resolves_every_config_with_device_cuda():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resolved = [line for line in proc.stdout.splitlines() if "config ok:" in line]
    assert len(resolved) == 2 * (len(TRAIN_JOBS) + len(SPEED_JOBS))  # full and quick sizes
    assert all(line.endswith("run.device=cuda") for line in resolved)
    if not (ROOT / ".whl" / "manifest.json").is_file():
        assert "wheel install skipped" in proc.stdout


def test_bad_stage_and_job_names_are_rejected():
    proc = _run("--stages", "env,tset")
    assert proc.returncode == 2 and "unknown stages ['tset']" in proc.stderr
    proc = _run("--jobs", "maml-sinusiod")
    assert proc.returncode == 2 and "unknown jobs ['maml-sinusiod']" in proc.stderr


def test_job_names_are_unique_within_a_stage():
    for jobs in (TRAIN_JOBS, SPEED_JOBS):
        assert len({j.name for j in jobs}) == len(jobs)


def test_iterations_per_second_from_checkpoint_times(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for iteration, seconds in [(2, 100.0), (6, 102.0)]:
        path = ckpt / f"checkpoint_{iteration:08d}.pt"
        path.write_bytes(b"")
        os.utime(path, (seconds, seconds))
    assert gpu_check.iterations_per_second(tmp_path, 2, 6) == pytest.approx(2.0)
    assert gpu_check.iterations_per_second(tmp_path, 2, 8) is None


def test_phase_medians_drop_the_warm_up(tmp_path):
    csv = tmp_path / "metrics.csv"
    rows = ["step,key,value"] + [
        f"{i},time/outer_update_seconds,{v}" for i, v in enumerate([9, 1, 3, 2])
    ]
    csv.write_text("\n".join([*rows, "3,train/loss,0.5"]) + "\n")
    assert gpu_check.phase_medians(csv, warmup=1) == {"time/outer_update_seconds": 2.0}


@pytest.mark.slow
def test_cpu_quick_speed_run_of_the_smallest_job(tmp_path):
    proc = _run(
        "--device", "cpu", "--quick", "--stages", "speed", "--jobs", "maml-sinusoid",
        "--out", str(tmp_path), timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "speed-maml-sinusoid-cpu.json").read_text())
    assert result["ok"] and result["iterations_per_second"] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and summary["device"] == "cpu"
    assert "| maml-sinusoid | quick | – |" in (tmp_path / "summary.md").read_text()


def test_bench_is_a_stage_of_its_own_call():
    assert "bench" in gpu_check.STAGES and "bench" not in gpu_check.DEFAULT_STAGES


@pytest.mark.slow
def test_cpu_quick_bench_stage_writes_each_scripts_figures(tmp_path):
    proc = _run("--device", "cpu", "--quick", "--stages", "bench", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    distributed = json.loads((tmp_path / "bench_distributed-rl2.json").read_text())
    (row,) = distributed["rows"].values()
    assert list(distributed["rows"]) == ["rl2_halfcheetah_vel_small"]
    assert row["1"]["iterations_per_s"] > 0 and row["2"]["iterations_per_s"] > 0
    envs = json.loads((tmp_path / "bench_envs.json").read_text())
    assert set(envs) == {"metarl/HalfCheetahVel-v0 (neighbour)", "metarl/AntDir-v0 (neighbour)"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and [j["job"] for j in summary["stages"]["bench"]["jobs"]] == [
        "bench_distributed-rl2",
        "bench_envs",
    ]

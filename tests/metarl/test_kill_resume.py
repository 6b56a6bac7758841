"""kill -9 fuzz: runs killed at random (seeded) moments and resumed equal an uninterrupted run.

A real ``metarl train`` process is SIGKILLed several times at random delays (which can land
anywhere: inside an iteration, while metrics or a checkpoint are written, during the final
evaluation) and resumed with ``--resume`` each time, then run to the end. The metrics CSV,
the TensorBoard scalars, every checkpoint kept on disk and the evaluation must equal those of an
uninterrupted run of the same seed.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

JOBS = {
    "sinusoid": (
        "configs/maml/sinusoid.yaml",
        [
            "optim.iterations=150",
            "task.meta_batch_size=4",
            "eval.steps=2",
            "run.num_eval_tasks=8",
            "run.checkpoint_every=10",
            "run.num_threads=1",
        ],
    ),
    "navigation": (
        "configs/maml_trpo/navigation2d.yaml",
        [
            "optim.iterations=16",
            "env.horizon=10",
            "env.meta_batch_size=2",
            "env.episodes_per_task=3",
            "policy.hidden=[16]",
            "eval.steps=1",
            "eval.episodes_per_task=2",
            "eval.baselines=false",
            "run.num_eval_tasks=2",
            "run.checkpoint_every=3",
            "run.num_threads=1",
        ],
    ),
}


def _command(job, run_dir, resume):
    config, overrides = JOBS[job]
    args = [sys.executable, "-m", "metarl", "train", config, "--run-dir", str(run_dir)]
    args += ["--device", "cpu", "--seed", "11"]
    for item in [*overrides, "run.log_every=1", "run.progress=false", "run.keep_checkpoints=2"]:
        args += ["--set", item]
    return [*args, "--resume"] if resume else args


def _env():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("CI", None)  # the progress bar is off anyway; CI only matters for data checks
    return env


def _run(job, run_dir, resume=False):
    done = subprocess.run(
        _command(job, run_dir, resume), cwd=ROOT, env=_env(), capture_output=True, timeout=240
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _run_and_kill(job, run_dir, resume, delay):
    """Starts a run and SIGKILLs it after ``delay`` s; returns True if the kill landed."""
    proc = subprocess.Popen(
        _command(job, run_dir, resume),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
        return False  # finished first
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return True


def _csv_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(s), k, None if k.startswith("time/") else float(v)) for s, k, v in rows]


def _tensorboard(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: [(e.step, None if tag.startswith("time/") else e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def _assert_equal(a, b, where=""):
    """Exact equality of checkpoint contents (tensors bit for bit, strings, numbers, nesting)."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def _checkpoints(run_dir):
    return {p.name: load_checkpoint(p) for p in sorted((run_dir / "checkpoints").glob("*.pt"))}


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(JOBS))
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_result(tmp_path, job):
    straight = tmp_path / "straight"
    tic = time.perf_counter()
    _run(job, straight)
    duration = time.perf_counter() - tic

    rng = np.random.default_rng(sum(map(ord, job)))
    killed = tmp_path / "killed"
    landed = 0
    for attempt in range(3):
        # Anywhere from start-up to near the end of an uninterrupted run.
        landed += _run_and_kill(job, killed, attempt > 0, rng.uniform(0.2, 0.9) * duration)
    _run(job, killed, resume=True)
    assert landed >= 1, "the kills should interrupt the run, not arrive after it finished"

    assert _csv_rows(killed) == _csv_rows(straight)
    assert _tensorboard(killed) == _tensorboard(straight)
    a, b = _checkpoints(straight), _checkpoints(killed)
    assert list(a) == list(b)
    for name in a:
        _assert_equal(a[name], b[name], name)
    eval_a = json.loads((straight / "eval" / "eval.json").read_text())
    assert json.loads((killed / "eval" / "eval.json").read_text()) == eval_a
    assert not list((killed / "checkpoints").glob(".*")), "a killed write left a temporary file"

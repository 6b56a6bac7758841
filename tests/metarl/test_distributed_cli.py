"""``metarl train`` on several ranks: the same numbers as one rank, resumes N -> M, clear faults.

Real launches: ``metarl train --nproc 2`` (torch's elastic launcher), two ``torchrun --nnodes 2``
launches meeting at a c10d rendezvous on localhost, a SIGKILLed rank, a taken port, a rendezvous
that never completes, and a collective whose peer died. Every comparison with one rank is to
float32 reduction tolerance (relative 1e-5): the ranks sum their tasks' shares in another order.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from metarl import distributed
from metarl.cli import EXIT_BAD_INPUT, EXIT_RUNTIME
from metarl.cli import main as cli_main
from tests.helpers.gloo import free_port, rank_env

ROOT = Path(__file__).resolve().parents[2]
RTOL = 1e-5
SETTINGS = [
    "task.meta_batch_size=5",  # 3 tasks on rank 0, 2 on rank 1
    "eval.steps=2",
    "run.num_eval_tasks=5",
    "run.log_every=1",
    "run.checkpoint_every=3",
    "run.progress=false",
    "run.num_threads=1",
    "run.log_backends=[csv]",
]


def _args(run_dir: Path, iterations: int, *extra: str) -> list[str]:
    args = ["train", "configs/maml/sinusoid.yaml", "--run-dir", str(run_dir), "--device", "cpu"]
    for item in [*SETTINGS, f"optim.iterations={iterations}"]:
        args += ["--set", item]
    return [*args, *extra]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


def _metarl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metarl", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rows(run_dir: Path) -> list[tuple[int, str, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(s), k, float(v)) for s, k, v in rows if not k.startswith("time/")]


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    got, want = _rows(run_dir), _rows(reference)
    assert [r[:2] for r in got] == [r[:2] for r in want]
    for (step, key, a), (_, _, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=RTOL, abs=1e-7), (step, key)
    ours = json.loads((run_dir / "eval" / "eval.json").read_text())
    theirs = json.loads((reference / "eval" / "eval.json").read_text())
    assert ours["num_tasks"] == theirs["num_tasks"]
    assert ours["mean"] == pytest.approx(theirs["mean"], rel=RTOL)


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: 5 iterations on one rank, in this process."""
    run_dir = tmp_path_factory.mktemp("one") / "run"
    assert cli_main(_args(run_dir, 5)) == 0
    return run_dir


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """5 iterations on 2 ranks through ``--nproc 2``; the run directory and its stdout."""
    run_dir = tmp_path_factory.mktemp("two") / "run"
    done = _metarl(*_args(run_dir, 5), "--nproc", "2")
    assert done.returncode == 0, done.stderr
    return run_dir, done.stdout


@pytest.mark.slow
def test_nproc_2_matches_one_rank(one_rank: Path, two_ranks: tuple[Path, str]) -> None:
    run_dir, stdout = two_ranks
    assert stdout.count("training maml") == 1 and "x 2 ranks" in stdout  # only rank 0 prints
    assert stdout.count("written:") == 1
    _assert_same_run(run_dir, one_rank)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "checkpoint_00000003.pt",
        "checkpoint_00000005.pt",
    ]


@pytest.mark.slow
def test_a_2_rank_checkpoint_resumes_on_1_rank(
    one_rank: Path, two_ranks: tuple[Path, str], tmp_path: Path
) -> None:
    resumed = tmp_path / "resumed"  # the 2-rank run as it stood after its 3rd iteration
    shutil.copytree(two_ranks[0], resumed)
    (resumed / "checkpoints" / "checkpoint_00000005.pt").unlink()
    assert cli_main(_args(resumed, 5, "--resume")) == 0
    _assert_same_run(resumed, one_rank)


@pytest.mark.slow
def test_two_torchrun_nodes_match_one_rank(one_rank: Path, tmp_path: Path) -> None:
    run_dir, port = tmp_path / "nodes", free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    torchrun += ["--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    torchrun += ["--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "metarl", *_args(run_dir, 5)]
    nodes = [
        subprocess.Popen(
            torchrun, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err.decode()[-2000:]
    assert sum(out.decode().count("training maml") for out, _ in outputs) == 1
    _assert_same_run(run_dir, one_rank)


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the process started with ``METARL_TEST_TAG=tag`` and ``RANK=rank``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"METARL_TEST_TAG={tag}".encode() in environ and f"RANK={rank}".encode() in environ:
            return int(entry)
    return None


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_with_one_line_and_it_resumes(
    tmp_path: Path,
) -> None:
    run_dir, tag = tmp_path / "killed", f"kill-{os.getpid()}"
    args = _args(run_dir, 100_000, "--nproc", "2", "--set", "run.collective_timeout=20")
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl", *args],
        cwd=ROOT,
        env={**_env(), "METARL_TEST_TAG": tag},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((run_dir / "checkpoints").glob("checkpoint_*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
        pid = _rank_pid(tag, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)  # well within the 20 s timeout plus shutdown
    finally:
        proc.kill()
    assert proc.returncode == EXIT_RUNTIME
    # one line, from the launcher (it stops rank 0 before rank 0 reports its lost peer); on a
    # machine so loaded that rank 0 reports first, that line comes too, also naming --resume
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and all(line.startswith("error: ") for line in lines), err
    assert all("--resume" in line for line in lines)
    assert any("rank 1" in line and "SIGKILL" in line for line in lines) or (
        "all-reduce failed" in lines[0]
    )

    # the run continues on 2 ranks from its last checkpoint (rank 0 reads it, rank 1 gets it by
    # broadcast), to 2 iterations past it, as one rank would have run it
    latest = max(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("*.pt"))
    done = _metarl(*_args(run_dir, latest + 2, "--resume", "--nproc", "2"))
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    assert cli_main(_args(reference, latest + 2)) == 0
    _assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_a_failure_of_every_rank_is_reported_once_by_rank_0(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a run")
    done = _metarl(*_args(occupied, 5, "--nproc", "2"))
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.splitlines() == [
        f"error: run directory {occupied} already holds a run: pass --resume to continue it, or "
        "--run-dir to start another"
    ]
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]


def test_a_taken_port_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = ["--nproc", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
        assert cli_main(_args(tmp_path / "run", 5, *endpoint)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port} on 127.0.0.1 is already in use" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_rendezvous_that_never_completes_is_one_clear_line(tmp_path: Path) -> None:
    endpoint = ["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    done = _metarl(*_args(tmp_path / "run", 5, *endpoint, "--set", "run.collective_timeout=2"))
    assert done.returncode == EXIT_RUNTIME
    assert done.stderr.count("\n") == 1, done.stderr
    assert "rendezvous at 127.0.0.1:" in done.stderr
    assert "did not complete within 2 s" in done.stderr


def _lonely_worker(rank: int, port: int, out: dict) -> None:  # pragma: no cover - a child
    rank_env(rank, port)
    distributed.init(torch.device("cpu"), timeout_s=5)
    distributed.barrier()
    if rank == 1:
        os._exit(0)  # dies without leaving the group
    try:
        distributed.all_reduce_sum_([torch.ones(3)])
    except distributed.CollectiveError as err:
        out["error"] = str(err)
    else:
        out["error"] = None
    # a broken gloo group can abort the interpreter's teardown (std::terminate); the result is in
    # the manager already, so leave as rank 1 did
    os._exit(0)


def test_a_collective_whose_peer_died_is_an_error_within_the_timeout() -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_lonely_worker, args=(free_port(), out), nprocs=2, join=True)
        error = out["error"]
    assert error is not None and error.startswith("rank 0 of 2: all-reduce failed")
    assert "collective timeout (5 s" in error and "--resume" in error and "\n" not in error

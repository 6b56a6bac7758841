"""Whole data-parallel meta-RL runs through ``metarl train --nproc 2`` (gloo, two local ranks).

A 5-iteration run on two ranks matches the one-process run in every metrics CSV row (``train/``
and ``eval/`` values to relative 1e-5: only float32 sums are reordered; ``time/`` rows are wall
clock and only their presence is compared), and a run checkpointed on two ranks resumes on one
and continues as the one-process run does, because the task streams do not depend on the world
size.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from metarl.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]

FAMILIES = {
    "maml_trpo": (
        "configs/maml_trpo/navigation2d.yaml",
        [
            "env.horizon=6",
            "env.meta_batch_size=3",
            "env.episodes_per_task=2",
            "policy.hidden=[8]",
            "trpo.cg_damping=1.0",  # a well-posed CG (see test_distributed_rl.py)
            "eval.steps=1",
            "eval.episodes_per_task=2",
            "eval.baselines=false",
            "run.num_eval_tasks=7",  # 3 chunks of 3 tasks: the ranks split the evaluation
        ],
    ),
    "rl2_ppo": (
        "configs/rl2/bandit_k5_n10.yaml",
        [
            "env.episodes_per_trial=4",
            "env.num_trials=5",
            "policy.hidden_size=8",
            "ppo.epochs=2",
            "algo.num_minibatches=2",
            "eval.num_trials=3",
            "eval.baselines=false",
            "run.num_eval_tasks=7",  # 3 chunks of 3 tasks: the ranks split the evaluation
        ],
    ),
}


def _train(
    family: str,
    run_dir: Path,
    iterations: int,
    nproc: int,
    resume: bool = False,
    flags: tuple[str, ...] = (),
) -> None:
    config, overrides = FAMILIES[family]
    args = ["train", str(ROOT / config), "--run-dir", str(run_dir), "--device", "cpu"]
    args += ["--seed", "5"] + (["--nproc", str(nproc)] if nproc > 1 else [])
    sets = [*overrides, f"optim.iterations={iterations}", "run.progress=false"]
    sets += ["run.log_every=1", "run.checkpoint_every=2", "run.num_threads=1"]
    for item in sets:
        args += ["--set", item]
    assert cli_main([*args, *flags, "--resume"] if resume else [*args, *flags]) == 0


def _rows(run_dir: Path) -> list[tuple[int, str, float | None]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(s), k, None if k.startswith("time/") else float(v)) for s, k, v in rows]


def _assert_rows_close(got: Path, want: Path) -> None:
    a, b = _rows(got), _rows(want)
    assert [(s, k) for s, k, _ in a] == [(s, k) for s, k, _ in b]
    for (step, key, x), (_, _, y) in zip(a, b, strict=True):
        if y is not None:
            assert x == pytest.approx(y, rel=1e-5, abs=1e-6), (step, key)


@pytest.fixture(autouse=True)
def _ranks_import_this_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launched ranks run ``python -m metarl``: they must import this checkout."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + path if path else ""))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_rank_runs_match_one_rank_and_resume_on_one(tmp_path: Path, family: str) -> None:
    one, two, mixed = tmp_path / "one", tmp_path / "two", tmp_path / "mixed"
    _train(family, one, 5, nproc=1)
    _train(family, two, 5, nproc=2)
    assert sorted({s for s, _, _ in _rows(two)}) == [0, 1, 2, 3, 4, 5]  # 5 iterations, eval
    _assert_rows_close(two, one)
    assert (two / "eval" / "eval.json").is_file()

    shutil.copytree(two, mixed)  # the two-rank run as if stopped after its checkpoint 2
    for later in (4, 5):
        (mixed / "checkpoints" / f"checkpoint_{later:08d}.pt").unlink()
    _train(family, mixed, 5, nproc=1, resume=True)
    _assert_rows_close(mixed, one)
    a = json.loads((mixed / "eval" / "eval.json").read_text())
    b = json.loads((one / "eval" / "eval.json").read_text())
    assert a["mean"] == pytest.approx(b["mean"], rel=1e-5, abs=1e-6)


def test_a_two_rank_run_started_from_a_one_rank_checkpoint_continues_it(tmp_path: Path) -> None:
    """--init-from on two ranks: rank 0 reads the checkpoint and broadcasts it; unchanged
    settings continue the one-process run (rows from its iteration on, to float32 tolerance)."""
    one, forked = tmp_path / "one", tmp_path / "forked"
    _train("rl2_ppo", one, 4, nproc=1)
    start = ("--init-from", str(one / "checkpoints" / "checkpoint_00000002.pt"))
    _train("rl2_ppo", forked, 4, nproc=2, flags=start)
    a, b = _rows(forked), [row for row in _rows(one) if row[0] >= 2]
    assert [(s, k) for s, k, _ in a] == [(s, k) for s, k, _ in b]
    for (step, key, x), (_, _, y) in zip(a, b, strict=True):
        if y is not None:
            assert x == pytest.approx(y, rel=1e-5, abs=1e-6), (step, key)

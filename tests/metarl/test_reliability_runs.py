"""Issue 15, findings 2 and 4: resume compatibility and damaged checkpoints, as they were found.

Finding 2: resuming a MAML sinusoid run with the Reptile config failed with a size-mismatch
traceback after ``config.yaml`` had already been overwritten, so ``metarl eval`` then labelled the
MAML weights "reptile"; a changed seed or inner lr only warned. Finding 4: a damaged latest
checkpoint blocked resume and eval although an intact older one sat beside it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
import torch

from metarl.algorithms.maml_rl_config import MAMLRLConfig
from metarl.checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    checkpoint_path,
    latest_intact_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from metarl.cli import main as cli_main
from metarl.config import save_config
from metarl.runs import RESUMABLE_CHANGES, IncompatibleResumeError, check_resume

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MAML_SIN = str(CONFIGS / "maml" / "sinusoid.yaml")
REPTILE_SIN = str(CONFIGS / "reptile" / "sinusoid.yaml")


def _sets(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _train(capsys, config, run_dir, *overrides, resume=False, seed=None):
    """Runs ``metarl train`` in-process; returns (exit code, stdout, stderr)."""
    argv = ["train", config, "--run-dir", str(run_dir), "--device", "cpu"]
    argv += _sets("run.num_eval_tasks=3", "run.progress=false", *overrides)
    argv += ["--resume"] if resume else []
    argv += [] if seed is None else ["--seed", str(seed)]
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "tensorboard" not in p.parts
    }


# --------------------------------------------------------------------------------------------
# finding 2: resume compatibility, checked before anything is written
# --------------------------------------------------------------------------------------------


def test_resuming_maml_with_the_reptile_config_is_refused_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _train(capsys, MAML_SIN, run_dir, "optim.iterations=2")[0] == 0
    before = _snapshot(run_dir)
    code, _, err = _train(capsys, REPTILE_SIN, run_dir, "optim.iterations=2", resume=True)
    assert code == 2
    line = _one_error_line(err)
    assert f"cannot resume {run_dir}" in line
    assert "algo.name: 'maml' -> 'reptile'" in line
    assert "model.hidden: [40, 40] -> [64, 64]" in line
    assert f"metarl train {run_dir / 'config.yaml'} --resume" in line
    assert _snapshot(run_dir) == before  # config.yaml, metrics and checkpoints untouched
    # ...so the evaluation still labels the weights with the algorithm that trained them.
    assert cli_main(["eval", str(run_dir), "--num-tasks", "3", "--steps", "1"]) == 0
    capsys.readouterr()
    assert json.loads((run_dir / "eval" / "eval_test.json").read_text())["algorithm"] == "maml"


@pytest.mark.parametrize(
    ("change", "seed", "shown"),
    [
        ((), 3, "run.seed: 0 -> 3"),
        (("inner.lr=0.02",), None, "inner.lr: 0.01 -> 0.02"),
        (("optim.lr=0.01",), None, "optim.lr: 0.001 -> 0.01"),
        (("task.phase_range=[0.0, 1.0]",), None, "task.phase_range: [0.0, 3.14159"),
    ],
)
def test_resuming_with_a_changed_seed_or_learning_rate_is_refused(
    tmp_path, capsys, change, seed, shown
):
    run_dir = tmp_path / "run"
    assert _train(capsys, MAML_SIN, run_dir, "optim.iterations=2")[0] == 0
    before = _snapshot(run_dir)
    code, _, err = _train(
        capsys, MAML_SIN, run_dir, "optim.iterations=2", *change, resume=True, seed=seed
    )
    assert code == 2
    assert shown in _one_error_line(err)
    assert _snapshot(run_dir) == before


def test_resuming_with_more_iterations_and_other_cadences_continues_and_lists_them(
    tmp_path, capsys, caplog
):
    run_dir = tmp_path / "run"
    assert _train(capsys, MAML_SIN, run_dir, "optim.iterations=2")[0] == 0
    more = ("optim.iterations=4", "run.log_every=1", "run.keep_checkpoints=5", "run.num_threads=1")
    with caplog.at_level(logging.WARNING, logger="metarl.runs"):
        code, _, err = _train(capsys, MAML_SIN, run_dir, *more, resume=True)
    assert code == 0, err
    assert "optim.iterations: 2 -> 4" in caplog.text and "run.log_every: 100 -> 1" in caplog.text
    assert (run_dir / "checkpoints" / "checkpoint_00000004.pt").is_file()


def test_a_longer_cosine_schedule_changes_the_computation_and_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cosine = ("optim.schedule=cosine", "optim.min_lr=0.0001")
    assert _train(capsys, MAML_SIN, run_dir, "optim.iterations=2", *cosine)[0] == 0
    code, _, err = _train(capsys, MAML_SIN, run_dir, "optim.iterations=4", *cosine, resume=True)
    assert code == 2 and "optim.iterations: 2 -> 4" in _one_error_line(err)


def test_rl_env_backend_and_workers_may_change_on_resume_but_not_the_algorithm(tmp_path):
    # The process and thread backends give the same trajectories as sync
    # (tests/envs/test_vector_envs.py), so they are in RESUMABLE_CHANGES.
    assert {"env.backend", "env.num_workers"} <= RESUMABLE_CHANGES
    cfg = MAMLRLConfig()
    save_config(cfg, tmp_path / "config.yaml")
    save_checkpoint(checkpoint_path(tmp_path, 1), {"iteration": 1})
    env = dataclasses.replace(cfg.env, backend="process", num_workers=2)
    assert check_resume(tmp_path, dataclasses.replace(cfg, env=env)) == checkpoint_path(tmp_path, 1)
    trpo = dataclasses.replace(cfg.trpo, cg_damping=1e-3)
    with pytest.raises(IncompatibleResumeError, match=r"trpo\.cg_damping: 1e-05 -> 0\.001"):
        check_resume(tmp_path, dataclasses.replace(cfg, trpo=trpo))


def test_without_a_checkpoint_a_resume_starts_over_so_any_change_is_allowed(tmp_path):
    cfg = MAMLRLConfig()
    save_config(cfg, tmp_path / "config.yaml")
    inner = dataclasses.replace(cfg.inner, lr=0.5)
    assert check_resume(tmp_path, dataclasses.replace(cfg, inner=inner)) is None


# --------------------------------------------------------------------------------------------
# finding 4: damaged checkpoints are detected, and resume/eval fall back to an intact one
# --------------------------------------------------------------------------------------------


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE = {"bit flip": _flip_middle_byte, "truncated": _truncate, "empty": _empty}


def test_a_flipped_bit_that_torch_load_misses_is_caught_by_the_crc32(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(20_000, dtype=torch.float32)})
    _flip_middle_byte(path)
    # torch.load does not check the CRC32s it wrote: it returns a wrong number silently.
    loaded = torch.load(path, weights_only=True)
    assert not torch.equal(loaded["w"], torch.arange(20_000, dtype=torch.float32))
    with pytest.raises(CorruptCheckpointError, match=r"c\.pt is damaged \(record .* CRC32"):
        verify_checkpoint(path)
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", DAMAGE)
def test_latest_intact_checkpoint_skips_a_damaged_one_and_names_it(tmp_path, caplog, damage):
    for iteration in (1, 2):
        save_checkpoint(checkpoint_path(tmp_path, iteration), {"w": torch.ones(5000) * iteration})
    DAMAGE[damage](checkpoint_path(tmp_path, 2))
    with caplog.at_level(logging.WARNING, logger="metarl.checkpoint"):
        assert latest_intact_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)
    assert "checkpoint_00000002.pt is damaged" in caplog.text
    DAMAGE[damage](checkpoint_path(tmp_path, 1))
    with pytest.raises(CorruptCheckpointError, match="every checkpoint in .* is damaged"):
        latest_intact_checkpoint(tmp_path)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"iteration": 1, "params": Payload()}, path)
    verify_checkpoint(path)  # an intact zip: this is not damage, it is refused on load
    with pytest.raises(UnsafeCheckpointError, match=r"refused: .*GLOBAL posix\.mkdir"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_eval_and_resume_fall_back_to_the_newest_intact_checkpoint(
    tmp_path, capsys, caplog, damage
):
    cadence = ("run.checkpoint_every=2", "run.log_every=1")
    run_dir = tmp_path / "run"
    assert _train(capsys, MAML_SIN, run_dir, "optim.iterations=4", *cadence)[0] == 0
    DAMAGE[damage](run_dir / "checkpoints" / "checkpoint_00000004.pt")
    # eval: falls back with a warning naming the damaged file
    with caplog.at_level(logging.WARNING):
        code = cli_main(["eval", str(run_dir), "--num-tasks", "3", "--steps", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "checkpoint: " + str(run_dir / "checkpoints" / "checkpoint_00000002.pt") in out
    assert "checkpoint_00000004.pt is damaged" in caplog.text
    # resume: continues from iteration 2 and sets the damaged file aside...
    code, _, err = _train(capsys, MAML_SIN, run_dir, "optim.iterations=6", *cadence, resume=True)
    assert code == 0, err
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "checkpoint_00000004.pt.damaged" in names and "checkpoint_00000006.pt" in names
    # ...and ends where an uninterrupted run ends.
    clean = tmp_path / "clean"
    assert _train(capsys, MAML_SIN, clean, "optim.iterations=6", *cadence)[0] == 0
    resumed = load_checkpoint(run_dir / "checkpoints" / "checkpoint_00000006.pt")["params"]
    expected = load_checkpoint(clean / "checkpoints" / "checkpoint_00000006.pt")["params"]
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)

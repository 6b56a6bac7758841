from __future__ import annotations

import csv
import dataclasses
import logging
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl.checkpoint import capture_rng_state, checkpoint_path, restore_rng_state
from metarl.config import RunConfig, load_config
from metarl.runs import (
    NonFiniteLossError,
    RunDirExistsError,
    check_finite,
    open_run,
    open_run_from_config,
    progress_bar,
    progress_enabled,
)


@dataclass(frozen=True)
class TinyConfig:
    outer_lr: float = 0.05
    """Adam step size."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run settings."""


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


def test_open_run_creates_layout(tmp_path):
    cfg = TinyConfig()
    run_dir = tmp_path / "runs" / "a"
    with open_run(run_dir, cfg) as run:
        run.logger.log(0, {"train/loss": 1.0})
        assert run.config_path == run_dir / "config.yaml"
        assert run.checkpoint_dir == run_dir / "checkpoints"
        assert run.eval_dir == run_dir / "eval"
        assert run.resumed_from is None
    assert load_config(TinyConfig, run.config_path) == cfg
    assert read_rows(run.csv_path) == [["0", "train/loss", "1.0"]]
    assert any(run.tensorboard_dir.iterdir())


def test_open_run_from_config_uses_run_section(tmp_path):
    run_cfg = RunConfig(run_dir=str(tmp_path / "b"), log_backends=("csv",), keep_checkpoints=1)
    cfg = TinyConfig(run=run_cfg)
    with open_run_from_config(cfg, cfg.run) as run:
        run.save_checkpoint(1, {})
        run.save_checkpoint(2, {})
        assert run.keep_checkpoints == 1
        assert [p.name for p in run.checkpoint_dir.iterdir()] == ["checkpoint_00000002.pt"]
    assert sorted(p.name for p in run.run_dir.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.csv",
    ]
    resumed = dataclasses.replace(cfg, run=dataclasses.replace(run_cfg, resume=True))
    with open_run_from_config(resumed, resumed.run) as run:
        assert run.resumed_from == checkpoint_path(run.run_dir, 2)


def test_existing_run_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "a"
    open_run(run_dir, TinyConfig()).close()
    with pytest.raises(
        RunDirExistsError, match=rf"run_dir {run_dir} already holds a run; pass resume=True"
    ):
        open_run(run_dir, TinyConfig(outer_lr=1.0))
    assert load_config(TinyConfig, run_dir / "config.yaml").outer_lr == 0.05  # Untouched.
    empty = tmp_path / "empty"
    empty.mkdir()
    open_run(empty, TinyConfig(), log_backends=("csv",)).close()  # An empty directory is fine.
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        open_run(tmp_path / "file", TinyConfig())


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="log_backends must be"):
        open_run(tmp_path / "a", TinyConfig(), log_backends=("wandb",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_checkpoints must be >= 1"):
        open_run(tmp_path / "a", TinyConfig(), keep_checkpoints=0)


def test_checkpoints_rotate_and_iteration_is_checked(tmp_path):
    with open_run(tmp_path / "a", TinyConfig(), log_backends=(), keep_checkpoints=2) as run:
        assert run.load_latest_checkpoint() is None
        for iteration in range(1, 5):
            run.save_checkpoint(iteration, {"weights": torch.full((2,), float(iteration))})
        assert [p.name for p in sorted(run.checkpoint_dir.iterdir())] == [
            "checkpoint_00000003.pt",
            "checkpoint_00000004.pt",
        ]
        latest = run.load_latest_checkpoint()
        assert latest["iteration"] == 4
        torch.testing.assert_close(latest["weights"], torch.full((2,), 4.0))
        with pytest.raises(
            ValueError, match=r"state\['iteration'\] = 3 disagrees with iteration=5"
        ):
            run.save_checkpoint(5, {"iteration": 3})


def test_resume_purges_metrics_after_latest_checkpoint(tmp_path):
    run_dir = tmp_path / "a"
    with open_run(run_dir, TinyConfig()) as run:
        for step in range(5):
            run.logger.log(step, {"train/loss": float(step)})
            if step == 2:
                run.save_checkpoint(step + 1, {})
    # Crash after step 4: the checkpoint covers steps 0..2, so steps 3 and 4 are logged again.
    with open_run(run_dir, TinyConfig(), resume=True) as run:
        assert run.resumed_from == checkpoint_path(run_dir, 3)
        run.logger.log(3, {"train/loss": 30.0})
    assert [row[0] for row in read_rows(run.csv_path)] == ["0", "1", "2", "3"]
    assert read_rows(run.csv_path)[-1] == ["3", "train/loss", "30.0"]
    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]


def test_resume_without_checkpoint_restarts_metrics_and_warns_on_config_change(tmp_path, caplog):
    run_dir = tmp_path / "a"
    with open_run(run_dir, TinyConfig(), log_backends=("csv",)) as run:
        run.logger.log(0, {"train/loss": 1.0})
    with caplog.at_level(logging.WARNING, logger="metarl.runs"):
        with open_run(run_dir, TinyConfig(outer_lr=0.1), resume=True, log_backends=("csv",)) as run:
            assert run.resumed_from is None
    assert read_rows(run.csv_path) == []
    assert "outer_lr: 0.05 -> 0.1" in caplog.text
    assert load_config(TinyConfig, run.config_path).outer_lr == 0.1


def test_check_finite_passes_finite_values_and_fails_on_one_bad_element():
    finite = {"loss": 1.0, "kl": torch.tensor(0.1), "count": np.float32(2.0)}
    assert check_finite(3, **finite, grads=torch.ones(4)) is None
    grads = torch.ones(4)
    grads[2] = float("nan")  # one bad element among finite ones is enough
    with pytest.raises(NonFiniteLossError, match="grads"):
        check_finite(3, **finite, grads=grads)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (torch.tensor(float("inf")), "inf"),
        (np.float64("nan"), "nan"),
    ],
)
def test_check_finite_names_quantity_value_and_step(value, shown):
    with pytest.raises(
        NonFiniteLossError, match=rf"non-finite outer_loss = {shown} at step 12"
    ) as info:
        check_finite(12, ok=torch.tensor(1.0), outer_loss=value)
    assert info.value.step == 12 and info.value.name == "outer_loss"


def test_check_finite_multi_element_values():
    with pytest.raises(NonFiniteLossError, match=r"non-finite grads at step 0;") as info:
        check_finite(0, grads=torch.tensor([1.0, float("nan")]))
    assert info.value.value is None
    with pytest.raises(NonFiniteLossError, match=r"non-finite returns at step 1;"):
        check_finite(1, returns=np.array([1.0, np.inf]))
    with pytest.raises(NonFiniteLossError, match=r"non-finite train/loss = nan at step 2;"):
        check_finite(2, **{"train/loss": np.array([np.nan])})


def test_progress_enabled(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled()
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()
    monkeypatch.setenv("CI", "0")
    assert progress_enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not progress_enabled()


def test_progress_bar_passes_items_through_and_shows_postfix(capsys):
    bar = progress_bar(range(3), desc="meta", enabled=False)
    assert list(bar) == [0, 1, 2]
    bar.set_postfix({"train/loss": 0.5})
    assert capsys.readouterr().err == ""
    shown = progress_bar(range(2), desc="meta", enabled=True)
    for _ in shown:
        shown.set_postfix({"train/loss": 0.125})
    shown.close()
    err = capsys.readouterr().err
    assert "meta" in err and "train/loss=0.125" in err and "2/2" in err


# --- Resume equals no interruption ----------------------------------------------------------------


def train(run_dir, num_iterations, *, stop_after=None, resume=False):
    """A miniature driver loop: draws data from every RNG kind, logs, checkpoints every step."""
    cfg = TinyConfig(run=RunConfig(run_dir=str(run_dir), resume=resume, checkpoint_every=1))
    # Entry-point seeding, once (what scripts/ do).
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)
    np_rng = np.random.default_rng(cfg.run.seed)
    weights = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=cfg.outer_lr)
    with open_run(cfg.run.run_dir, cfg, resume=cfg.run.resume, log_backends=("csv",)) as run:
        state = run.load_latest_checkpoint()
        start = 0
        if state is not None:
            with torch.no_grad():
                weights.copy_(state["weights"])
            optimizer.load_state_dict(state["optimizer"])
            np_rng = restore_rng_state(state["rng"]).numpy
            start = state["iteration"]
        for iteration in progress_bar(range(start, num_iterations), enabled=False):
            x = torch.randn(8, 3) + torch.from_numpy(np_rng.normal(size=(8, 3))).float()
            target = x.sum(dim=1) * (1.0 + random.random() + np.random.rand())
            loss = ((x @ weights - target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            check_finite(iteration, loss=loss)
            run.logger.log(iteration, {"train/loss": loss})
            run.save_checkpoint(
                iteration + 1,
                {
                    "weights": weights.detach().clone(),
                    "optimizer": optimizer.state_dict(),
                    "rng": capture_rng_state(np_rng),
                },
            )
            if stop_after is not None and iteration + 1 == stop_after:
                break
        return weights.detach().clone(), read_rows(run.csv_path)


def test_resume_equals_no_interruption(tmp_path):
    straight_weights, straight_rows = train(tmp_path / "straight", 6)
    train(tmp_path / "interrupted", 6, stop_after=3)
    resumed_weights, resumed_rows = train(tmp_path / "interrupted", 6, resume=True)
    torch.testing.assert_close(resumed_weights, straight_weights, rtol=0, atol=0)
    assert resumed_rows == straight_rows
    assert len(straight_rows) == 6

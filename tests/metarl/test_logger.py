import csv
import doctest
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import metarl.logger
from metarl.logger import CSVLogger, Logger, MultiLogger, TensorBoardLogger, to_scalars


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def read_scalars(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


class RecordingLogger(Logger):
    def __init__(self):
        self.calls = []
        self.closed = False

    def write(self, step, scalars):
        self.calls.append((step, dict(scalars)))

    def close(self):
        self.closed = True


def test_to_scalars_converts_every_kind_once():
    values = to_scalars(
        {
            "train/loss": torch.tensor(0.25, requires_grad=True) * 2,
            "adapt/acc": np.float32(0.5),
            "eval/return": np.array([[3.0]]),
            "time/steps": 100,
            "train/kl": torch.tensor([1e-3], dtype=torch.float64),
            "train/flag": True,
        }
    )
    assert values == {
        "train/loss": 0.5,
        "adapt/acc": 0.5,
        "eval/return": 3.0,
        "time/steps": 100.0,
        "train/kl": 1e-3,
        "train/flag": 1.0,
    }
    assert list(values) == [
        "train/loss",
        "adapt/acc",
        "eval/return",
        "time/steps",
        "train/kl",
        "train/flag",
    ]
    assert all(type(v) is float for v in values.values())


@pytest.mark.parametrize("key", ["loss", "Train/loss", "train/", "test/x", "trainloss", 3])
def test_keys_without_namespace_rejected(key):
    with pytest.raises(
        ValueError, match="must be a string starting with one of train/, adapt/, eval/, time/"
    ):
        to_scalars({key: 1.0})


def test_bad_values_rejected():
    with pytest.raises(
        ValueError, match=r"'train/loss' must be a single-element tensor, got shape \(2,\)"
    ):
        to_scalars({"train/loss": torch.ones(2)})
    with pytest.raises(ValueError, match=r"'train/loss' must be a single-element array"):
        to_scalars({"train/loss": np.ones(3)})
    with pytest.raises(TypeError, match="'train/loss' must be a real number"):
        to_scalars({"train/loss": "0.1"})
    with pytest.raises(TypeError, match="'train/loss' must be a real number"):
        to_scalars({"train/loss": None})


def test_bad_steps_rejected(tmp_path):
    with CSVLogger(tmp_path / "m.csv") as logger:
        with pytest.raises(ValueError, match="step must be >= 0"):
            logger.log(-1, {"train/x": 1.0})
        with pytest.raises(TypeError, match="step must be an int"):
            logger.log(1.5, {"train/x": 1.0})
        with pytest.raises(TypeError, match="step must be an int"):
            logger.log(True, {"train/x": 1.0})
        logger.log(np.int64(2), {"train/x": 1.0})
    assert read_rows(tmp_path / "m.csv")[1] == ["2", "train/x", "1.0"]


def test_csv_long_format_handles_new_keys_and_resume(tmp_path):
    path = tmp_path / "sub" / "metrics.csv"
    with CSVLogger(path) as logger:
        returned = logger.log(0, {"train/loss": torch.tensor(0.5)})
        logger.log(1, {"train/loss": 0.25, "eval/return": -3.5})  # A new key appears later.
        logger.log(2, {"train/loss": float("nan")})
    assert returned == {"train/loss": 0.5}
    rows = read_rows(path)
    assert rows[:4] == [
        ["step", "key", "value"],
        ["0", "train/loss", "0.5"],
        ["1", "train/loss", "0.25"],
        ["1", "eval/return", "-3.5"],
    ]
    assert rows[4][:2] == ["2", "train/loss"] and math.isnan(float(rows[4][2]))
    # Reopening appends without a second header; purge_from drops steps >= 2.
    with CSVLogger(path, purge_from=2) as logger:
        logger.log(2, {"train/loss": 0.125})
    rows = read_rows(path)
    assert rows.count(["step", "key", "value"]) == 1
    assert rows[-2:] == [["1", "eval/return", "-3.5"], ["2", "train/loss", "0.125"]]
    assert len(rows) == 5


def test_csv_rejects_foreign_file_and_writes_after_close(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        CSVLogger(path)
    logger = CSVLogger(tmp_path / "m.csv")
    logger.close()
    logger.close()  # Idempotent.
    with pytest.raises(RuntimeError, match="closed"):
        logger.log(0, {"train/x": 1.0})


def test_tensorboard_writes_events(tmp_path):
    with TensorBoardLogger(tmp_path / "tb") as logger:
        logger.log(0, {"train/loss": torch.tensor(1.5), "time/fps": 10})
        logger.log(1, {"train/loss": 0.5, "eval/return": 2.0})
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] == [(0, 1.5), (1, 0.5)]
    assert scalars["time/fps"] == [(0, 10.0)]
    assert scalars["eval/return"] == [(1, 2.0)]


def test_tensorboard_purge_on_resume(tmp_path):
    with TensorBoardLogger(tmp_path / "tb") as logger:
        for step in range(4):
            logger.log(step, {"train/loss": float(step)})
    with TensorBoardLogger(tmp_path / "tb", purge_from=2) as logger:
        logger.log(2, {"train/loss": 20.0})
    assert read_scalars(tmp_path / "tb")["train/loss"] == [(0, 0.0), (1, 1.0), (2, 20.0)]


def test_multi_logger_fans_out_converted_values(tmp_path):
    first, second = RecordingLogger(), RecordingLogger()
    with MultiLogger([first, second, CSVLogger(tmp_path / "m.csv")]) as logger:
        logger.log(3, {"adapt/loss": torch.tensor(2.0)})
    assert first.calls == second.calls == [(3, {"adapt/loss": 2.0})]
    assert type(first.calls[0][1]["adapt/loss"]) is float
    assert first.closed and second.closed
    assert read_rows(tmp_path / "m.csv")[1] == ["3", "adapt/loss", "2.0"]


def test_multi_logger_closes_all_even_if_one_fails():
    class Failing(RecordingLogger):
        def close(self):
            raise OSError("disk gone")

    good = RecordingLogger()
    with pytest.raises(OSError, match="disk gone"):
        MultiLogger([Failing(), good]).close()
    assert good.closed


def test_multi_logger_validates_before_writing():
    inner = RecordingLogger()
    with pytest.raises(ValueError, match="namespace|starting with"):
        MultiLogger([inner]).log(0, {"train/ok": 1.0, "bad": 2.0})
    assert inner.calls == []


def test_docstring_examples_run():
    result = doctest.testmod(metarl.logger)
    assert result.attempted > 0 and result.failed == 0, result


def test_a_resumed_tensorboard_file_sorts_after_the_files_it_purges(tmp_path):
    """TensorBoard reads event files in name order; names start with the creation second, then
    compare pid and counter as text, so a file made in the same second can sort first and its
    purge marker would come before the events it is meant to hide."""
    import time

    from metarl.logger import TensorBoardLogger

    now = int(time.time())
    old = tmp_path / f"events.out.tfevents.{now + 1}.host.99.9"  # even a second ahead
    old.write_bytes(b"")
    TensorBoardLogger(tmp_path, purge_from=3).close()
    new = [p.name for p in tmp_path.iterdir() if p != old]
    assert len(new) == 1 and sorted([old.name, new[0]])[-1] == new[0]


def test_read_metrics_returns_each_keys_values_by_step_and_names_a_missing_key(tmp_path):
    from metarl.logger import CSVLogger, read_metrics

    path = tmp_path / "metrics.csv"
    with CSVLogger(path) as log:
        log.log(0, {"train/a": 1.0, "train/b": 2.0})
        log.log(1, {"train/a": 3.0})
    with CSVLogger(path, purge_from=1) as log:  # a resumed run rewrites step 1
        log.log(1, {"train/a": 5.0})
    assert read_metrics(path, ["train/a", "train/b"]) == {
        "train/a": {0: 1.0, 1: 5.0},
        "train/b": {0: 2.0},
    }
    with pytest.raises(KeyError, match="has no train/c; logged keys: train/a, train/b"):
        read_metrics(path, ["train/c"])
    with pytest.raises(FileNotFoundError, match="no metrics CSV"):
        read_metrics(tmp_path / "none.csv", ["train/a"])

import csv
import doctest
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import metarl.evaluation
from metarl.evaluation import summarize, windowed_returns, write_eval_results
from metarl.logger import TensorBoardLogger

# Hand-computed: step 0 values 1, 3, 5 -> mean 3, sample std 2; step 1 values 2, 4, 9 -> mean 5,
# sample variance (9 + 1 + 16) / 2 = 13.
THREE_TASKS = [[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]
EXPECTED_MEAN = [3.0, 5.0]
EXPECTED_CI95 = [1.96 * 2.0 / math.sqrt(3), 1.96 * math.sqrt(13.0) / math.sqrt(3)]


def test_summarize_known_answer():
    mean, ci95 = summarize(np.array(THREE_TASKS))
    np.testing.assert_allclose(mean, EXPECTED_MEAN, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ci95, EXPECTED_CI95, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ci95, [2.263213, 4.080065], atol=1e-6)


def test_summarize_accepts_tensors_and_lists():
    from_tensor = summarize(torch.tensor(THREE_TASKS, dtype=torch.float32))
    np.testing.assert_allclose(from_tensor.mean, EXPECTED_MEAN, atol=1e-6)
    np.testing.assert_allclose(summarize(THREE_TASKS).ci95, EXPECTED_CI95, atol=1e-12)


def test_summarize_single_task_has_undefined_interval():
    mean, ci95 = summarize([[1.0, 2.0]])
    assert mean.tolist() == [1.0, 2.0]
    assert np.isnan(ci95).all()


@pytest.mark.parametrize("values", [[1.0, 2.0], [[[1.0]]], np.zeros((0, 3)), np.zeros((2, 0))])
def test_summarize_rejects_bad_shapes(values):
    with pytest.raises(ValueError, match=r"values must have shape \[tasks, steps\]"):
        summarize(values)


def test_windowed_returns_sum_each_window_of_each_episode_over_tasks():
    # 2 tasks, 2 episodes, 5 steps; 2 windows of ceil(5 / 2) = 3 steps, the second holds 2.
    rewards = np.array(
        [
            [[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 1.0, 1.0, 1.0]],
            [[3.0, 2.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 0.0, 0.0]],
        ]
    )
    out = windowed_returns(rewards, windows=2)
    assert out["steps_per_window"] == 3 and out["window_starts"] == [0, 3]
    # episode 1: task sums (6, 9) and (6, 1); episode 2: (1, 2) and (6, 0)
    np.testing.assert_allclose(out["mean"], [[6.0, 5.0], [3.5, 1.0]], atol=1e-12)
    spread = [[0.0, 8.0], [5.0, 2.0]]  # |a - b| of the two tasks: sample std = |a - b| / sqrt 2
    expected = [[1.96 * d / math.sqrt(2) / math.sqrt(2) for d in row] for row in spread]
    np.testing.assert_allclose(out["ci95"], expected, atol=1e-12)
    # the windows add up to the episode's return
    np.testing.assert_allclose(np.sum(out["mean"], axis=1), rewards.sum(-1).mean(0), atol=1e-12)
    one = windowed_returns(rewards[:1], windows=10)  # more windows than steps: one step each
    assert one["steps_per_window"] == 1 and len(one["mean"][0]) == 5
    assert one["ci95"][0] == [None] * 5  # a single task has no interval


@pytest.mark.parametrize(
    ("rewards", "windows", "match"),
    [
        (np.zeros((2, 3)), 2, r"rewards must be \[tasks, episodes, steps\]"),
        (np.zeros((2, 1, 3)), 0, "windows must be >= 1"),
    ],
)
def test_windowed_returns_rejects_bad_input(rewards, windows, match):
    with pytest.raises(ValueError, match=match):
        windowed_returns(rewards, windows)


def write_example(tmp_path, **kwargs):
    rng = np.random.default_rng(0)
    curves = {
        "maml": np.array(THREE_TASKS),
        "pretrained": rng.normal(size=(4, 2)),
        "oracle": torch.ones(3, 2),
    }
    return write_eval_results(
        tmp_path / "eval" / "results.json",
        algorithm="maml_rl",
        task_family="metarl/HalfCheetahVel-v0",
        metric="return",
        steps=[0, 1],
        curves=curves,
        seed=3,
        **kwargs,
    )


def test_json_layout(tmp_path):
    files = write_example(tmp_path, extra={"inner_lr": 0.1})
    result = json.loads(files.json.read_text())
    assert list(result) == [
        "algorithm",
        "task_family",
        "metric",
        "steps",
        "mean",
        "ci95",
        "num_tasks",
        "seed",
        "baselines",
        "extra",
    ]
    assert result["algorithm"] == "maml_rl"
    assert result["task_family"] == "metarl/HalfCheetahVel-v0"
    assert result["metric"] == "return"
    assert result["steps"] == [0, 1]
    np.testing.assert_allclose(result["mean"], EXPECTED_MEAN, atol=1e-12)
    np.testing.assert_allclose(result["ci95"], EXPECTED_CI95, atol=1e-12)
    assert result["num_tasks"] == 3
    assert result["seed"] == 3
    assert list(result["baselines"]) == ["pretrained", "oracle"]
    assert result["baselines"]["oracle"] == {"mean": [1.0, 1.0], "ci95": [0.0, 0.0], "num_tasks": 3}
    assert result["baselines"]["pretrained"]["num_tasks"] == 4
    assert result["extra"] == {"inner_lr": 0.1}


def test_single_curve_has_no_baselines_and_nan_becomes_null(tmp_path):
    files = write_eval_results(
        tmp_path / "r.json",
        algorithm="rl2",
        task_family="bandits",
        metric="return",
        steps=[1, 2, 3],
        curves={"rl2": np.array([[1.0, 2.0, 3.0]])},
        seed=0,
        x_label="episode in trial",
    )
    result = json.loads(files.json.read_text())
    assert set(result) == {
        "algorithm",
        "task_family",
        "metric",
        "steps",
        "mean",
        "ci95",
        "num_tasks",
        "seed",
    }
    assert result["ci95"] == [None, None, None]


def test_main_curve_can_be_chosen(tmp_path):
    result = json.loads(write_example(tmp_path, main="oracle").json.read_text())
    assert result["mean"] == [1.0, 1.0]
    assert list(result["baselines"]) == ["maml", "pretrained"]


def test_csv_rows(tmp_path):
    files = write_example(tmp_path)
    with open(files.csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2  # One row per step per curve.
    assert list(rows[0]) == ["curve", "step", "mean", "ci95", "num_tasks"]
    maml = [row for row in rows if row["curve"] == "maml"]
    assert [int(row["step"]) for row in maml] == [0, 1]
    np.testing.assert_allclose([float(row["mean"]) for row in maml], EXPECTED_MEAN)
    np.testing.assert_allclose([float(row["ci95"]) for row in maml], EXPECTED_CI95)


def test_png_is_a_valid_image(tmp_path):
    files = write_example(tmp_path)
    assert files.png == tmp_path / "eval" / "results.png"
    with Image.open(files.png) as image:
        image.verify()
    with Image.open(files.png) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100


def test_tensorboard_scalars_via_logger(tmp_path):
    with TensorBoardLogger(tmp_path / "tb") as logger:
        write_example(tmp_path, logger=logger)
        write_example(tmp_path, logger=logger, log_step=50)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    curve = [(e.step, e.value) for e in events.Scalars("eval/maml/return")]
    assert curve == [(0, 3.0), (1, 5.0)]
    assert [e.step for e in events.Scalars("eval/oracle/return_ci95")] == [0, 1]
    at_step = events.Scalars("eval/maml/return_step1")
    assert [(e.step, e.value) for e in at_step] == [(50, 5.0)]


def test_bad_inputs(tmp_path):
    kwargs = dict(algorithm="a", task_family="t", metric="m", seed=0)
    with pytest.raises(ValueError, match=r"curves\['x'\] has 2 steps but steps has 3"):
        write_eval_results(
            tmp_path / "r.json", steps=[0, 1, 2], curves={"x": np.ones((2, 2))}, **kwargs
        )
    with pytest.raises(ValueError, match=r"out_path must end in \.json"):
        write_eval_results(tmp_path / "r.csv", steps=[0], curves={"x": np.ones((2, 1))}, **kwargs)
    with pytest.raises(ValueError, match=r"main='y' is not one of the curves"):
        write_eval_results(
            tmp_path / "r.json", steps=[0], curves={"x": np.ones((2, 1))}, main="y", **kwargs
        )
    with pytest.raises(TypeError, match="steps must be a sequence of ints"):
        write_eval_results(
            tmp_path / "r.json", steps=[0.5], curves={"x": np.ones((2, 1))}, **kwargs
        )
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_eval_results(
            tmp_path / "r.json",
            steps=[0],
            curves={"x": np.ones((2, 1))},
            extra={"o": object()},
            **kwargs,
        )
    assert not (tmp_path / "r.json").exists()


def test_docstring_examples_run():
    result = doctest.testmod(metarl.evaluation)
    assert result.attempted > 0 and result.failed == 0, result

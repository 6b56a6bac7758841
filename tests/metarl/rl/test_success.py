"""Success rates of evaluation episodes: the recorder, the task grid and the files."""

import json

import numpy as np
import pytest

from metarl.rl.success import SuccessRecorder, success_table, write_success_results


class _FakeVec:
    """Two sub-envs; sub-env 0 succeeds at step 1 of every episode, sub-env 1 never."""

    num_envs = 2
    horizon = 3

    def __init__(self):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((2, 1)), {}

    def step(self, actions):
        self.t += 1
        success = np.array([1.0 if self.t == 1 else 0.0, 0.0])
        return (
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros(2, bool),
            np.zeros(2, bool),
            {"success": success},
        )


def test_an_episode_succeeds_if_success_is_one_at_any_step_and_partial_resets_continue_it():
    rec = SuccessRecorder(_FakeVec())
    assert rec.horizon == 3  # everything else passes through
    rec.reset(seed=0)
    for _ in range(3):
        rec.step(None)
    rec.reset(options={"reset_mask": np.array([True, False])})  # padding: same record
    rec.step(None)
    rec.reset(options={"reset_mask": np.array([True, True])})  # next episode of a trial
    rec.step(None)
    assert [r.tolist() for r in rec.records] == [[True, False], [True, False]]
    rec.clear()
    assert rec.records == []


def test_success_table_averages_episodes_per_task_and_drops_the_padding():
    # 3 tasks, 2 per chunk (the last chunk padded), 2 episodes per task, 2 columns
    records = [
        np.array([1, 0, 1, 1], bool),  # chunk 0, column 0: task 0 -> 0.5, task 1 -> 1
        np.array([0, 0, 0, 1], bool),  # chunk 0, column 1: task 0 -> 0, task 1 -> 0.5
        np.array([1, 1, 1, 1], bool),  # chunk 1, column 0: task 2 -> 1 (padding dropped)
        np.array([0, 1, 0, 0], bool),  # chunk 1, column 1: task 2 -> 0.5
    ]
    table = success_table(records, num_tasks=3, tasks_per_chunk=2, columns=2, episodes_per_task=2)
    np.testing.assert_array_equal(table, [[0.5, 0.0], [1.0, 0.5], [1.0, 0.5]])
    with pytest.raises(ValueError, match="expected 4 success records of 4 sub-envs"):
        success_table(records[:3], 3, 2, 2, 2)


class _Task:
    def __init__(self, name):
        self.task_class = name


def test_success_files_hold_every_curve_and_the_main_curve_per_class(tmp_path):
    curves = {"maml": np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), "random": np.zeros((3, 2))}
    tasks = [_Task("reach-v3"), _Task("push-v3"), _Task("push-v3")]
    out = tmp_path / "eval.json"
    summary = write_success_results(
        out, algorithm="maml_rl", task_family="mw", steps=[0, 1], curves=curves, tasks=tasks,
        seed=1, main="maml",
    )  # fmt: skip
    assert summary["overall"]["maml"]["mean"] == pytest.approx([1 / 3, 2 / 3])
    assert summary["per_class"]["reach-v3"] == {"mean": [0.0, 1.0], "ci95": [None, None],
                                                "num_tasks": 1}  # fmt: skip
    assert summary["per_class"]["push-v3"]["mean"] == [0.5, 0.5]
    data = json.loads((tmp_path / "eval_success.json").read_text())
    assert data["metric"] == "success rate" and data["mean"] == pytest.approx([1 / 3, 2 / 3])
    assert set(data["baselines"]) == {"random", "maml reach-v3", "maml push-v3"}
    assert (tmp_path / "eval_success.csv").is_file() and (tmp_path / "eval_success.png").is_file()

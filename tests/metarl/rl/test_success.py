"""Success rates of evaluation episodes: the recorder, the task grid and the files."""

import json

import numpy as np
import pytest

from metarl.rl.success import SuccessRecorder, success_table, write_success_results
from tests.helpers.gloo import free_port, rank_env


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


def _records(num_tasks, tasks_per_chunk, columns, episodes):
    """One process's records of a chunked evaluation: seeded random success flags."""
    chunks = -(-num_tasks // tasks_per_chunk)
    rng = np.random.default_rng(num_tasks)
    return [rng.random(tasks_per_chunk * episodes) < 0.5 for _ in range(chunks * columns)]


_CASES = [(5, 2, 3, 2), (2, 2, 2, 1), (7, 3, 1, 1)]  # (tasks, per chunk, columns, episodes)


def _gather_worker(rank, port, out):  # pragma: no cover - runs in a child
    import torch

    from metarl import distributed
    from metarl.rl.success import gathered_success_table

    rank_env(rank, port)
    distributed.init(torch.device("cpu"), timeout_s=30)
    for i, (n, size, columns, episodes) in enumerate(_CASES):
        records = _records(n, size, columns, episodes)
        mine = distributed.shard(-(-n // size))  # this rank records only its own chunks
        local = records[mine.start * columns : mine.stop * columns]
        table = gathered_success_table(local, n, size, columns, episodes)
        out[f"{rank}/{i}"] = None if table is None else table.tolist()
    # an env without info["success"]: nothing recorded anywhere, nothing gathered
    out[f"{rank}/none"] = gathered_success_table([], 5, 2, 3, 2)
    try:  # rank 1 ran a chunk but recorded nothing
        local = _records(4, 2, 1, 1)[:1] if rank == 0 else []
        gathered_success_table(local, 4, 2, 1, 1)
        out[f"{rank}/error"] = ""
    except ValueError as e:
        out[f"{rank}/error"] = str(e)
    distributed.finish_rank()


def test_success_rates_split_over_two_ranks_equal_one_process_on_rank_zero():
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_gather_worker, args=(free_port(), out), nprocs=2, join=True)
        out = dict(out)
    for i, (n, size, columns, episodes) in enumerate(_CASES):
        one = success_table(_records(n, size, columns, episodes), n, size, columns, episodes)
        assert out[f"0/{i}"] == one.tolist()
        assert out[f"1/{i}"] is None  # only rank 0 writes the files
    assert out["0/none"] is None and out["1/none"] is None
    assert out["0/error"] == "ranks [1] ran evaluation chunks but recorded no success flags"
    assert out["1/error"] == ""


def test_only_rank_0_trains_and_evaluates_the_oracle(monkeypatch, tmp_path):
    """Other ranks write nothing, so they skip the oracle (training one can take minutes)."""
    import torch

    import metarl.rl.evaluation as rl_eval
    from envs.vector import make_vec
    from metarl import distributed

    calls = []
    monkeypatch.setattr(rl_eval, "oracle_curve", lambda *a, **k: calls.append(a))
    spec = rl_eval.OracleSpec("metarl/Navigation2D-v0", {}, 10, 100, 2, 0)
    vec = make_vec("metarl/Navigation2D-v0", 2)
    kwargs = dict(algorithm="maml_trpo", task_family="metarl/Navigation2D-v0", vec=vec)
    kwargs |= dict(policy=None, tasks=[], episodes_per_task=1, starts={}, steps=1, seed=0)
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=1, size=2))
    out = tmp_path / "eval.json"
    cpu = torch.device("cpu")
    assert rl_eval.evaluate_adaptation(out, device=cpu, oracle=spec, **kwargs) == out
    assert calls == [] and not out.exists()
    vec.close()

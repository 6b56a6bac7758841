"""scripts/bandit_ceiling.py: exact values beside RL²'s committed n = 10 bandit checkpoints."""

import json

import pytest

from metarl.rl.classic_bandit import bayes_optimal_table, greedy_value
from tests.helpers.scripts import load_script


def _script():
    return load_script("bandit_ceiling")


def test_it_writes_exact_values_and_every_column_on_the_same_bandits(tmp_path):
    script = _script()
    assert script.main(["--out", str(tmp_path), "--num-tasks", "30"]) == 0
    data = json.loads((tmp_path / "ceiling.json").read_text())
    assert set(data["runs"]) == set(script.RUNS)
    for run, row in data["runs"].items():
        k, n = row["arms"], row["pulls"]
        assert run.startswith(f"rl2-bandit_k{k}_n{n}") and row["num_tasks"] == 30
        if n == 100:  # beyond the dynamic programme
            assert row["exact"] is None and "bayes_optimal" not in row["trial_return"]
            continue
        assert row["exact"] == {
            "bayes_optimal": bayes_optimal_table(k, 10).value,
            "greedy": greedy_value(k, 10),
        }
        assert set(row["trial_return"]) == set(script.COLUMNS)
        evaluated = json.loads((tmp_path / run / "eval.json").read_text())
        assert evaluated["extra"]["trial_return"]["rl2"] == row["trial_return"]["rl2"]
    table = (tmp_path / "ceiling.md").read_text().splitlines()
    assert sum(line.startswith("| `rl2-bandit_k") for line in table) == len(script.RUNS)


def test_a_bad_task_count_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--out", str(tmp_path / "out"), "--num-tasks", "0"])
    assert "--num-tasks must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_without_a_committed_checkpoint_is_named_before_it_is_evaluated(tmp_path):
    run = tmp_path / "results" / "rl2-bandit_k5_n10-empty"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("env:\n  id: metarl/Bandit-K5-v0\n")
    with pytest.raises(FileNotFoundError, match="rl2-bandit_k5_n10-empty has no committed"):
        _script().row(run.name, run.parent, 10, tmp_path / "out")
    assert not (tmp_path / "out").exists()

"""The RL² trials README block: totals per column, an extra run's columns and its record."""

import json

from tests.helpers.scripts import load_script


def _run(root, name, rl2, ci, greedy):
    directory = root / name
    directory.mkdir()
    result = {
        "algorithm": "rl2_ppo",
        "task_family": "metarl/TabularMDP-v0",
        "metric": "return",
        "steps": [0, 1],
        "mean": [50.0, 66.5],
        "ci95": [1.0, 1.25],
        "num_tasks": 1000,
        "extra": {
            "episodes_per_trial": 2,
            "trial_return": {
                "rl2": {"mean": rl2, "ci95": ci},
                "greedy": {"mean": greedy, "ci95": 1.5},
            },
        },
    }
    (directory / "eval.json").write_text(json.dumps(result))


def test_extra_run_columns_fill_their_row_and_its_note_gives_the_recorded_commit(tmp_path):
    tables = load_script("readme_tables")
    _run(tmp_path, "a", 116.9, 1.8, 149.4)
    _run(tmp_path, "b", 296.8, 4.0, 423.0)
    (tmp_path / "x").mkdir()
    record = {
        "runs": {"a": {"imitation": {"mean": 116.64, "ci95": 1.6}}},
        "commit": "266d419617e3591f",
        "machine": "CPU, 2 CPUs",
        "threads": 1,
        "torch": "2.13.0+cpu",
        "wall_clock_seconds": 659,
    }
    (tmp_path / "x" / "imitation.json").write_text(json.dumps(record))
    run = {"seed": 0, "budget": "tiny", "committed_in": "abc1234"}
    manifest = {
        "runs": {
            "a": {"command": "metarl train a", **run},
            "b": {"command": "metarl train b", **run},
            "x": {"command": "python scripts/x.py --out RUN", "script": True, **run},
        }
    }
    spec = {
        "kind": "trials",
        "runs": ["a", "b"],
        "columns": ["rl2", "imitation", "greedy"],
        "extra_runs": ["x"],
        "paper_columns": "RL²",
        "paper": {"a": "156.2", "b": "445.7"},
    }
    block = tables.result_block("mdps", tmp_path, manifest, spec)
    imitation = "RL²'s GRU imitating myopic (supervised)"
    assert f"| task | budget | RL² (ours) | {imitation} | greedy |" in block
    assert "| n = 2 episodes | tiny | **116.9 ± 1.8** | 116.6 | 149.4 | 156.2 |" in block
    assert "| n = 2 episodes | tiny | **296.8 ± 4.0** |  | 423.0 | 445.7 |" in block
    note = " ".join(block.split("- `x`:")[1].split())
    assert note.startswith("`python scripts/x.py --out results/x` at commit `266d419617`")
    assert "(CPU, 2 CPUs, 1 thread, torch 2.13.0+cpu; 10 min 59 s wall clock): tiny" in note
    assert "imitation.json" in note
    assert "RL²'s return in episode 1 of the trial 50.0 ± 1.0, in episode 2 66.5 ± 1.2" in block


def test_a_rows_note_gives_its_paired_gap_to_greedy_and_gittins(tmp_path):
    tables = load_script("readme_tables")
    _run(tmp_path, "a", 6.61, 0.14, 6.68)
    path = tmp_path / "a" / "eval.json"
    result = json.loads(path.read_text())
    minus = {"greedy": {"mean": -0.07, "ci95": 0.03}, "gittins": {"mean": 0.08, "ci95": 0.04}}
    result["extra"]["trial_return_paired"] = {"curve": "rl2", "minus": minus}
    path.write_text(json.dumps(result))
    manifest = {
        "runs": {"a": {"command": "metarl train a", "seed": 0, "budget": "b", "committed_in": "c1"}}
    }
    spec = {"kind": "trials", "runs": ["a"], "columns": ["rl2", "greedy"], "paper_columns": "RL²"}
    spec["paper"] = {"a": "6.7"}
    note = " ".join(tables.result_block("bandits", tmp_path, manifest, spec).split())
    assert "Its trial return minus greedy's -0.07 ± 0.03; minus Gittins's +0.08 ± 0.04" in note

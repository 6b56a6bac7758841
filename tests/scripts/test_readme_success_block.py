"""The Meta-World README block (success rates from eval.json, training curve from metrics.csv)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _run(root, name, algorithm, steps, success, keys, values):
    directory = root / name
    directory.mkdir()
    overall = {"mean": success, "ci95": [0.1] * len(steps), "num_tasks": 50}
    result = {
        "algorithm": algorithm,
        "metric": "return",
        "steps": steps,
        "mean": [100.0 * (k + 1) for k in steps],
        "ci95": [5.0] * len(steps),
        "num_tasks": 50,
        "extra": {"success": {"steps": steps, "overall": {"main": overall}}},
    }
    (directory / "eval.json").write_text(json.dumps(result))
    lines = ["step,key,value"]
    for step, row in enumerate(values):
        lines += [f"{step},{key},{v}" for key, v in zip(keys, row, strict=True)]
        lines.append(f"{step},time/seconds_per_iteration,3.0")
    (directory / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_success_block_prints_rates_returns_and_span_means_computed_by_hand(tmp_path):
    tables = load_script("readme_tables")
    pre, post = "train/pre_success", "train/post_success"
    # 4 iterations in 2 spans: pre 0.1, 0.3 | 0.5, 0.7 -> 20 %, 60 %; post 0.2, 0.4 | 0.6, 1.0
    _run(tmp_path, "maml", "maml_trpo", [0, 1, 2], [0.2, 0.5, 0.55], [pre, post],
         [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.7, 1.0)])  # fmt: skip
    first, last = "train/first_episode_success", "train/last_episode_success"
    _run(tmp_path, "rl2", "rl2_ppo", [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], [first, last],
         [(0.0, 0.5), (0.2, 0.5)])  # fmt: skip
    manifest = {
        "runs": {n: {"command": f"metarl train {n}", "seed": 0, "budget": "tiny",
                     "committed_in": "abc1234"} for n in ("maml", "rl2")},
    }  # fmt: skip
    spec = {
        "kind": "success",
        "runs": ["maml", "rl2"],
        "published": {"maml": "≈ 50 %", "rl2": "≈ 43 %"},
        "train_keys": {"maml": [pre, post], "rl2": [first, last]},
        "windows": 2,
    }
    block = tables.result_block("mw", tmp_path, manifest, spec)
    assert (
        "| `maml` | 0 steps 20.0 ± 10.0 %, 1 steps 50.0 ± 10.0 %, 2 steps 55.0 ± 10.0 % | "
        "0 steps 100 ± 5, 1 steps 200 ± 5, 2 steps 300 ± 5 | ≈ 50 % |" in block
    )
    assert (
        "| `rl2` | episode 1 10.0 ± 10.0 %, episode 2 20.0 ± 10.0 %, episode 4 40.0 ± 10.0 %"
        in block
    )
    assert (
        "| `maml` (pre_success → post_success) | its 1-2: 20 % → 30 % | its 3-4: 60 % → 80 % |"
        in block
    )
    spans = "its 1-1: 0 % → 50 % | its 2-2: 20 % → 50 % |"
    assert f"| `rl2` (first_episode_success → last_episode_success) | {spans}" in block
    assert "50 held-out goals" in block


def test_plot_metrics_writes_the_png_and_csv_and_names_a_missing_key(tmp_path):
    _run(tmp_path, "run", "maml_trpo", [0], [0.5], ["train/pre_success"], [(0.1,), (0.3,), (0.5,)])
    out = tmp_path / "plot" / "curve.png"
    script = str(ROOT / "scripts" / "plot_metrics.py")
    args = [sys.executable, script, str(tmp_path / "run"), "--out", str(out), "--smooth", "3"]
    proc = subprocess.run([*args, "--keys", "train/pre_success"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000
    rows = (tmp_path / "plot" / "curve.csv").read_text().splitlines()
    assert rows == ["key,iteration,value", "train/pre_success,1,0.1",
                    "train/pre_success,2,0.3", "train/pre_success,3,0.5"]  # fmt: skip
    proc = subprocess.run([*args, "--keys", "train/nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert (
        "has no train/nope; logged keys: time/seconds_per_iteration, train/pre_success"
        in proc.stderr
    )


@pytest.mark.parametrize("smooth", ["0", "-1"])
def test_plot_metrics_rejects_a_bad_smoothing_width(tmp_path, smooth):
    _run(tmp_path, "run", "maml_trpo", [0], [0.5], ["train/pre_success"], [(0.1,)])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_metrics.py"), str(tmp_path / "run"),
         "--keys", "train/pre_success", "--out", str(tmp_path / "x.png"), "--smooth", smooth],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "--smooth must be >= 1" in proc.stderr
    assert not (tmp_path / "x.png").exists()

"""scripts/gpu_runs.py on the CPU: a run stopped at the time box keeps its last checkpoint, and a
later call resumes it from the saved folder to the end (metrics rows continue, eval written)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers.scripts import load_script


def _module():
    return load_script("gpu_runs")


SINUSOID = "metarl train configs/maml/sinusoid.yaml --set run.num_eval_tasks=4 --set eval.steps=1"
SINUSOID += " --set task.meta_batch_size=2 --set run.checkpoint_every=5 --set run.log_every=5"


def _steps(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return sorted({int(row["step"]) for row in csv.DictReader(f)})


def test_stopped_run_keeps_its_checkpoint_and_resumes(tmp_path):
    gpu_runs = _module()
    first = tmp_path / "first"
    argv = ["--device", "cpu", "--no-bundle", "--progress", str(tmp_path / "none")]
    long_run = f"long={SINUSOID} --set optim.iterations=1000000"
    assert gpu_runs.main([*argv, "--out", str(first), "--seconds", "15", long_run]) == 0
    record = json.loads((first / "long" / "gpu_run.json").read_text())
    assert not record["finished"] and record["rc"] != 0
    kept = sorted((first / "long" / "checkpoints").glob("*.pt"))
    assert [p.name for p in kept] == [record["last_checkpoint"]]  # older ones pruned
    done = int(kept[0].stem.split("_")[1])
    assert done >= 5

    again = tmp_path / "again"  # a run folder (an earlier --out) resumes too
    assert gpu_runs.seed_from_progress(first / "long", again)
    assert sorted(p.name for p in again.rglob("*.*")) == sorted(
        ["config.yaml", "metrics.csv", kept[0].name]
    )
    assert not gpu_runs.seed_from_progress(tmp_path / "none", tmp_path / "nothing")

    saved = tmp_path / "saved" / "long"
    saved.mkdir(parents=True)
    for path in (first / "long" / "config.yaml", first / "long" / "metrics.csv", kept[0]):
        shutil.copy2(path, saved / path.name)
    second = tmp_path / "second"
    argv.append(str(tmp_path / "saved"))  # the first folder has no "long": the second is used
    resumed = f"long={SINUSOID} --set optim.iterations={done + 5}"
    assert gpu_runs.main([*argv, "--out", str(second), "--seconds", "120", resumed]) == 0
    record = json.loads((second / "long" / "gpu_run.json").read_text())
    assert record["finished"] and record["rc"] == 0 and "--resume" in record["command"]
    assert record["last_checkpoint"] == f"checkpoint_{done + 5:08d}.pt"
    assert (second / "long" / "eval" / "eval.json").is_file()
    steps = _steps(second / "long" / "metrics.csv")
    assert steps[0] < 5 and steps[-1] >= done  # the saved rows, then the resumed ones
    assert "resum" in (second / "long.train.log").read_text().lower()


def test_bad_run_specs_are_refused(tmp_path):
    gpu_runs = _module()
    rows = {"row": {"command": "metarl train configs/maml/sinusoid.yaml"}}
    with pytest.raises(SystemExit, match="not a row"):
        gpu_runs.parse_run("nope", rows)
    with pytest.raises(SystemExit, match="must start with 'metarl train'"):
        gpu_runs.parse_run("x=python train.py", rows)
    assert gpu_runs.parse_run("row", rows)[1][:2] == ["train", "configs/maml/sinusoid.yaml"]
    listed = tmp_path / "runs.txt"
    listed.write_text(f"# two runs\n\na={SINUSOID}\n  a={SINUSOID}\n")
    with pytest.raises(SystemExit, match="given twice"):  # the file's lines are runs too
        gpu_runs.main(["--out", str(tmp_path), "--seconds", "1", "--runs-file", str(listed)])
    with pytest.raises(SystemExit):
        gpu_runs.main(["--out", str(tmp_path), "--seconds", "1"])  # no runs at all
    with pytest.raises(SystemExit, match="given twice"):
        gpu_runs.main(
            [
                "--out",
                str(tmp_path),
                "--seconds",
                "1",
                "--no-bundle",
                "a=" + SINUSOID,
                "a=" + SINUSOID,
            ]
        )


def test_a_row_is_evaluated_and_a_slow_eval_is_recorded_not_fatal(tmp_path, monkeypatch):
    gpu_runs = _module()
    manifest = tmp_path / "reproduce.yaml"
    row = {"command": f"{SINUSOID} --set optim.iterations=2", "eval_command": "metarl eval RUN"}
    manifest.write_text(json.dumps({"runs": {"row": row, "slow": row}}))  # JSON is YAML
    monkeypatch.setattr(gpu_runs, "MANIFEST", manifest)
    run_step = gpu_runs.run_step

    def eval_or_time_out(cmd, timeout, env, log_path):  # the eval of "slow" outlives its 1 s
        if any(str(word).endswith("slow") for word in cmd):
            cmd, timeout = [sys.executable, "-c", "import time; time.sleep(60)"], 1.0
        return run_step(cmd, timeout, env, log_path)

    monkeypatch.setattr(gpu_runs, "run_step", eval_or_time_out)
    argv = ["--device", "cpu", "--no-bundle", "--progress", str(tmp_path / "none")]
    out = tmp_path / "out"
    assert gpu_runs.main([*argv, "--out", str(out), "--seconds", "120", "row", "slow"]) == 0
    record = json.loads((out / "row" / "gpu_run.json").read_text())
    assert record["finished"] and record["eval_rc"] == 0
    assert record["eval_command"].startswith(f"metarl eval {out / 'row'}")
    record = json.loads((out / "slow" / "gpu_run.json").read_text())
    assert record["finished"] and record["eval_rc"] == "timeout"

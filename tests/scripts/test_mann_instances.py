"""scripts/mann_instances.py: a MANN checkpoint on Santoro et al.'s whole-episode evaluation."""

import json

from metarl.cli import main as cli
from tests.helpers.data import require_omniglot_root
from tests.helpers.scripts import load_script

TINY = [
    "optim.iterations=1",
    "task.meta_batch_size=2",
    "model.filters=4",
    "mann.controller_size=8",
    "mann.memory_slots=4",
    "mann.memory_width=4",
    "mann.read_heads=1",
    "run.num_eval_tasks=2",
    "run.progress=false",
    "run.log_backends=[csv]",
]


def _tiny_run(tmp_path, config="configs/mann/omniglot_5w1s.yaml", extra=()):
    require_omniglot_root()
    run = tmp_path / "run"
    args = ["train", config, "--run-dir", str(run)]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    assert cli(args) == 0
    return run


def test_it_writes_accuracy_by_drawing_beside_the_paper(tmp_path):
    script = load_script("mann_instances")
    run = _tiny_run(tmp_path)
    out = tmp_path / "out"
    args = ["--run", str(run), "--out", str(out), "--num-tasks", "3", "--drawings", "4"]
    assert script.main(args) == 0
    data = json.loads((out / "instances.json").read_text())
    assert data["num_tasks"] == 3 and data["drawings"] == 4
    assert len(data["accuracy_percent"]) == len(data["ci95_percent"]) == 4
    # 3 tasks x 5 classes: each drawing's accuracy is a multiple of 1/15
    for value in data["accuracy_percent"]:
        assert 0 <= value <= 100 and abs(value * 15 / 100 - round(value * 15 / 100)) < 1e-6
    table = (out / "instances.md").read_text().splitlines()
    assert table[0] == "| drawing of the class | 1st | 2nd | 3rd | 4th |"
    assert "82.8 %" in table[3]
    # the same tasks and orders again: the same numbers
    assert script.main([*args[:3], str(tmp_path / "again"), *args[4:]]) == 0
    again = json.loads((tmp_path / "again" / "instances.json").read_text())
    assert again["accuracy_percent"] == data["accuracy_percent"]


def test_bad_runs_and_arguments_are_one_clear_line(tmp_path, capsys):
    script = load_script("mann_instances")
    out = tmp_path / "out"
    assert script.main(["--run", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "has no config.yaml" in capsys.readouterr().err
    run = _tiny_run(tmp_path)
    assert script.main(["--run", str(run), "--out", str(out), "--drawings", "1"]) == 2
    assert "--drawings >= 2, got 1000 and 1" in capsys.readouterr().err
    for ckpt in (run / "checkpoints").glob("*.pt"):
        ckpt.unlink()
    assert script.main(["--run", str(run), "--out", str(out)]) == 2
    assert "has no checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_a_run_of_another_learner_is_refused(tmp_path, capsys):
    snail = [s for s in TINY if not s.startswith("mann.")]
    snail += ["snail.attention_keys=[4,4]", "snail.attention_values=[4,4]", "snail.tc_filters=4"]
    require_omniglot_root()
    run = tmp_path / "run"
    args = ["train", "configs/snail/omniglot_5w1s.yaml", "--run-dir", str(run)]
    assert cli([*args, *[a for s in snail for a in ("--set", s)]]) == 0
    out = tmp_path / "out"
    assert load_script("mann_instances").main(["--run", str(run), "--out", str(out)]) == 2
    assert "is a snail run; this evaluation is MANN's" in capsys.readouterr().err
    assert not out.exists()

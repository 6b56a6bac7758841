"""Every shipped config trains one tiny iteration and evaluates, through the public command line.

Each YAML under ``configs/`` is one test case, collected from the files (a new config is tested
without touching this file). The overrides shrink every budget (one iteration, two tasks, short
horizons, small networks, no baselines) and keep the rest of the config as shipped: its
algorithm, environment, network kind, optimiser and inner loop. Then ``metarl eval`` reloads the
run's checkpoint. Omniglot configs need the real archives (skipped outside CI without them);
miniImageNet configs run on a tiny synthetic image folder and split CSVs in the real layout.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from pathlib import Path

import pytest

from metarl.algorithms import ALGORITHMS
from metarl.cli import main as cli_main
from metarl.config import load_yaml
from tests.helpers.data import require_omniglot_root
from tests.helpers.miniimagenet_fixture import write_synthetic_miniimagenet

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("**/*.yaml"))
METRIC_LEARNERS = {n for n, a in ALGORITHMS.items() if a.learner is not None and not a.adapts}

_RUN = ["run.log_every=1", "run.checkpoint_every=1", "run.progress=false", "run.log_backends=[csv]"]
TINY = {
    "metarl.algorithms.supervised": [
        "optim.iterations=1",
        "task.meta_batch_size=1",
        "task.query_shots=1",
        "task.test_query_shots=1",
        "task.train_ways=null",
        "task.num_characters=20",
        "model.filters=4",
        "model.hidden=[8]",
        "run.num_eval_tasks=2",
        *_RUN,
    ],
    "metarl.algorithms.maml_rl_eval": [
        "optim.iterations=1",
        "env.meta_batch_size=2",
        "env.episodes_per_task=2",
        "env.horizon=5",
        "env.backend=sync",
        "policy.hidden=[8]",
        "eval.steps=1",
        "eval.episodes_per_task=2",
        "eval.baselines=false",
        "run.num_eval_tasks=2",
        *_RUN,
    ],
    "metarl.algorithms.rl2": [
        "optim.iterations=1",
        "env.num_trials=2",
        "env.episodes_per_trial=2",
        "env.horizon=5",
        "env.backend=sync",
        "policy.hidden_size=8",
        "algo.bptt_len=null",
        "algo.num_minibatches=1",
        "eval.num_trials=2",
        "eval.episodes_per_trial=2",
        "eval.baselines=false",
        "run.num_eval_tasks=2",
        *_RUN,
    ],
}

SECTION_TINY = {
    "inner": ["inner.steps=1"],
    "eval": ["eval.steps=1"],  # the supervised learners with an inner loop
    "ppo": ["ppo.epochs=1"],
    "trpo": ["trpo.cg_iters=2", "trpo.ls_steps=2"],
    "rl2_trpo": ["trpo.value_epochs=1"],
    "mann": ["mann.controller_size=8", "mann.memory_slots=4", "mann.memory_width=4"],
    "snail": ["snail.attention_keys=[4,4]", "snail.attention_values=[4,4]", "snail.tc_filters=4"],
}
"""Overrides of the sections only some algorithms have (setting them elsewhere is an error)."""


def _tiny(path: Path) -> list[str]:
    name = _algo_name(path)
    kind = ALGORITHMS[name].kind
    users = importlib.import_module(kind).CONFIG_CLASS.__dict__.get("SECTION_USERS", {})
    sets = list(TINY[kind])
    for section, names in users.items():
        if name in names:
            sets += SECTION_TINY.get(section, [])
    return sets + SECTION_TINY.get(name, [])


def _algo_name(path: Path) -> str:
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return (data.get("algo") or {}).get("name", "maml")


def _family(path: Path) -> str | None:
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return (data.get("task") or {}).get("family")


@pytest.fixture(scope="module")
def synthetic_miniimagenet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides pointing a miniImageNet config at a tiny synthetic folder and its split CSVs.

    The real images are never available to the tests (ImageNet's terms), so the configs run on
    JPEGs in the same layout, with CSVs naming them (6 classes of 20 images per split).
    """
    images, splits = write_synthetic_miniimagenet(
        tmp_path_factory.mktemp("miniimagenet"), images_per_class=20, size=(84, 84)
    )
    return [f"task.data_root={images}", f"task.split_dir={splits}"]


def _curve_steps(path: Path) -> list[int]:
    """The x axis the tiny run's curve must have: adaptation steps or episodes of a trial."""
    algo = ALGORITHMS[_algo_name(path)]
    if _algo_name(path) in METRIC_LEARNERS or (algo.learner is not None and not algo.adapts):
        return [0]  # no inner loop
    return [0, 1]  # one inner step / eval step; two episodes per RL² trial


def _check_curve(path: Path, result: dict, num_tasks: int) -> None:
    name = _algo_name(path)
    assert result["algorithm"] == name
    assert result["num_tasks"] == num_tasks
    steps = _curve_steps(path)
    assert result["steps"] == steps, result["steps"]
    assert len(result["mean"]) == len(result["ci95"]) == len(steps)
    assert all(math.isfinite(v) for v in result["mean"] + result["ci95"]), result
    assert all(v >= 0 for v in result["ci95"])
    if ALGORITHMS[name].kind == "metarl.algorithms.supervised" and result["metric"] == "accuracy":
        assert all(0 <= v <= 1 for v in result["mean"])


def test_configs_are_collected_and_each_names_a_known_algorithm():
    assert len(CONFIGS) >= 70
    kinds = {ALGORITHMS[_algo_name(p)].kind for p in CONFIGS}  # KeyError names the bad config
    assert kinds == set(TINY)


def test_every_omniglot_learner_has_miniimagenet_5way_1_and_5_shot_configs():
    learners = sorted({p.parent.name for p in CONFIGS if p.name == "omniglot_5w1s.yaml"})
    assert len(learners) >= 18
    missing = [
        f"{learner}/miniimagenet_5w{k}s.yaml"
        for learner in learners
        for k in (1, 5)
        if not (ROOT / "configs" / learner / f"miniimagenet_5w{k}s.yaml").is_file()
    ]
    assert not missing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_trains_one_tiny_iteration_then_evaluates(path, tmp_path, capsys, request):
    tiny = _tiny(path)
    if _family(path) == "omniglot":
        require_omniglot_root()
    else:  # num_characters is an Omniglot setting
        tiny = [s for s in tiny if not s.startswith("task.num_characters=")]
    if _family(path) == "miniimagenet":
        tiny += request.getfixturevalue("synthetic_miniimagenet")
    run_dir = tmp_path / "run"
    sets = [arg for s in tiny for arg in ("--set", s)]
    args = ["train", str(path), "--run-dir", str(run_dir), "--device", "cpu", "--seed", "0"]
    assert cli_main([*args, *sets]) == 0, capsys.readouterr().err
    saved = load_yaml((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert saved["algo"]["name"] == _algo_name(path)  # the resolved config is kept
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    train_rows = [r for r in rows if r["key"].startswith("train/")]
    assert train_rows, rows
    assert len({r["step"] for r in train_rows}) == 1  # one iteration, logged once
    bad = [r for r in rows if not math.isfinite(float(r["value"]))]
    assert not bad, bad
    assert sorted((run_dir / "checkpoints").glob("*.pt")), "no checkpoint to evaluate"
    _check_curve(path, json.loads((run_dir / "eval" / "eval.json").read_text()), num_tasks=2)
    # the run directory is enough to evaluate again, on a different number of tasks
    out = tmp_path / "again.json"
    steps = str(len(_curve_steps(path)) - (0 if _algo_name(path).startswith("rl2") else 1))
    eval_args = ["eval", str(run_dir), "--num-tasks", "3", "--steps", steps, "--out", str(out)]
    assert cli_main(eval_args) == 0, capsys.readouterr().err
    _check_curve(path, json.loads(out.read_text()), num_tasks=3)
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".png").is_file()

"""The one driver loop: whole-run equality of resumed and uninterrupted runs for every family.

Each family (supervised, MAML-RL, RL²) is trained from a shipped config through the command line,
once straight through and once interrupted (a crash inside an iteration, after a checkpoint) and
resumed, possibly several times. The metrics CSV must match row for row (same steps, same keys,
same values; ``time/`` values are wall-clock and only their presence is compared), and so must the
final checkpoint's tensors and the evaluation.
"""

import csv
import json
from pathlib import Path

import pytest
import torch

from metarl import driver
from metarl.algorithms.maml_rl import MAMLRLExperiment
from metarl.algorithms.rl2 import RL2Experiment
from metarl.algorithms.supervised import SupervisedExperiment
from metarl.checkpoint import latest_checkpoint, load_checkpoint
from metarl.cli import main as cli_main
from metarl.config import RunConfig
from metarl.runs import NonFiniteLossError, open_run

ROOT = Path(__file__).resolve().parents[2]

FAMILIES = {
    "supervised": (
        SupervisedExperiment,
        "configs/maml/sinusoid.yaml",
        [
            "task.meta_batch_size=3",
            "eval.steps=2",
            "run.num_eval_tasks=4",
        ],
    ),
    "maml_rl": (
        MAMLRLExperiment,
        "configs/maml_trpo/navigation2d.yaml",
        [
            "env.horizon=6",
            "env.meta_batch_size=2",
            "env.episodes_per_task=2",
            "policy.hidden=[8]",
            "eval.steps=1",
            "eval.episodes_per_task=2",
            "eval.baselines=false",
            "run.num_eval_tasks=2",
        ],
    ),
    "rl2": (
        RL2Experiment,
        "configs/rl2/bandit_k5_n10.yaml",
        [
            "env.episodes_per_trial=4",
            "env.num_trials=4",
            "policy.hidden_size=8",
            "ppo.epochs=1",
            "algo.num_minibatches=2",
            "eval.num_trials=2",
            "eval.baselines=false",
            "run.num_eval_tasks=2",
        ],
    ),
}


class _Kill(BaseException):
    """Stands for kill -9 inside an iteration (not an Exception: nothing may catch it)."""


def _train(family, run_dir, iterations, *, resume=False, extra=()):
    _, config, overrides = FAMILIES[family]
    args = ["train", config, "--run-dir", str(run_dir), "--device", "cpu", "--seed", "5"]
    sets = [*overrides, f"optim.iterations={iterations}", "run.progress=false", *extra]
    for item in sets:
        args += ["--set", item]
    assert cli_main([*args, "--resume"] if resume else args) == 0


def _crash_at(monkeypatch, family, iteration):
    """Makes the family's update raise at ``iteration`` (once), as a kill would."""
    cls = FAMILIES[family][0]
    update = cls.update

    def crashing(self, it):
        if it == iteration:
            monkeypatch.setattr(cls, "update", update)
            raise _Kill
        return update(self, it)

    monkeypatch.setattr(cls, "update", crashing)


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(s), k, None if k.startswith("time/") else float(v)) for s, k, v in rows]


def _final_state(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))


def _assert_same_run(straight, other):
    assert _rows(other) == _rows(straight)
    a, b = _final_state(straight), _final_state(other)
    assert a["iteration"] == b["iteration"]
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=0)
    if "optimizer" in a:
        torch.testing.assert_close(a["optimizer"], b["optimizer"], rtol=0, atol=0)
    eval_a = json.loads((straight / "eval" / "eval.json").read_text())
    eval_b = json.loads((other / "eval" / "eval.json").read_text())
    assert eval_a == eval_b


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_interrupted_and_resumed_runs_equal_the_uninterrupted_one(tmp_path, monkeypatch, family):
    cadence = ["run.log_every=1", "run.checkpoint_every=2"]
    straight = tmp_path / "straight"
    _train(family, straight, 5, extra=cadence)
    steps = sorted({step for step, _, _ in _rows(straight)})
    assert steps == [0, 1, 2, 3, 4, 5]  # iterations 0..4, then the evaluation at step 5

    resumed = tmp_path / "resumed"
    _crash_at(monkeypatch, family, 3)  # checkpoint 2 on disk, rows of iterations 0-2 logged
    with pytest.raises(_Kill):
        _train(family, resumed, 5, extra=cadence)
    assert {step for step, _, _ in _rows(resumed)} == {0, 1, 2}
    _crash_at(monkeypatch, family, 4)  # again, after the resumed run wrote checkpoint 4
    with pytest.raises(_Kill):
        _train(family, resumed, 5, resume=True, extra=cadence)
    _train(family, resumed, 5, resume=True, extra=cadence)
    _assert_same_run(straight, resumed)


def test_a_finished_run_extended_by_resume_equals_a_longer_run(tmp_path):
    """The issue-15 reproduction: 20 iterations, then ``--resume`` to 40; no row may go missing."""
    cadence = ["run.log_every=1", "run.checkpoint_every=10"]
    straight = tmp_path / "straight"
    _train("supervised", straight, 40, extra=cadence)
    extended = tmp_path / "extended"
    _train("supervised", extended, 20, extra=cadence)
    assert any(step == 20 for step, _, _ in _rows(extended))  # the first run's evaluation
    _train("supervised", extended, 40, resume=True, extra=cadence)
    rows = _rows(extended)
    assert [k for s, k, _ in rows if s == 20 and k == "train/loss"] == ["train/loss"]
    _assert_same_run(straight, extended)


def test_resuming_a_finished_run_replaces_its_evaluation_rows(tmp_path):
    run_dir = tmp_path / "run"
    _train("supervised", run_dir, 3)
    before = _rows(run_dir)
    _train("supervised", run_dir, 3, resume=True)
    assert _rows(run_dir) == before  # the evaluation at step 3 once, not twice


def test_resuming_below_the_latest_checkpoint_is_refused_before_anything_is_written(
    tmp_path, capsys
):
    """A run at checkpoint 4 resumed with optim.iterations=2 would save checkpoint 4's state as
    "checkpoint 2" and evaluate it at step 2: refused, naming the key and the checkpoint."""
    cadence = ["run.log_every=1", "run.checkpoint_every=2"]
    run_dir = tmp_path / "run"
    _train("supervised", run_dir, 4, extra=cadence)
    before = {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    with pytest.raises(AssertionError):  # cli_main returns 2 (bad input), not 0
        _train("supervised", run_dir, 2, resume=True, extra=cadence)
    err = capsys.readouterr().err
    assert "optim.iterations: 2 is below" in err and "iteration 4" in err
    after = {p.name: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    assert after == before
    _train("supervised", run_dir, 4, resume=True, extra=cadence)  # at the checkpoint: fine


def _init_from(run_dir):
    return ["--init-from", str(latest_checkpoint(run_dir))]


def _train_cli(family, run_dir, iterations, extra=(), flags=()):
    _, config, overrides = FAMILIES[family]
    args = ["train", config, "--run-dir", str(run_dir), "--device", "cpu", "--seed", "5"]
    for item in [*overrides, f"optim.iterations={iterations}", "run.progress=false", *extra]:
        args += ["--set", item]
    return cli_main([*args, *flags])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_run_started_from_a_checkpoint_under_the_same_settings_continues_it_exactly(
    tmp_path, family
):
    """--init-from carries the whole state: with unchanged settings the new run's rows from the
    checkpoint's iteration on, its final state and its evaluation are the uninterrupted run's."""
    cadence = ["run.log_every=1", "run.checkpoint_every=2"]
    straight = tmp_path / "straight"
    _train(family, straight, 5, extra=cadence)
    first = tmp_path / "first"
    _train(family, first, 2, extra=cadence)
    second = tmp_path / "second"
    assert _train_cli(family, second, 5, cadence, _init_from(first)) == 0
    assert _rows(second) == [row for row in _rows(straight) if row[0] >= 2]
    a, b = _final_state(straight), _final_state(second)
    assert a["iteration"] == b["iteration"] == 5
    torch.testing.assert_close(a["params"], b["params"], rtol=0, atol=0)
    if "optimizer" in a:
        torch.testing.assert_close(a["optimizer"], b["optimizer"], rtol=0, atol=0)
    assert json.loads((second / "eval" / "eval.json").read_text()) == json.loads(
        (straight / "eval" / "eval.json").read_text()
    )


@pytest.mark.parametrize(
    ("family", "extra", "factor"),
    [
        ("rl2", ["env.num_trials=6"], 1.0),
        ("supervised", ["optim.schedule=step", "optim.step_size=3", "optim.gamma=0.5"], 0.5),
        ("maml_rl", ["algo.name=maml_ppo", "trpo=null", "env.meta_batch_size=3"], 1.0),
    ],
)
def test_a_run_started_from_a_checkpoint_takes_this_config_s_learning_rate_and_batch(
    tmp_path, family, extra, factor
):
    """A second stage (another learning rate and batch) keeps the optimiser's moments and step
    count but runs at the new rate, a schedule's factor included, and resumes exactly."""
    cadence = ["run.log_every=1", "run.checkpoint_every=2", *extra]
    first = tmp_path / "first"
    _train(family, first, 2, extra=cadence)
    lr = 3e-4
    second = tmp_path / "second"
    assert _train_cli(family, second, 4, [*cadence, f"optim.lr={lr}"], _init_from(first)) == 0
    fresh = tmp_path / "fresh"  # the new settings from scratch: the same rate at iteration 4
    _train(family, fresh, 4, extra=[*cadence, f"optim.lr={lr}"])
    start, end, ref = (_final_state(d) for d in (first, second, fresh))
    groups, ref_groups = end["optimizer"]["param_groups"], ref["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [g["lr"] for g in ref_groups]
    assert groups[0]["lr"] == pytest.approx(lr * factor, rel=1e-12)  # the schedule's factor at 4
    assert start["optimizer"]["param_groups"][0]["lr"] > lr
    steps = [float(s["step"]) for s in end["optimizer"]["state"].values()]
    assert steps == [float(s["step"]) for s in ref["optimizer"]["state"].values()]  # 4 its' worth
    assert _rows(second)[0][0] == 2  # its rows start at the checkpoint's iteration
    # interrupted after its own first checkpoint, it resumes from that, not from init_from
    again = tmp_path / "again"
    assert _train_cli(family, again, 3, [*cadence, f"optim.lr={lr}"], _init_from(first)) == 0
    flags = [*_init_from(first), "--resume"]
    assert _train_cli(family, again, 4, [*cadence, f"optim.lr={lr}"], flags) == 0
    torch.testing.assert_close(_final_state(again)["params"], end["params"], rtol=0, atol=0)
    assert [r for r in _rows(again) if r[0] != 3] == [r for r in _rows(second) if r[0] != 3]


def test_a_bad_init_from_is_one_line_before_anything_is_written(tmp_path, capsys):
    first = tmp_path / "first"
    _train("rl2", first, 2, extra=["run.checkpoint_every=2"])
    ckpt = str(latest_checkpoint(first))
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(Path(ckpt).read_bytes()[:5000])  # a truncated copy
    cases = [
        (["--init-from", str(tmp_path / "nope.pt")], 4, "run.init_from: no checkpoint file at"),
        (["--init-from", str(damaged)], 4, f"checkpoint {damaged} is damaged"),
        (["--init-from", ckpt], 2, "optim.iterations: 2 does not exceed the iteration of run."),
    ]
    for flags, iterations, message in cases:
        assert _train_cli("rl2", tmp_path / "new", iterations, (), flags) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "new").exists()
    # another model: found once the model is built, named, and the new directory removed again
    code = _train_cli("rl2", tmp_path / "other", 4, ["policy.hidden_size=6"], ["--init-from", ckpt])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit this config's model" in err[0], err
    assert "gru.weight_hh_l0" in err[0]
    assert not (tmp_path / "other").exists()


def test_a_second_stage_can_switch_on_reward_scaling_with_statistics_of_its_own(tmp_path, capsys):
    """RL²'s reward scale is a running statistic; a stage that switches it on starts it afresh
    (a resume that switches it on is still refused, by the config check)."""
    first = tmp_path / "first"
    _train("rl2", first, 2)
    assert "reward_scale" not in _final_state(first)
    second = tmp_path / "second"
    scaled = ["algo.normalize_rewards=true"]
    assert _train_cli("rl2", second, 4, scaled, _init_from(first)) == 0
    fresh = tmp_path / "fresh"  # two iterations from scratch see as many returns
    _train("rl2", fresh, 2, extra=scaled)
    stats, ref = _final_state(second)["reward_scale"], _final_state(fresh)["reward_scale"]
    assert float(stats["count"]) == float(ref["count"]) > 0
    assert _train_cli("rl2", first, 4, scaled, ["--resume"]) == 2
    assert "algo.normalize_rewards: False -> True" in capsys.readouterr().err


def test_a_start_that_cannot_find_the_optimiser_refuses_instead_of_keeping_the_old_rate(
    tmp_path, capsys, monkeypatch
):
    """An experiment whose optimiser is not one of its attributes (kept in a dict, say) would
    start its second stage at the checkpoint's learning rate; the start says so instead."""
    first = tmp_path / "first"
    _train("rl2", first, 2)

    def hide(self, value):
        self.__dict__.setdefault("_box", {})["opt"] = value

    hidden = property(lambda s: s._box["opt"], hide)
    monkeypatch.setattr(RL2Experiment, "opt", hidden, raising=False)
    code = _train_cli("rl2", tmp_path / "second", 4, ["optim.lr=3e-4"], _init_from(first))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RL2Experiment keeps its optimiser out of sight" in err[0], err
    assert not (tmp_path / "second").exists()


class _Counter:
    """The smallest experiment: x counts iterations; a NaN appears at ``nan_at``."""

    device = torch.device("cpu")

    def __init__(self, nan_at=None):
        self.x, self.nan_at = torch.zeros(()), nan_at

    def update(self, iteration):
        self.x = self.x + 1
        loss = torch.tensor(float("nan")) if iteration == self.nan_at else self.x
        return {"train/loss": loss, "time/extra": 0.5}

    def state_dict(self):
        return {"params": {"x": self.x.clone()}}

    def load_state_dict(self, state):
        self.x = state["params"]["x"].clone()


def test_log_and_checkpoint_cadence_follow_the_run_settings(tmp_path):
    settings = RunConfig(log_every=3, checkpoint_every=4, progress=False, log_backends=("csv",))
    with open_run(tmp_path / "run", RunConfig(), log_backends=("csv",)) as run:
        assert driver.train(_Counter(), 10, run=run, settings=settings) == 10
    rows = _rows(tmp_path / "run")
    assert sorted({s for s, _, _ in rows}) == [2, 5, 8, 9]  # every 3rd iteration and the last
    assert [v for s, k, v in rows if k == "train/loss"] == [3.0, 6.0, 9.0, 10.0]
    assert {k for _, k, _ in rows} == {"train/loss", "time/extra", "time/seconds_per_iteration"}
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == [f"checkpoint_{i:08d}.pt" for i in (4, 8, 10)]
    assert float(_final_state(tmp_path / "run")["params"]["x"]) == 10.0


def test_a_non_finite_train_metric_stops_before_the_next_checkpoint(tmp_path):
    settings = RunConfig(log_every=1, checkpoint_every=2, progress=False)
    with open_run(tmp_path / "run", RunConfig(), log_backends=("csv",)) as run:
        with pytest.raises(NonFiniteLossError, match="train/loss"):
            driver.train(_Counter(nan_at=4), 10, run=run, settings=settings)
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_00000004.pt"
    assert max(s for s, _, _ in _rows(tmp_path / "run")) == 3


def test_without_a_run_nothing_is_written_and_the_loop_still_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = _Counter()
    assert driver.train(exp, 4) == 4 and float(exp.x) == 4.0
    assert list(tmp_path.iterdir()) == []


def test_the_main_loop_lives_once(tmp_path):
    """No family module carries its own resume or checkpoint code: all go through the driver."""
    for path in [
        "metarl/algorithms/supervised.py",
        "metarl/algorithms/maml_rl.py",
        "metarl/algorithms/rl2.py",
    ]:
        text = (ROOT / path).read_text()
        assert "save_checkpoint" not in text and "load_latest_checkpoint" not in text, path
        assert "driver.train(" in text, path


@pytest.mark.parametrize("family", ["maml_rl", "rl2"])
def test_the_env_section_s_worker_timeout_reaches_the_vector_env(family, monkeypatch):
    from metarl.algorithms import maml_rl, rl2
    from metarl.config import load_config
    from metarl.rl import env_config

    _, config, overrides = FAMILIES[family]
    module = maml_rl if family == "maml_rl" else rl2
    cfg = load_config(module.CONFIG_CLASS, ROOT / config, [*overrides, "env.worker_timeout=7.5"])
    seen = {}
    real = env_config.make_vec  # both families build their env through VecEnvConfig.make_vec

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(env_config, "make_vec", spy)
    vec = module.make_env(cfg, 2, 1) if family == "maml_rl" else module.make_env(cfg, 2)
    vec.close()
    assert seen["worker_timeout"] == 7.5


def test_iteration_seeds_depend_on_the_seed_and_iteration_only():
    import numpy as np

    seeds = driver.iteration_seeds(3, 7, 4)
    assert seeds == [int(s) for s in np.random.SeedSequence([3, 7]).generate_state(4)]
    assert driver.iteration_seeds(3, 7, 4) == seeds  # no hidden state
    assert driver.iteration_seeds(3, 8, 4) != seeds and driver.iteration_seeds(4, 7, 4) != seeds

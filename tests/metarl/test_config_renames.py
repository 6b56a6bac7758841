"""Old config keys: a user's gets an error naming the new key; an old run's config.yaml migrates."""

from __future__ import annotations

import pytest

from metarl.algorithms.maml_rl_config import MAMLRLConfig
from metarl.algorithms.rl2_config import RL2Config
from metarl.algorithms.supervised_config import SupervisedConfig
from metarl.config import ConfigError, load_config
from metarl.config_renames import migrate_config

OLD_MAML_PPO = {
    "algo": {"name": "maml_ppo", "inner_lr": 0.3, "max_kl": 0.02, "ppo_epochs": 2},
    "optim": {"outer_lr": 0.1, "iterations": 3},
    "run": {"eval_every": 0, "seed": 4},
}


def test_an_old_config_migrates_to_the_new_sections_and_drops_what_its_algorithm_ignores():
    data, notes = migrate_config(MAMLRLConfig, OLD_MAML_PPO)
    cfg = load_config(MAMLRLConfig, data)
    assert (cfg.inner.lr, cfg.ppo.epochs, cfg.optim.lr, cfg.optim.iterations) == (0.3, 2, 0.1, 3)
    assert cfg.trpo is None and cfg.run.seed == 4  # TRPO settings a PPO run never used
    assert "algo.inner_lr -> inner.lr" in notes and "run.eval_every removed" in notes
    assert OLD_MAML_PPO["algo"]["inner_lr"] == 0.3  # the input is not modified


def test_a_current_config_is_left_as_it_is():
    data = {"algo": {"name": "rl2_trpo"}, "trpo": {"max_kl": 0.02}, "optim": {"lr": 0.1}}
    assert migrate_config(RL2Config, data) == (data, [])


def test_every_old_key_of_a_users_config_is_named_with_its_new_key():
    with pytest.raises(ConfigError) as err:
        load_config(MAMLRLConfig, OLD_MAML_PPO)
    assert sorted(err.value.errors) == [
        "algo.inner_lr: renamed to inner.lr (set inner.lr instead)",
        "algo.max_kl: renamed to trpo.max_kl (set trpo.max_kl instead)",
        "algo.ppo_epochs: renamed to ppo.epochs (set ppo.epochs instead)",
        "optim.outer_lr: renamed to optim.lr (set optim.lr instead)",
        "run.eval_every: removed; training evaluates once, at the end; run 'metarl eval RUN_DIR' "
        "to evaluate any checkpoint",
    ]


@pytest.mark.parametrize("cls", [MAMLRLConfig, RL2Config, SupervisedConfig])
def test_no_old_key_is_also_a_current_key(cls):
    from metarl.config import config_help

    current = set(config_help(cls))
    assert not current & set(cls.RENAMED_KEYS)
    assert set(cls.RENAMED_KEYS.values()) <= current


def test_a_section_applies_only_to_the_learners_that_use_it():
    with pytest.raises(ConfigError, match="inner section does not apply to algo.name='protonet'"):
        load_config(SupervisedConfig, {"algo": {"name": "protonet"}, "inner": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="reptile section does not apply to algo.name='maml'"):
        load_config(SupervisedConfig, {"reptile": {"batch_size": 4}})
    cfg = load_config(SupervisedConfig, {"algo": {"name": "reptile"}})
    assert cfg.reptile.batch_size == 10 and cfg.inner.lr == 0.01 and cfg.mamlpp is None
    assert load_config(SupervisedConfig, {"algo": {"name": "matching"}}).inner is None


def test_an_old_supervised_key_names_its_new_section():
    with pytest.raises(ConfigError, match="algo.inner_batch_size: renamed to reptile.batch_size"):
        load_config(SupervisedConfig, {"algo": {"name": "reptile", "inner_batch_size": 4}})
    with pytest.raises(ConfigError, match="algo.eval_inner_steps: renamed to eval.steps"):
        load_config(SupervisedConfig, {}, ["algo.eval_inner_steps=3"])


def test_eval_reads_a_run_directory_an_older_version_wrote(tmp_path, capsys):
    import yaml

    from metarl.cli import main as cli_main
    from metarl.config import load_yaml

    run_dir = tmp_path / "run"
    sets = ["optim.iterations=1", "task.meta_batch_size=2", "eval.steps=1", "run.num_eval_tasks=2"]
    args = ["train", "configs/maml/sinusoid.yaml", "--run-dir", str(run_dir), "--device", "cpu"]
    assert (
        cli_main([*args, *[a for s in sets for a in ("--set", s)], "--set", "run.progress=false"])
        == 0
    )
    config = load_yaml((run_dir / "config.yaml").read_text())
    inner, evaluation = config.pop("inner"), config.pop("eval")  # the layout of earlier versions
    config["algo"].update(inner_lr=inner["lr"], inner_steps=inner["steps"], eval_inner_steps=1)
    config["algo"]["first_order"] = inner["first_order"]
    config["optim"]["outer_lr"] = config["optim"].pop("lr")
    config["run"]["eval_every"] = 0
    assert evaluation == {"steps": 1}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert (
        cli_main(["eval", str(run_dir), "--num-tasks", "2", "--out", str(tmp_path / "e.json")]) == 0
    )
    err = capsys.readouterr().err
    assert "written by an older version" in err and "algo.inner_lr -> inner.lr" in err


def _old_layout(state):
    """A checkpoint state as earlier versions wrote it: learned step sizes inside ``params``.

    They were ``inner_lr.<name>`` after the weights, in the optimiser's one parameter group, and
    the LR schedule had one entry per list.
    """
    old = {k: v for k, v in state.items() if k != "inner_lrs"}
    old["params"] = {
        **state["params"],
        **{f"inner_lr.{k}": v for k, v in state["inner_lrs"].items()},
    }
    groups = state["optimizer"]["param_groups"]
    ids = [i for group in groups for i in group["params"]]
    old["optimizer"] = {**state["optimizer"], "param_groups": [{**groups[0], "params": ids}]}
    per_group = ("base_lrs", "_last_lr", "lr_lambdas")
    old["scheduler"] = {k: v[:1] if k in per_group else v for k, v in state["scheduler"].items()}
    return old


def test_an_old_checkpoint_with_the_step_sizes_in_params_loads_evaluates_and_resumes(
    tmp_path, capsys
):
    import csv
    import json
    import shutil

    import torch

    from metarl.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
    from metarl.cli import main as cli_main

    sets = ["task.meta_batch_size=2", "eval.steps=2", "run.num_eval_tasks=3", "run.progress=false"]
    sets += ["run.checkpoint_every=1", "run.log_backends=[csv]", "run.log_every=1"]

    def train(run_dir, iterations, *extra):
        args = ["train", "configs/metasgd/sinusoid.yaml", "--run-dir", str(run_dir), *extra]
        overrides = [*sets, f"optim.iterations={iterations}"]
        assert (
            cli_main([*args, "--device", "cpu", *[a for s in overrides for a in ("--set", s)]]) == 0
        )

    new, old = tmp_path / "new", tmp_path / "old"
    train(new, 2)
    shutil.copytree(new, old)
    for path in list_checkpoints(old):
        state = torch.load(path, weights_only=True)
        assert set(state["inner_lrs"]) == set(state["params"])  # Meta-SGD: one per weight
        save_checkpoint(path, _old_layout(state))
    for new_path, old_path in zip(list_checkpoints(new), list_checkpoints(old), strict=True):
        assert any(
            k.startswith("inner_lr.") for k in torch.load(old_path, weights_only=True)["params"]
        )
        want, got = load_checkpoint(new_path), load_checkpoint(old_path)  # migrated on load
        assert list(got["params"]) == list(want["params"])
        assert list(got["inner_lrs"]) == list(want["inner_lrs"])
        torch.testing.assert_close(got["params"], want["params"], rtol=0, atol=0)
        torch.testing.assert_close(got["inner_lrs"], want["inner_lrs"], rtol=0, atol=0)
        assert got["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
        torch.testing.assert_close(got["optimizer"]["state"], want["optimizer"]["state"])
        assert got["scheduler"] == want["scheduler"]

    curves = []
    for run_dir in (new, old):  # metarl eval: the same curve from either layout
        out = tmp_path / f"{run_dir.name}.json"
        assert cli_main(["eval", str(run_dir), "--device", "cpu", "--out", str(out)]) == 0
        curves.append(json.loads(out.read_text())["mean"])
    assert curves[0] == curves[1]

    rows = []
    for run_dir in (new, old):  # resuming continues the same way (Adam's moments migrated)
        train(run_dir, 3, "--resume")
        with (run_dir / "metrics.csv").open(newline="") as f:
            rows.append([r for r in csv.reader(f) if r[1].startswith("train/")])
    assert len(rows[0]) == len(rows[1]) > 0 and rows[0] == rows[1]
    assert set(load_checkpoint(list_checkpoints(old)[-1])) >= {"params", "inner_lrs"}
    capsys.readouterr()


def test_a_current_checkpoint_state_loads_as_it_is():
    import torch

    from metarl.config_renames import migrate_checkpoint

    state = {"params": {"w": torch.ones(2)}, "inner_lrs": {}, "iteration": 3}
    assert migrate_checkpoint(state) == state
    assert migrate_checkpoint({"iteration": 1}) == {"iteration": 1}

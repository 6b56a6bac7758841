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

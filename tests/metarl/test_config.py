from __future__ import annotations

import dataclasses
import doctest
from dataclasses import dataclass, field
from typing import Literal

import pytest

import metarl.config
from metarl.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_help,
    config_to_dict,
    field_help,
    format_config_help,
    load_config,
    load_yaml,
    save_config,
    undocumented_fields,
)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    """Outer learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam coefficients of the running averages."""


@dataclass(frozen=True)
class AlgoConfig:
    inner_lr: float = 0.1
    """Inner (adaptation) step size."""
    inner_steps: int = 1
    """Number of inner gradient steps."""
    first_order: bool = False
    """Drop second-order terms of the meta-gradient."""
    mode: Literal["maml", "anil"] = "maml"
    """Which parameters adapt."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers."""
    clip: float | None = None
    """Gradient-norm clip, or None for no clipping."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Outer optimiser."""
    tag: str = field(default="x", metadata={"help": "Free-form tag."})

    @property
    def total_inner_lr(self) -> float:
        return self.inner_lr * self.inner_steps


@dataclass(frozen=True)
class ExperimentConfig:
    meta_batch_size: int
    """Tasks per outer update."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """Algorithm hyper-parameters."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run settings."""


@dataclass(frozen=True)
class Undocumented:
    documented: int = 1
    """Has help."""
    bare: int = 2


@dataclass(frozen=True)
class WithOptionalSection:
    optim: OptimConfig | None = None
    """Optional optimiser section."""


@dataclass
class NotFrozen:
    a: int = 1
    """A."""


YAML_TEXT = """
# A comment, as configs/ files carry them.
meta_batch_size: 20  # Finn et al. (2017), Sec. 5.3
algo:
  inner_lr: 1e-3
  inner_steps: 3
  first_order: true
  mode: anil
  hidden_sizes: [32, 32, 16]
  clip: 0.5
  optim:
    lr: 3.0e-4
    betas: [0.8, 0.99]
run:
  seed: 7
  device: cpu
  log_backends: [csv]
"""


def test_load_yaml_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(YAML_TEXT)
    cfg = load_config(ExperimentConfig, path)
    assert cfg.meta_batch_size == 20
    assert cfg.algo.inner_lr == 1e-3 and isinstance(cfg.algo.inner_lr, float)
    assert cfg.algo.hidden_sizes == (32, 32, 16)
    assert cfg.algo.optim == OptimConfig(lr=3e-4, betas=(0.8, 0.99))
    assert cfg.run == RunConfig(seed=7, device="cpu", log_backends=("csv",))
    assert cfg.algo.total_inner_lr == pytest.approx(3e-3)


def test_yaml_round_trip(tmp_path):
    cfg = load_config(ExperimentConfig, load_yaml(YAML_TEXT))
    path = save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert load_config(ExperimentConfig, path) == cfg
    assert load_config(ExperimentConfig, config_to_dict(cfg)) == cfg
    assert not list(path.parent.glob(".*"))  # No temporary file left behind.


def test_config_to_dict_is_plain_and_has_no_properties():
    cfg = ExperimentConfig(meta_batch_size=4)
    plain = config_to_dict(cfg)
    assert plain["algo"]["hidden_sizes"] == [64, 64]
    assert plain["run"]["log_backends"] == ["tensorboard", "csv"]
    assert "total_inner_lr" not in plain["algo"]
    with pytest.raises(TypeError, match="dataclass instance"):
        config_to_dict({"a": 1})


def test_defaults_and_int_accepted_for_float():
    cfg = load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"inner_lr": 1}})
    assert cfg.algo.inner_lr == 1.0 and type(cfg.algo.inner_lr) is float
    assert cfg.algo.optim == OptimConfig()
    assert cfg.run == RunConfig()


def test_frozen():
    cfg = load_config(ExperimentConfig, {"meta_batch_size": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.algo.inner_lr = 0.5  # type: ignore[misc]


def test_unknown_nested_key_names_dotted_key_and_suggests():
    with pytest.raises(
        ConfigError, match=r"algo\.optim\.lrr: unknown key \(did you mean 'algo\.optim\.lr'\?\)"
    ):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"optim": {"lrr": 0.1}}})


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ConfigError, match=r"algo\.inner_steps: expected int, got '3' \(type str\)"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"inner_steps": "3"}})
    with pytest.raises(ConfigError, match=r"algo\.inner_steps: expected int, got 1\.5"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"inner_steps": 1.5}})


def test_bool_and_int_are_not_interchangeable():
    with pytest.raises(ConfigError, match=r"algo\.first_order: expected bool, got 1 \(type int\)"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"first_order": 1}})
    with pytest.raises(ConfigError, match=r"run\.seed: expected int, got True \(type bool\)"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "run": {"seed": True}})
    with pytest.raises(ConfigError, match=r"algo\.inner_lr: expected float, got True"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"inner_lr": True}})


def test_bad_literal_names_choices():
    with pytest.raises(
        ConfigError, match=r"algo\.mode: expected one of 'maml', 'anil', got 'reptile'"
    ):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"mode": "reptile"}})
    with pytest.raises(ConfigError, match=r"run\.log_backends\[1\]: expected one of"):
        load_config(
            ExperimentConfig, {"meta_batch_size": 2, "run": {"log_backends": ["csv", "tb"]}}
        )


def test_tuples_and_optional():
    with pytest.raises(ConfigError, match=r"algo\.optim\.betas: expected 2 items"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"optim": {"betas": [0.9]}}})
    with pytest.raises(ConfigError, match=r"algo\.hidden_sizes\[1\]: expected int, got 'a'"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"hidden_sizes": [1, "a"]}})
    with pytest.raises(ConfigError, match=r"algo\.hidden_sizes: expected tuple\[int, \.\.\.\]"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"hidden_sizes": 64}})
    assert (
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"clip": None}}).algo.clip
        is None
    )
    assert (
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"clip": 2}}).algo.clip == 2.0
    )
    with pytest.raises(ConfigError, match=r"algo\.clip: expected float, got 'big'"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": {"clip": "big"}})


def test_missing_required_key_and_section_type():
    with pytest.raises(
        ConfigError, match=r"meta_batch_size: missing required key \(expected int\)"
    ):
        load_config(ExperimentConfig, {})
    with pytest.raises(ConfigError, match=r"algo: expected a mapping for AlgoConfig, got 3"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "algo": 3})


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as info:
        load_config(
            ExperimentConfig, {"meta_batch_size": "2", "algo": {"inner_lr": "x", "oops": 1}}
        )
    keys = sorted(message.split(":")[0] for message in info.value.errors)
    assert keys == ["algo.inner_lr", "algo.oops", "meta_batch_size"]
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_range_check_in_post_init_names_dotted_key():
    with pytest.raises(ConfigError, match=r"run\.log_every must be >= 1, got 0"):
        load_config(ExperimentConfig, {"meta_batch_size": 2, "run": {"log_every": 0}})


def test_removed_eval_every_is_refused_with_what_to_do_instead():
    for value in (0, 5):
        with pytest.raises(ConfigError, match=r"run.eval_every: removed;.*metarl eval"):
            load_config(ExperimentConfig, {"meta_batch_size": 2, "run": {"eval_every": value}})
    with pytest.raises(ConfigError, match=r"run.eval_every: removed;.*in override"):
        load_config(ExperimentConfig, {"meta_batch_size": 2}, ["run.eval_every=0"])


def test_overrides_apply_and_are_validated():
    base = {"meta_batch_size": 2, "algo": {"inner_lr": 0.1}}
    cfg = load_config(
        ExperimentConfig,
        base,
        ["algo.inner_lr=0.4", "algo.optim.lr=1e-4", "run.device=cpu", "algo.hidden_sizes=[8, 8]"],
    )
    assert cfg.algo.inner_lr == 0.4
    assert cfg.algo.optim.lr == 1e-4
    assert cfg.run.device == "cpu"
    assert cfg.algo.hidden_sizes == (8, 8)
    assert base == {"meta_batch_size": 2, "algo": {"inner_lr": 0.1}}  # Input not modified.
    assert load_config(ExperimentConfig, base, ["algo.clip=null"]).algo.clip is None
    # Later overrides win.
    assert load_config(ExperimentConfig, base, ["run.seed=1", "run.seed=2"]).run.seed == 2


def test_bad_overrides():
    base = {"meta_batch_size": 2}
    with pytest.raises(
        ConfigError,
        match=r"algo\.inner_lrr: unknown key in override 'algo\.inner_lrr=0\.4' "
        r"\(did you mean 'algo\.inner_lr'\?\)",
    ):
        load_config(ExperimentConfig, base, ["algo.inner_lrr=0.4"])
    with pytest.raises(ConfigError, match=r"algo\.inner_steps: expected int, got 'abc'"):
        load_config(ExperimentConfig, base, ["algo.inner_steps=abc"])
    with pytest.raises(ConfigError, match=r"run\.resume: expected bool, got 1"):
        load_config(ExperimentConfig, base, ["run.resume=1"])
    with pytest.raises(
        ConfigError, match=r"override 'algo\.inner_lr': expected 'dotted\.key=value'"
    ):
        load_config(ExperimentConfig, base, ["algo.inner_lr"])
    with pytest.raises(ConfigError, match=r"meta_batch_size\.x: unknown key"):
        apply_overrides(ExperimentConfig, base, ["meta_batch_size.x=1"])


def test_yaml_file_errors(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("meta_batch_size: 2\nmeta_batch_size: 3\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'meta_batch_size' at line 2"):
        load_config(ExperimentConfig, path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"<root>: expected a mapping"):
        load_config(ExperimentConfig, path)
    path.write_text("")
    assert load_config(RunConfig, path) == RunConfig()
    with pytest.raises(FileNotFoundError):
        load_config(RunConfig, tmp_path / "missing.yaml")


def test_load_yaml_nested_and_floats():
    assert load_yaml("a: [{b: 1}, {c: [1, 2.5e3]}]\nd: 1e-3\ne: 10\nf: .inf") == {
        "a": [{"b": 1}, {"c": [1, 2500.0]}],
        "d": 0.001,
        "e": 10,
        "f": float("inf"),
    }


def test_load_config_requires_frozen_dataclass():
    with pytest.raises(TypeError, match="frozen dataclass"):
        load_config(NotFrozen, {})
    with pytest.raises(TypeError, match="frozen dataclass"):
        load_config(dict, {})  # type: ignore[arg-type]


def test_field_help():
    assert field_help(AlgoConfig)["inner_lr"] == "Inner (adaptation) step size."
    assert field_help(AlgoConfig)["tag"] == "Free-form tag."
    help_text = config_help(ExperimentConfig)
    assert help_text["algo.optim.betas"] == "Adam coefficients of the running averages."
    assert help_text["run.seed"].startswith("Seed of every random number generator")
    assert undocumented_fields(ExperimentConfig) == []
    assert undocumented_fields(RunConfig) == []
    assert undocumented_fields(Undocumented) == ["bare"]
    lines = format_config_help(ExperimentConfig).splitlines()
    assert "meta_batch_size (int, required): Tasks per outer update." in lines
    assert "algo (section): Algorithm hyper-parameters." in lines
    assert "algo.inner_steps (int, default 1): Number of inner gradient steps." in lines
    assert any(
        line.startswith("algo.optim.betas (tuple[float, float], default (0.9, 0.999))")
        for line in lines
    )


def test_module_docstring_examples_run():
    result = doctest.testmod(metarl.config)
    assert result.attempted > 0 and result.failed == 0, result


def test_optional_section():
    assert load_config(WithOptionalSection, {}).optim is None
    assert load_config(WithOptionalSection, {"optim": None}).optim is None
    cfg = load_config(WithOptionalSection, {}, ["optim.lr=0.5"])
    assert cfg.optim == OptimConfig(lr=0.5)
    assert load_config(WithOptionalSection, config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"optim\.betas: expected 2 items"):
        load_config(WithOptionalSection, {"optim": {"betas": [1.0]}})
    assert "optim.lr" in config_help(WithOptionalSection)
    assert "optim (section): Optional optimiser section." in format_config_help(WithOptionalSection)

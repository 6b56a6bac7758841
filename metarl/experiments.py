"""Experiment kinds: which module trains and evaluates a config, chosen by its ``algo.name``.

A kind is a module with ``CONFIG_CLASS`` (the config dataclass), ``train_from_config(cfg, device)
-> Path`` (trains, evaluates, returns the eval JSON) and ``evaluate_run(cfg, checkpoint, device,
*, out, num_tasks, steps, seed, split) -> Path``. The command line knows nothing else.

`preflight` runs a kind's checks that need more than one field or the machine (env ids, worker
counts, memory), after the config has loaded and before the run directory is created.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import yaml

from metarl.config import ConfigError, describe_yaml_error, load_yaml

__all__ = ["ALGORITHM_KINDS", "PREFLIGHT_CHECKS", "experiment_kind", "preflight"]

ALGORITHM_KINDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "maml",
            "fomaml",
            "metasgd",
            "anil",
            "mamlpp",
            "reptile",
            "protonet",
            "matching",
            "relation",
        ],
        "metarl.supervised",
    ),
    **dict.fromkeys(["maml_trpo", "maml_ppo", "promp"], "metarl.algorithms.maml_rl_eval"),
    **dict.fromkeys(["rl2_ppo", "rl2_trpo"], "metarl.algorithms.rl2"),
}
"""``algo.name`` -> the module that runs it."""

PREFLIGHT_CHECKS: dict[str, str] = {
    "metarl.supervised": "metarl.supervised_checks",
    "metarl.algorithms.maml_rl_eval": "metarl.algorithms.maml_rl_config",
    "metarl.algorithms.rl2": "metarl.algorithms.rl2_config",
}
"""Experiment-kind module -> the module whose ``preflight(cfg, device)`` checks its configs."""


def experiment_kind(config_path: str | os.PathLike[str]) -> ModuleType:
    """Returns the experiment-kind module for the config at ``config_path``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ConfigError: if the file is not valid YAML.
        ValueError: if ``algo.name`` is missing or unknown (the message lists the known names).
    """
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{config_path}: invalid YAML: {describe_yaml_error(err)}"]) from None
    algo = data.get("algo") if isinstance(data, dict) else None
    name = algo.get("name") if isinstance(algo, dict) else None
    if name is None:
        name = "maml"  # the supervised config's default learner
    if name not in ALGORITHM_KINDS:
        raise ValueError(
            f"algo.name={name!r} in {config_path} is not a known algorithm; expected one of "
            f"{sorted(ALGORITHM_KINDS)}"
        )
    return importlib.import_module(ALGORITHM_KINDS[name])


def preflight(kind: ModuleType, cfg: Any, device: Any) -> None:
    """Run the checks of ``kind`` that need the outside world, before anything is written.

    Args:
        kind: The experiment-kind module (`experiment_kind`).
        cfg: Its loaded config.
        device: The ``torch.device`` the run will use.

    Raises:
        ValueError: Naming the offending field.
    """
    checks = PREFLIGHT_CHECKS.get(kind.__name__)
    if checks is not None:
        importlib.import_module(checks).preflight(cfg, device)

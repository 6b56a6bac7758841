"""Experiment kinds: which module trains and evaluates a config, chosen by its ``algo.name``.

A kind is a module with ``CONFIG_CLASS`` (the config dataclass), ``train_from_config(cfg, device)
-> Path`` (trains, evaluates, returns the eval JSON) and ``evaluate_run(cfg, checkpoint, device,
*, out, num_tasks, steps, seed, split) -> Path``. The command line knows nothing else.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from metarl.config import load_yaml

__all__ = ["ALGORITHM_KINDS", "experiment_kind"]

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


def experiment_kind(config_path: str | os.PathLike[str]) -> ModuleType:
    """Returns the experiment-kind module for the config at ``config_path``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if ``algo.name`` is missing or unknown (the message lists the known names).
    """
    with open(config_path, encoding="utf-8") as f:
        data = load_yaml(f.read())
    name = (data or {}).get("algo", {}).get("name") if isinstance(data, dict) else None
    if name is None:
        name = "maml"  # the supervised config's default learner
    if name not in ALGORITHM_KINDS:
        raise ValueError(
            f"algo.name={name!r} in {config_path} is not a known algorithm; expected one of "
            f"{sorted(ALGORITHM_KINDS)}"
        )
    return importlib.import_module(ALGORITHM_KINDS[name])

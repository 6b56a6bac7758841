"""Algorithm families, one file each, and the registry that maps ``algo.name`` to them.

:mod:`metarl.algorithms.registry` holds the one table; :func:`experiment_kind` reads it for the
command line.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, cast

import yaml

from metarl.algorithms.registry import ALGORITHMS, Algorithm, supervised_learners
from metarl.algorithms.supervised import build_supervised_learner
from metarl.config import ConfigError, describe_yaml_error, load_yaml
from metarl.kinds import ExperimentKind

if TYPE_CHECKING:  # each family module satisfies the one ExperimentKind protocol (mypy checks)
    from metarl.algorithms import maml_rl_eval, rl2, supervised

    _KINDS: tuple[ExperimentKind, ...] = (supervised, maml_rl_eval, rl2)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "build_supervised_learner",
    "experiment_kind",
    "preflight",
    "supervised_learners",
]


def experiment_kind(config_path: str | os.PathLike[str]) -> ExperimentKind:
    """Returns the module that runs the config at ``config_path`` (by its ``algo.name``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ConfigError: if the file is not valid YAML.
        ValueError: if ``algo.name`` is unknown (the message lists the known names).
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
    if name not in ALGORITHMS:
        raise ValueError(
            f"algo.name={name!r} in {config_path} is not a known algorithm; expected one of "
            f"{sorted(ALGORITHMS)}"
        )
    return cast(ExperimentKind, importlib.import_module(ALGORITHMS[name].kind))


def preflight(kind: ExperimentKind, cfg: Any, device: Any) -> None:
    """Runs the checks of ``kind`` that need the outside world, before anything is written.

    Args:
        kind: The module of :func:`experiment_kind`.
        cfg: Its loaded config.
        device: The ``torch.device`` the run will use.

    Raises:
        ValueError: Naming the offending field.
    """
    kind.preflight(cfg, device)

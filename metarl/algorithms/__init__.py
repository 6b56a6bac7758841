"""Algorithm families, one file each; :func:`build_supervised_learner` picks one by name."""

from __future__ import annotations

import importlib

import torch

from metarl.supervised import SupervisedConfig, SupervisedLearner

__all__ = ["SUPERVISED_LEARNERS", "build_supervised_learner"]

SUPERVISED_LEARNERS: dict[str, str] = {
    "maml": "metarl.algorithms.maml:MAMLLearner",
    "fomaml": "metarl.algorithms.maml:MAMLLearner",
    "metasgd": "metarl.algorithms.maml:MAMLLearner",
    "anil": "metarl.algorithms.maml:MAMLLearner",
    "mamlpp": "metarl.algorithms.maml:MAMLLearner",
    "reptile": "metarl.algorithms.reptile:ReptileLearner",
    "protonet": "metarl.algorithms.protonet:ProtoNetLearner",
    "matching": "metarl.algorithms.matching:MatchingNetLearner",
    "relation": "metarl.algorithms.relation:RelationNetLearner",
}
"""Learner name (``algo.name``) -> ``module:Class``."""


def build_supervised_learner(
    cfg: SupervisedConfig, device: torch.device, generator: torch.Generator
) -> SupervisedLearner:
    """Builds the learner named by ``cfg.algo.name``; ``generator`` initialises its weights."""
    module, _, cls = SUPERVISED_LEARNERS[cfg.algo.name].partition(":")
    return getattr(importlib.import_module(module), cls)(cfg, device, generator)

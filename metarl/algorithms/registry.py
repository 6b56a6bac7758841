"""The one table of algorithms: each ``algo.name`` and what runs it.

Adding an algorithm is one entry here (plus its module). The command line reads this table
through :func:`metarl.algorithms.experiment_kind`; the supervised config validates
``algo.name`` against it; the core never names an algorithm.

A *kind* is a module that satisfies :class:`metarl.kinds.ExperimentKind`: ``CONFIG_CLASS`` (the
config dataclass), ``preflight(cfg, device)`` (checks that need the machine: env ids, worker
counts, memory; run before the run directory is created), ``train_from_config(cfg, device) ->
Path`` (trains through :mod:`metarl.driver`, evaluates, returns the eval JSON) and
``evaluate_run(cfg, request) -> Path`` (evaluates a loaded checkpoint as a
:class:`metarl.kinds.EvalRequest` says).
"""

from __future__ import annotations

import dataclasses

__all__ = ["ALGORITHMS", "Algorithm", "sequence_learners", "supervised_learners"]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One registered algorithm.

    Attributes:
        kind: The module that trains and evaluates its configs.
        learner: ``"module:Class"`` of a supervised learner (None for the RL families).
        adapts: Whether it has an inner loop, so that evaluation reports the metric after
            0..k adaptation steps (metric learners classify the query set directly: one point).
        sequence_model: A black-box learner that reads the episode as a sequence of embeddings,
            which may be the raw pixels (``model.network: flat``); no other learner takes them.
    """

    kind: str
    learner: str | None = None
    adapts: bool = True
    sequence_model: bool = False


_SUPERVISED = "metarl.algorithms.supervised"
_MAML = "metarl.algorithms.maml:MAMLLearner"

ALGORITHMS: dict[str, Algorithm] = {
    # supervised few-shot learners (metarl.algorithms.supervised runs them all)
    "maml": Algorithm(_SUPERVISED, _MAML),
    "fomaml": Algorithm(_SUPERVISED, _MAML),
    "metasgd": Algorithm(_SUPERVISED, _MAML),
    "anil": Algorithm(_SUPERVISED, _MAML),
    "mamlpp": Algorithm(_SUPERVISED, _MAML),
    "reptile": Algorithm(_SUPERVISED, "metarl.algorithms.reptile:ReptileLearner"),
    "imaml": Algorithm(_SUPERVISED, "metarl.algorithms.imaml:IMAMLLearner"),
    "cavia": Algorithm(_SUPERVISED, "metarl.algorithms.cavia:CAVIALearner"),
    "alphamaml": Algorithm(_SUPERVISED, "metarl.algorithms.alphamaml:AlphaMAMLLearner"),
    "metalstm": Algorithm(_SUPERVISED, "metarl.algorithms.metalstm:MetaLSTMLearner"),
    "protonet": Algorithm(_SUPERVISED, "metarl.algorithms.protonet:ProtoNetLearner", False),
    "matching": Algorithm(_SUPERVISED, "metarl.algorithms.matching:MatchingNetLearner", False),
    "relation": Algorithm(_SUPERVISED, "metarl.algorithms.relation:RelationNetLearner", False),
    "r2d2": Algorithm(_SUPERVISED, "metarl.algorithms.closed_form:R2D2Learner", False),
    "metaoptnet": Algorithm(_SUPERVISED, "metarl.algorithms.closed_form:MetaOptNetLearner", False),
    "siamese": Algorithm(_SUPERVISED, "metarl.algorithms.siamese:SiameseLearner", False),
    # black-box (model-based): a sequence model reads the episode
    "mann": Algorithm(_SUPERVISED, "metarl.algorithms.mann:MANNLearner", False, True),
    "snail": Algorithm(_SUPERVISED, "metarl.algorithms.snail:SNAILLearner", False, True),
    # MAML-RL
    "maml_trpo": Algorithm("metarl.algorithms.maml_rl_eval"),
    "maml_ppo": Algorithm("metarl.algorithms.maml_rl_eval"),
    "promp": Algorithm("metarl.algorithms.maml_rl_eval"),
    "cavia_trpo": Algorithm("metarl.algorithms.maml_rl_eval"),
    # RL²
    "rl2_ppo": Algorithm("metarl.algorithms.rl2"),
    "rl2_trpo": Algorithm("metarl.algorithms.rl2"),
}
"""``algo.name`` -> how it runs."""


def supervised_learners() -> list[str]:
    """The ``algo.name`` values of the supervised learners, in registration order."""
    return [name for name, algo in ALGORITHMS.items() if algo.learner is not None]


def sequence_learners() -> list[str]:
    """The ``algo.name`` values of the black-box sequence learners (``model.network: flat``)."""
    return [name for name, algo in ALGORITHMS.items() if algo.sequence_model]

"""Every experiment kind the registry names satisfies the one ExperimentKind protocol."""

from __future__ import annotations

import importlib
import inspect

import pytest

from metarl.algorithms import ALGORITHMS
from metarl.kinds import EvalRequest, ExperimentKind

KINDS = sorted({algo.kind for algo in ALGORITHMS.values()})


def test_the_registry_names_the_three_families():
    assert KINDS == [
        "metarl.algorithms.maml_rl_eval",
        "metarl.algorithms.rl2",
        "metarl.algorithms.supervised",
    ]


@pytest.mark.parametrize("name", KINDS)
def test_a_kind_has_every_entry_point_and_evaluate_run_takes_one_request(name):
    kind = importlib.import_module(name)
    assert isinstance(kind, ExperimentKind)
    assert isinstance(kind.CONFIG_CLASS, type)
    params = inspect.signature(kind.evaluate_run).parameters
    assert list(params) == ["cfg", "request"]
    assert params["request"].annotation in (EvalRequest, "EvalRequest")
    assert list(inspect.signature(kind.train_from_config).parameters) == ["cfg", "device"]
    assert list(inspect.signature(kind.preflight).parameters) == ["cfg", "device"]

"""The miniImageNet task family in the supervised config and model builder."""

from __future__ import annotations

import pytest
import torch

from metarl.algorithms.supervised import (
    AlgoConfig,
    ModelConfig,
    SupervisedConfig,
    TaskConfig,
    build_model,
)
from metarl.algorithms.supervised_checks import activation_bytes


def test_miniimagenet_task_name_and_conv4_input_shape() -> None:
    cfg = SupervisedConfig(
        task=TaskConfig(family="miniimagenet", ways=5, shots=1, query_shots=15),
        model=ModelConfig(network="conv4_maxpool", filters=32),
        algo=AlgoConfig(name="maml"),
    )
    assert cfg.task.name == "miniimagenet-5w1s"
    model = build_model(cfg, torch.Generator().manual_seed(0), torch.device("cpu"), False)
    assert model(torch.zeros(2, 3, 84, 84)).shape == (2, 5)
    assert model.embedding_dim == 32 * 5 * 5  # 84 -> 42 -> 21 -> 10 -> 5
    # a conv4 on 3x84x84 holds far more activations than on 1x28x28
    omniglot = SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=5, shots=1, query_shots=15),
        model=cfg.model,
        algo=cfg.algo,
    )
    assert activation_bytes(cfg) > 8 * activation_bytes(omniglot)


def test_family_specific_task_fields_are_refused_elsewhere() -> None:
    with pytest.raises(ValueError, match="num_characters applies to the omniglot family"):
        TaskConfig(family="miniimagenet", num_characters=10)
    with pytest.raises(ValueError, match="split_dir applies to the miniimagenet family"):
        TaskConfig(family="omniglot", split_dir="splits")

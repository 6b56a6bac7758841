import dataclasses
from typing import Any

import pytest
import torch

from envs.supervised import TaskBatch


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "support_x": torch.arange(24.0).reshape(3, 4, 2),
        "support_y": torch.zeros(3, 4, dtype=torch.int64),
        "query_x": torch.ones(3, 5, 2),
        "query_y": torch.ones(3, 5, dtype=torch.int64),
    }
    fields.update(overrides)
    return fields


def test_properties_report_task_and_shot_counts() -> None:
    batch = TaskBatch(**_fields())
    assert (batch.num_tasks, batch.num_support, batch.num_query) == (3, 4, 5)
    assert batch.device == torch.device("cpu")
    assert batch.params == {}


def test_regression_shapes_are_accepted() -> None:
    batch = TaskBatch(
        support_x=torch.zeros(2, 10, 1),
        support_y=torch.zeros(2, 10, 1),
        query_x=torch.zeros(2, 7, 1),
        query_y=torch.zeros(2, 7, 1),
        params={"amplitude": torch.ones(2), "phase": torch.zeros(2)},
    )
    assert batch.num_tasks == 2


def test_to_moves_every_tensor_and_params_into_a_new_batch() -> None:
    batch = TaskBatch(**_fields(params={"amplitude": torch.ones(3)}))
    moved = batch.to("meta")  # the meta device exists in every torch build
    assert moved is not batch
    assert batch.device == torch.device("cpu")
    tensors = [moved.support_x, moved.support_y, moved.query_x, moved.query_y]
    assert all(t.device.type == "meta" for t in [*tensors, moved.params["amplitude"]])
    assert moved.support_x.shape == batch.support_x.shape
    back = batch.to(torch.device("cpu"))
    torch.testing.assert_close(back.support_x, batch.support_x)
    torch.testing.assert_close(back.params["amplitude"], batch.params["amplitude"])


def test_batch_is_frozen_and_params_are_copied() -> None:
    params = {"amplitude": torch.ones(3)}
    batch = TaskBatch(**_fields(params=params))
    params["phase"] = torch.zeros(3)
    assert set(batch.params) == {"amplitude"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.support_x = torch.zeros(3, 4, 2)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"support_x": [[1.0]]}, TypeError, "support_x must be a torch.Tensor, got list"),
        ({"query_y": torch.zeros(3)}, ValueError, r"query_y must have at least 2 dims .*\(3,\)"),
        (
            {"support_y": torch.zeros(3, 2, dtype=torch.int64)},
            ValueError,
            r"support_x and support_y must share \[task, shot\], got \(3, 4, 2\) and \(3, 2\)",
        ),
        (
            {"query_x": torch.zeros(2, 5, 2), "query_y": torch.zeros(2, 5, dtype=torch.int64)},
            ValueError,
            "query_x has 2 tasks but support_x has 3",
        ),
        ({"query_x": torch.zeros(3, 5, 7)}, ValueError, r"query_x trailing shape \(7,\)"),
        (
            {"query_y": torch.zeros(3, 5, 1, dtype=torch.int64)},
            ValueError,
            r"query_y trailing shape \(1,\)",
        ),
        ({"query_y": torch.zeros(3, 5)}, ValueError, "query_y dtype torch.float32 differs"),
        (
            {"support_y": torch.zeros(3, 4, dtype=torch.int32)},
            ValueError,
            "support_y must be int64 labels or floating targets, got dtype torch.int32",
        ),
        ({"query_x": torch.zeros(3, 5, 2, device="meta")}, ValueError, "one device"),
        (
            {"params": {"amplitude": torch.ones(2)}},
            ValueError,
            r"params\['amplitude'\] must have leading task axis of size 3, got shape \(2,\)",
        ),
        ({"params": {"amplitude": 1.0}}, TypeError, "params must map str to torch.Tensor"),
        ({"params": [torch.ones(3)]}, TypeError, "params must be a mapping"),
    ],
)
def test_invalid_batches_raise_naming_the_field(
    overrides: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TaskBatch(**_fields(**overrides))


def test_first_task_is_kept_by_to_and_must_be_a_non_negative_int() -> None:
    assert TaskBatch(**_fields()).first_task == 0  # a sampled batch starts the meta-batch
    assert TaskBatch(**_fields(first_task=2)).to("cpu").first_task == 2
    with pytest.raises(ValueError, match="first_task must be >= 0, got -1"):
        TaskBatch(**_fields(first_task=-1))
    with pytest.raises(TypeError, match="first_task must be an int, got float"):
        TaskBatch(**_fields(first_task=1.0))

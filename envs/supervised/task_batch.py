"""``TaskBatch``: the support/query tensors of a batch of supervised tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch


@dataclasses.dataclass(frozen=True, eq=False)
class TaskBatch:
    """Support and query sets of ``task`` supervised tasks, stacked along a leading task axis.

    Axis order is ``[task, shot, ...]``, the task axis first as everywhere in metarl. For
    ``ways``-way classification the shot axis holds ``ways * shots`` examples arranged class-major
    (all examples of label 0, then label 1, ...) and labels are ``int64`` in ``0..ways-1``; for
    regression, inputs and targets are ``[task, K, 1]`` ``float32``.

    Equality and hashing are by identity (``eq=False``): tensors have no boolean ``==``.

    Attributes:
        support_x: Support inputs, ``[task, support, ...]``.
        support_y: Support targets, ``[task, support, ...]`` (``int64`` labels or floating targets).
        query_x: Query inputs, ``[task, query, ...]``, same trailing shape as ``support_x``.
        query_y: Query targets, ``[task, query, ...]``, same dtype and trailing shape as
            ``support_y``.
        params: Per-task parameters that generated the batch, each with leading axis ``[task]``
            (e.g. sinusoid ``amplitude``/``phase`` ``[task]``; Omniglot ``characters``
            ``[task, ways]``). Empty when the family has none.
        first_task: Index of task 0 of this batch in the meta-batch it was sliced from (0 for a
            sampled batch). A learner that draws per-task randomness (e.g. the support order of
            a black-box learner) keys it by ``first_task + i``, so a rank's slice of a
            meta-batch gets what the same tasks get in one process.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    params: Mapping[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    first_task: int = 0

    def __post_init__(self) -> None:
        """Check types, ranks, matching task/shot axes, dtypes and devices.

        Raises:
            TypeError: If a field is not a tensor or ``params`` is not a mapping of tensors.
            ValueError: If shapes, dtypes or devices disagree; the message names the field.
        """
        names = ("support_x", "support_y", "query_x", "query_y")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.dim() < 2:
                raise ValueError(
                    f"{name} must have at least 2 dims [task, shot, ...], got shape "
                    f"{tuple(value.shape)}"
                )
        _check_pair("support", self.support_x, self.support_y)
        _check_pair("query", self.query_x, self.query_y)
        num_tasks = self.support_x.shape[0]
        if self.query_x.shape[0] != num_tasks:
            raise ValueError(
                f"query_x has {self.query_x.shape[0]} tasks but support_x has {num_tasks}"
            )
        if self.query_x.shape[2:] != self.support_x.shape[2:]:
            raise ValueError(
                f"query_x trailing shape {tuple(self.query_x.shape[2:])} differs from support_x "
                f"trailing shape {tuple(self.support_x.shape[2:])}"
            )
        if self.query_y.shape[2:] != self.support_y.shape[2:]:
            raise ValueError(
                f"query_y trailing shape {tuple(self.query_y.shape[2:])} differs from support_y "
                f"trailing shape {tuple(self.support_y.shape[2:])}"
            )
        if self.query_y.dtype != self.support_y.dtype:
            raise ValueError(
                f"query_y dtype {self.query_y.dtype} differs from support_y dtype "
                f"{self.support_y.dtype}"
            )
        if isinstance(self.first_task, bool) or not isinstance(self.first_task, int):
            raise TypeError(f"first_task must be an int, got {type(self.first_task).__name__}")
        if self.first_task < 0:
            raise ValueError(f"first_task must be >= 0, got {self.first_task}")
        devices = {getattr(self, name).device for name in names}
        if len(devices) != 1:
            raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
        object.__setattr__(self, "params", _checked_params(self.params, num_tasks))

    @property
    def num_tasks(self) -> int:
        """Number of tasks (size of the leading axis)."""
        return self.support_x.shape[0]

    @property
    def num_support(self) -> int:
        """Number of support examples per task (``ways * shots`` for classification)."""
        return self.support_x.shape[1]

    @property
    def num_query(self) -> int:
        """Number of query examples per task (``ways * query_shots`` for classification)."""
        return self.query_x.shape[1]

    @property
    def device(self) -> torch.device:
        """Device holding the support/query tensors."""
        return self.support_x.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TaskBatch:
        """Return a copy of the batch with every tensor (``params`` included) on ``device``.

        Args:
            device: Target device.
            non_blocking: Passed to ``torch.Tensor.to``.

        Returns:
            A new ``TaskBatch``; ``self`` is unchanged. Tensors already on ``device`` are shared.
        """

        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return TaskBatch(
            support_x=move(self.support_x),
            support_y=move(self.support_y),
            query_x=move(self.query_x),
            query_y=move(self.query_y),
            params={key: move(value) for key, value in self.params.items()},
            first_task=self.first_task,
        )

    def slice_tasks(self, tasks: range) -> TaskBatch:
        """The tasks ``tasks`` (a contiguous range) of the batch, every field sliced alike.

        The slice's ``first_task`` says where it starts in the meta-batch (a rank's share of
        it, say), so per-task randomness keyed by task index is what one process would draw.
        """
        part = slice(tasks.start, tasks.stop)
        return TaskBatch(
            self.support_x[part],
            self.support_y[part],
            self.query_x[part],
            self.query_y[part],
            {k: v[part] for k, v in self.params.items()},
            first_task=self.first_task + tasks.start,
        )


def _check_pair(prefix: str, x: torch.Tensor, y: torch.Tensor) -> None:
    """Check that inputs ``x`` and targets ``y`` agree on ``[task, shot]`` and ``y``'s dtype."""
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"{prefix}_x and {prefix}_y must share [task, shot], got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if not (y.dtype == torch.int64 or y.dtype.is_floating_point):
        raise ValueError(
            f"{prefix}_y must be int64 labels or floating targets, got dtype {y.dtype}"
        )


def _checked_params(params: object, num_tasks: int) -> dict[str, torch.Tensor]:
    """Return ``params`` as a new ``dict`` after checking each value is ``[task, ...]``."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of str to tensors, got {type(params).__name__}")
    checked: dict[str, torch.Tensor] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(
                f"params must map str to torch.Tensor, got {key!r}: {type(value).__name__}"
            )
        if value.dim() < 1 or value.shape[0] != num_tasks:
            raise ValueError(
                f"params[{key!r}] must have leading task axis of size {num_tasks}, got shape "
                f"{tuple(value.shape)}"
            )
        checked[key] = value
    return checked

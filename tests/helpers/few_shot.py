"""A tiny image task family for learners that must learn in seconds."""

from __future__ import annotations

import torch

from envs.supervised import TaskBatch

CPU = torch.device("cpu")


class CornerSquareFamily:
    """3-way 2-shot 2-query tasks on 28x28 noise; a class is a bright square on the diagonal.

    Each task assigns the three diagonal positions to its classes at random, so a learner must
    read the support set; a conv4 learner solves it in a few outer steps.
    """

    device = CPU
    split = "train"

    def sample(self, num_tasks: int, generator: torch.Generator, training: bool) -> TaskBatch:
        ways, shots, query = 3, 2, 2
        corners = torch.rand(num_tasks, ways, generator=generator).argsort(-1)  # [T, W] in 0..2

        def images(per_class: int) -> torch.Tensor:
            x = 0.3 * torch.rand(num_tasks, ways, per_class, 1, 28, 28, generator=generator)
            for t in range(num_tasks):
                for w in range(ways):
                    r = 4 + 8 * int(corners[t, w])
                    x[t, w, :, :, r : r + 8, r : r + 8] += 0.7
            return x.flatten(1, 2)

        labels = torch.arange(ways)
        return TaskBatch(
            support_x=images(shots),
            support_y=labels.repeat_interleave(shots).repeat(num_tasks, 1),
            query_x=images(query),
            query_y=labels.repeat_interleave(query).repeat(num_tasks, 1),
        )

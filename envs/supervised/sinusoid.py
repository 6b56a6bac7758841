"""Sinusoid regression task family (Finn et al. 2017, §5.1; cbfinn/maml ``data_generator.py``)."""

from __future__ import annotations

import math

import torch

from envs.supervised._validation import check_generator, check_interval, check_positive_int
from envs.supervised.task_batch import TaskBatch


class SinusoidFamily:
    """Tasks ``y = A · sin(x − φ)`` with amplitude, phase and inputs drawn uniformly.

    Defaults are MAML's (cbfinn/maml ``data_generator.py``): ``A ~ U[0.1, 5.0]``,
    ``φ ~ U[0, π]``, ``x ~ U[−5, 5]``. Reptile (Nichol et al. 2018, §3) uses
    ``phase_range=(0.0, 2 * math.pi)``.

    Example:
        >>> import torch
        >>> family = SinusoidFamily()
        >>> batch = family.sample(4, 10, 10, torch.Generator().manual_seed(0))
        >>> tuple(batch.support_x.shape), tuple(batch.params["amplitude"].shape)
        ((4, 10, 1), (4,))
    """

    def __init__(
        self,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        input_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        """Create the family.

        Args:
            amplitude_range: ``(low, high)`` of the uniform amplitude ``A``.
            phase_range: ``(low, high)`` of the uniform phase ``φ`` in radians.
            input_range: ``(low, high)`` of the uniform inputs ``x``.

        Raises:
            ValueError: If a range is not a finite ``(low, high)`` pair with ``low < high``.
        """
        self.amplitude_range = check_interval("amplitude_range", amplitude_range)
        self.phase_range = check_interval("phase_range", phase_range)
        self.input_range = check_interval("input_range", input_range)

    def __repr__(self) -> str:
        return (
            f"SinusoidFamily(amplitude_range={self.amplitude_range}, "
            f"phase_range={self.phase_range}, input_range={self.input_range})"
        )

    def sample(
        self,
        num_tasks: int,
        support_shots: int,
        query_shots: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> TaskBatch:
        """Sample ``num_tasks`` sinusoids and their support/query points in one batched draw.

        Random numbers are drawn on ``generator.device``, so a CPU generator gives the same batch
        on every device; pass a generator on ``device`` to create the batch there with no copy.
        Draw order (amplitudes, phases, then all inputs) is fixed, so a seed fixes the batch.

        Args:
            num_tasks: Number of tasks ``T``.
            support_shots: Support points per task ``K``.
            query_shots: Query points per task ``Q`` (MAML draws ``Q = K``).
            generator: Source of randomness.
            device: Device of the returned tensors; ``None`` means ``generator.device``.

        Returns:
            A ``TaskBatch`` with ``support_x``/``support_y`` ``[T, K, 1]`` and ``query_x``/
            ``query_y`` ``[T, Q, 1]``, all ``float32``, and ``params`` ``amplitude`` and
            ``phase``, each ``[T]`` ``float32``, such that ``y = amplitude · sin(x − phase)``.

        Raises:
            ValueError: If a count is not a positive int.
            TypeError: If ``generator`` is not a ``torch.Generator``.
        """
        num_tasks = check_positive_int("num_tasks", num_tasks)
        support_shots = check_positive_int("support_shots", support_shots)
        query_shots = check_positive_int("query_shots", query_shots)
        generator = check_generator(generator)
        device = generator.device if device is None else torch.device(device)

        def uniform(shape: tuple[int, ...], bounds: tuple[float, float]) -> torch.Tensor:
            low, high = bounds
            draw = torch.rand(shape, generator=generator, device=generator.device)
            return (draw * (high - low) + low).to(device)

        amplitude = uniform((num_tasks,), self.amplitude_range)  # [T]
        phase = uniform((num_tasks,), self.phase_range)  # [T]
        x = uniform((num_tasks, support_shots + query_shots, 1), self.input_range)  # [T, K+Q, 1]
        y = amplitude[:, None, None] * torch.sin(x - phase[:, None, None])  # [T, K+Q, 1]
        return TaskBatch(
            support_x=x[:, :support_shots].contiguous(),
            support_y=y[:, :support_shots].contiguous(),
            query_x=x[:, support_shots:].contiguous(),
            query_y=y[:, support_shots:].contiguous(),
            params={"amplitude": amplitude, "phase": phase},
        )

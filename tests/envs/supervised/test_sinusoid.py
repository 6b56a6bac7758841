import math
from typing import Any

import pytest
import torch

from envs.supervised import SinusoidFamily


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_and_dtypes() -> None:
    batch = SinusoidFamily().sample(4, 10, 7, _generator())
    assert batch.support_x.shape == batch.support_y.shape == (4, 10, 1)
    assert batch.query_x.shape == batch.query_y.shape == (4, 7, 1)
    assert batch.params["amplitude"].shape == batch.params["phase"].shape == (4,)
    tensors = [batch.support_x, batch.support_y, batch.query_x, batch.query_y]
    tensors += list(batch.params.values())
    assert all(t.dtype == torch.float32 for t in tensors)
    assert all(t.is_contiguous() for t in tensors)


def test_targets_equal_amplitude_times_sine_of_shifted_input() -> None:
    batch = SinusoidFamily().sample(8, 5, 5, _generator(1))
    amplitude = batch.params["amplitude"].double()[:, None, None]
    phase = batch.params["phase"].double()[:, None, None]
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        expected = amplitude * torch.sin(x.double() - phase)
        torch.testing.assert_close(y.double(), expected, rtol=0, atol=1e-5)


def test_default_ranges_are_maml_and_are_respected() -> None:
    family = SinusoidFamily()
    assert family.amplitude_range == (0.1, 5.0)
    assert family.phase_range == (0.0, math.pi)
    assert family.input_range == (-5.0, 5.0)
    batch = family.sample(2000, 10, 10, _generator(2))
    amplitude, phase = batch.params["amplitude"], batch.params["phase"]
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= math.pi
    assert -5.0 <= x.min() and x.max() <= 5.0
    # uniform draws fill their ranges: the extremes are close to the bounds, the mean centred
    assert amplitude.min() < 0.2 and amplitude.max() > 4.9
    assert abs(amplitude.mean().item() - 2.55) < 0.1
    assert x.min() < -4.99 and x.max() > 4.99


def test_custom_ranges_such_as_reptile_phase() -> None:
    family = SinusoidFamily(amplitude_range=(1.0, 2.0), phase_range=(0.0, 2 * math.pi))
    phase = family.sample(2000, 1, 1, _generator(3)).params["phase"]
    assert 0.0 <= phase.min() and phase.max() <= 2 * math.pi
    assert phase.max() > 6.0  # reaches beyond MAML's [0, pi]


def test_same_seed_gives_same_batch_and_new_seed_a_different_one() -> None:
    family = SinusoidFamily()
    first = family.sample(3, 4, 4, _generator(7))
    second = family.sample(3, 4, 4, _generator(7))
    other = family.sample(3, 4, 4, _generator(8))
    for name in ("support_x", "support_y", "query_x", "query_y"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=0)
    assert not torch.equal(first.support_x, other.support_x)


def test_support_and_query_are_distinct_points_of_the_same_task() -> None:
    batch = SinusoidFamily().sample(2, 5, 5, _generator(4))
    assert not torch.equal(batch.support_x, batch.query_x)


def test_device_argument_places_the_batch() -> None:
    batch = SinusoidFamily().sample(2, 3, 3, _generator(), device="meta")
    assert batch.device.type == "meta"
    assert batch.params["amplitude"].device.type == "meta"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 5, 5), "num_tasks must be a positive int, got 0"),
        ((2, -1, 5), "support_shots must be a positive int, got -1"),
        ((2, 5, 2.5), r"query_shots must be a positive int, got 2.5 \(float\)"),
        ((True, 5, 5), r"num_tasks must be a positive int, got True \(bool\)"),
    ],
)
def test_bad_counts_raise(args: tuple[Any, Any, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SinusoidFamily().sample(*args, _generator())


def test_bad_generator_raises() -> None:
    with pytest.raises(TypeError, match="generator must be a torch.Generator, got int"):
        SinusoidFamily().sample(1, 1, 1, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"amplitude_range": (5.0, 0.1)}, r"amplitude_range must be finite with low < high"),
        ({"phase_range": (1.0, 1.0)}, r"phase_range must be finite with low < high, got \(1.0"),
        ({"input_range": (0.0, math.inf)}, "input_range must be finite"),
        ({"input_range": (0.0, 1.0, 2.0)}, r"input_range must be a \(low, high\) pair"),
        ({"amplitude_range": "ab"}, r"amplitude_range must be a \(low, high\) pair"),
    ],
)
def test_bad_ranges_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SinusoidFamily(**kwargs)  # type: ignore[arg-type]

"""scripts/bench_envs.py: the paired ratio compares windows of the same round."""

import pytest

from tests.helpers.scripts import load_script


def test_paired_ratio_is_the_median_of_same_round_ratios():
    bench = load_script("bench_envs")
    # the machine slows down threefold over the run; each row keeps 0.9x / 1.0x of the reference
    rates = {"lockstep": [100.0, 50.0, 30.0, 60.0], "process": [90.0, 45.0, 27.0, 54.0]}
    assert bench.paired_ratio(rates, "process", "lockstep") == pytest.approx(0.9)
    assert bench.paired_ratio(rates, "lockstep", "lockstep") == 1.0
    # by hand: window ratios 0.5, 2 and 1, median 1
    rates = {"a": [10.0, 80.0, 40.0], "b": [20.0, 40.0, 40.0]}
    assert bench.paired_ratio(rates, "a", "b") == pytest.approx(1.0)

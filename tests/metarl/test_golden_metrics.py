"""Tiny seeded runs log the numbers recorded before the config redesign (issue 11).

``data/golden_metrics.json`` holds the metrics CSV (every row but ``time/``) of a 3-iteration run
of sinusoid MAML, sinusoid Reptile, MAML-TRPO on Navigation2D and RL² (PPO and TRPO) on 5-armed
bandits, written by the code before the config sections were reorganised, from the configs of
that time and the same overrides under their old names. A reorganisation of how a config is
spelled must leave them alone; a change that means to alter a learner's numbers rewrites the file
(and says why). The tolerance absorbs floating-point differences between machines, not a changed
default: those move the numbers by far more.

One exception, measured: MAML-TRPO on this tiny Navigation2D problem (2 tasks x 2 episodes x 6
steps, a policy of 8 units) solves a very ill-conditioned Fisher system in float32, and the
conjugate-gradient step amplifies the machine's rounding. The file was recorded on an AMD EPYC; on
an AVX-512 Intel Xeon the first update's KL is 1.4 % off, the later KLs 4.8 % and 10.4 %, the
returns that follow up to 3 %, while the sampling, the line search's step fractions and every other
case agree to 1e-4. So from the first TRPO step's KL on (``float32_sensitive_from``) that case is
held to ``float32_sensitive_rel_tol`` (15 %), still far inside what a changed default moves.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from metarl.cli import main as cli_main

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_metrics.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_tiny_seeded_run_logs_its_recorded_numbers(name, tmp_path, capsys):
    case = GOLDEN[name]
    run_dir = tmp_path / "run"
    args = ["train", case["config"], "--run-dir", str(run_dir), "--device", "cpu", "--seed", "5"]
    assert cli_main([*args, *[a for s in case["set"] for a in ("--set", s)]]) == 0
    capsys.readouterr()
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = [(int(s), k, float(v)) for s, k, v in list(csv.reader(f))[1:]]
    got = [row for row in rows if not row[1].startswith("time/")]
    want = [tuple(row) for row in case["rows"]]
    assert [r[:2] for r in got] == [r[:2] for r in want]  # the same metrics at the same steps
    sensitive = case.get("float32_sensitive_from")
    first = [r[:2] for r in want].index(tuple(sensitive)) if sensitive else len(want)
    for i, ((step, key, value), (_, _, expected)) in enumerate(zip(got, want, strict=True)):
        rel_tol = case["float32_sensitive_rel_tol"] if i >= first else 1e-4
        assert math.isclose(value, expected, rel_tol=rel_tol, abs_tol=1e-6), (step, key, value)

"""scripts/demo.py on a bare clone: the supervised tour runs without the Omniglot archives."""

import importlib.util
from pathlib import Path

import pytest

from envs.supervised import ROOT_ENV_VAR, omniglot_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def demo(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as `python scripts/demo.py` has it
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_sinusoid_only(out):
    lines = out.strip().splitlines()
    assert lines[0].startswith("sinusoid (25 tasks, K=10)") and "batches/s" in lines[0]
    assert lines[1] == (
        f"{'omniglot':32} not found, skipped (optional: `metarl data omniglot` downloads it, "
        "about 16 MB)"
    )
    assert len(lines) == 2


def test_supervised_tour_without_omniglot_samples_sinusoids_and_says_how_to_get_it(
    demo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "empty"))
    demo.supervised_tour(0)
    _assert_sinusoid_only(capsys.readouterr().out)


def test_supervised_tour_on_a_bare_clone(demo, tmp_path, monkeypatch, capsys):
    """No variable, no user copy, no development copy beside the repository."""
    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(omniglot_data, "_SIBLING_ROOT", tmp_path / "no_sibling")
    demo.supervised_tour(0)
    _assert_sinusoid_only(capsys.readouterr().out)
    assert not (tmp_path / "xdg").exists()


def test_demo_table_rows_are_mean_and_ci_per_step(demo):
    result = {
        "steps": [0, 1],
        "mean": [-41.26, -16.04],
        "ci95": [7.1, 2.46],
        "baselines": {"random": {"mean": [-117.2, -93.96], "ci95": [5.4, 4.6]}},
    }
    assert demo.demo_table(result).splitlines() == [
        " " * 12 + "         0 steps         1 steps",
        "MAML-TRPO       -41.3 ±  7.1    -16.0 ±  2.5",
        "random         -117.2 ±  5.4    -94.0 ±  4.6",
    ]


def test_env_tour_prints_the_same_returns_on_every_run(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "empty"))

    def returns():
        demo.tour(2, 3, 0)
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        return {row[0]: row[-2] for row in rows if row and row[0].startswith("metarl/")}

    first = returns()
    assert "metarl/Navigation2D-v0" in first and "metarl/Bandit-K5-v0" in first
    assert returns() == first

"""The README's demo table is generated from results/demo/, written by `make demo`."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "demo"


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts" / "readme_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_demo_block_is_what_the_generator_makes_from_the_committed_results():
    tables = _tables()
    readme = (ROOT / "README.md").read_text()
    assert tables.render(readme, RESULTS) == readme, "run python scripts/readme_tables.py"


def test_committed_results_are_one_default_demo_run():
    run = json.loads((RESULTS / "run.json").read_text())
    assert (run["job"], run["iterations"], run["eval_tasks"], run["eval_episodes"]) == (
        "maml-trpo",
        20,
        20,
        20,
    )
    assert run["uncommitted_changes"] is False and len(run["commit"]) == 40
    assert {p.name for p in RESULTS.iterdir()} == {
        "run.json",
        "config.yaml",
        "eval.json",
        "eval.csv",
        "eval.png",
    }


def test_render_replaces_only_the_block_and_rejects_missing_markers(tmp_path):
    tables = _tables()
    block = tables.demo_block(RESULTS)
    readme = f"intro\n{tables.DEMO_BEGIN}\nold table\n{tables.DEMO_END}\nrest\n"
    assert tables.render(readme, RESULTS) == f"intro\n{block}\nrest\n"
    with pytest.raises(ValueError, match="exactly one"):
        tables.render("no markers", RESULTS)


def test_results_from_two_runs_are_rejected(tmp_path):
    tables = _tables()
    for name in ("run.json", "eval.json"):
        (tmp_path / name).write_text((RESULTS / name).read_text())
    run = json.loads((tmp_path / "run.json").read_text())
    run["table"] = run["table"].replace("MAML-TRPO", "MAML-TRP0")
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="different runs"):
        tables.demo_block(tmp_path)

"""The ``include`` README block: tables copied from a markdown file a script wrote to results/."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts/readme_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SUMMARY = """# GPU check

- date: today

| training | rc |
| --- | --- |
| a | 0 |

| meta-iterations/s | CUDA |
| --- | --- |
| a | 2.5 |
| b | 30 |

trailing text
"""


def test_the_named_tables_are_copied_whole_and_the_file_is_linked(tmp_path):
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "summary.md").write_text(SUMMARY)
    spec = {"kind": "include", "runs": [], "file": "gpu/summary.md"}
    spec["tables"] = ["| meta-iterations/s", "| training"]
    block = _tables().result_block("gpu-check", tmp_path, {}, spec).splitlines()
    assert block[0] == "<!-- results:gpu-check:begin -->"
    assert block[-1] == "<!-- results:gpu-check:end -->"
    body = block[2:-1]
    assert body[:4] == [
        "| meta-iterations/s | CUDA |",
        "| --- | --- |",
        "| a | 2.5 |",
        "| b | 30 |",
    ]
    assert body[4:8] == ["", "| training | rc |", "| --- | --- |", "| a | 0 |"]
    assert "trailing text" not in body and "- date: today" not in body
    assert body[-1] == "From [`results/gpu/summary.md`](results/gpu/summary.md)."


def test_a_missing_table_or_file_is_an_error(tmp_path):
    (tmp_path / "summary.md").write_text(SUMMARY)
    tables = _tables()
    spec = {"kind": "include", "runs": [], "file": "summary.md", "tables": ["| speed"]}
    with pytest.raises(ValueError, match="no table starting with '| speed'"):
        tables.result_block("x", tmp_path, {}, spec)
    with pytest.raises(FileNotFoundError):
        tables.result_block("x", tmp_path, {}, {**spec, "file": "gone.md"})

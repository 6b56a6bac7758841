"""scripts/slim_tree.py: removes the committed results but the kept ones, refuses with changes,
and --restore brings every file back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.scripts import load_script


def _module():
    return load_script("slim_tree")


def _repo(tmp_path: Path) -> Path:
    files = {
        "README.md": "x",
        "results/reproduce.yaml": "runs: {}",
        "results/a/checkpoint.pt": "a" * 1000,
        "results/keep/checkpoint.pt": "k" * 100,
        "runs-in-progress/gpu_plan.txt": "plan",
        "runs-in-progress/r/checkpoint.pt": "r" * 500,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "files"], cwd=tmp_path, check=True)
    return tmp_path


def test_slim_keeps_what_a_call_needs_and_restore_brings_the_rest_back(tmp_path, capsys):
    slim_tree = _module()
    root = _repo(tmp_path)
    assert slim_tree.tree_bytes(root, slimmed=True) == 1 + len("runs: {}") + 4  # no --keep
    assert slim_tree.main(["--root", str(root), "--keep", "results/keep"]) == 0
    assert "removed 2 committed files" in capsys.readouterr().out
    left = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    assert left == [
        "README.md",
        "results/keep/checkpoint.pt",
        "results/reproduce.yaml",
        "runs-in-progress/gpu_plan.txt",
    ]
    assert slim_tree.tree_bytes(root) == 1 + 100 + len("runs: {}") + 4
    assert slim_tree.main(["--root", str(root), "--restore"]) == 0
    assert (root / "results/a/checkpoint.pt").read_text() == "a" * 1000
    assert (root / "runs-in-progress/r/checkpoint.pt").is_file()


def test_slim_refuses_with_uncommitted_changes_and_removes_nothing(tmp_path):
    slim_tree = _module()
    root = _repo(tmp_path)
    (root / "results/a/new.json").write_text("{}")
    with pytest.raises(SystemExit, match="uncommitted changes"):
        slim_tree.main(["--root", str(root)])
    assert (root / "results/a/checkpoint.pt").is_file()

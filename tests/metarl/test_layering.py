"""Dependencies point one way: scripts/CLI -> algorithms -> core -> envs.

Checked on the source with ``ast``: the core never imports an algorithm, envs never import
metarl (and the RL part of envs never imports torch), and algorithm families import each other
only through what a family shares with its own learners.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Which algorithm modules an algorithm module may import (a family's own parts, the registry).
ALLOWED = {
    "__init__": {"registry", "supervised", "maml_rl_eval", "rl2"},  # the last two: type checks
    "supervised": {"registry", "supervised_checks", "supervised_config"},
    "supervised_checks": {"supervised_config", "registry"},
    "supervised_config": {"supervised_checks"},
    "maml": {"supervised", "adapted_loss"},
    "reptile": {"supervised"},
    "imaml": {"supervised"},
    "cavia": {"supervised", "adapted_loss"},
    "alphamaml": {"supervised", "adapted_loss"},
    "metalstm": {"supervised", "adapted_loss"},
    "protonet": {"supervised", "metric_common"},
    "matching": {"supervised", "metric_common"},
    "relation": {"supervised", "metric_common"},
    "closed_form": {"supervised", "metric_common"},
    "siamese": {"supervised", "metric_common"},
    "adapted_loss": {"supervised"},
    "metric_common": {"supervised"},
    "blackbox_common": {"supervised"},
    "mann": {"blackbox_common", "supervised_config"},
    "snail": {"blackbox_common", "supervised_config"},
    "maml_rl": {"maml_rl_config", "maml_rl_inner"},
    "maml_rl_inner": {"maml_rl_config"},
    "maml_rl_config": set(),
    "maml_rl_eval": {"maml_rl", "maml_rl_config"},
    "rl2": {"rl2_config", "rl2_update"},
    "rl2_update": {"rl2_config"},
    "rl2_config": set(),
    "registry": set(),
}


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_core_never_imports_an_algorithm():
    entry = {"cli.py", "__main__.py"}
    core = [p for p in (ROOT / "metarl").rglob("*.py") if "algorithms" not in p.parts]
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in core
        if p.name not in entry
        for name in _imports(p)
        if name.startswith("metarl.algorithms")
    ]
    assert offenders == []


def test_envs_never_import_metarl_and_rl_envs_never_import_torch():
    offenders = []
    for p in (ROOT / "envs").rglob("*.py"):
        names = set(_imports(p))
        if any(n.split(".")[0] == "metarl" for n in names):
            offenders.append(f"{p.relative_to(ROOT)} imports metarl")
        if "supervised" not in p.parts and any(n.split(".")[0] == "torch" for n in names):
            offenders.append(f"{p.relative_to(ROOT)} imports torch")
    assert offenders == []


def test_algorithm_families_import_each_other_only_through_what_they_share():
    directory = ROOT / "metarl" / "algorithms"
    assert {p.stem for p in directory.glob("*.py")} == set(ALLOWED), "update ALLOWED"
    offenders = []
    for p in directory.glob("*.py"):
        used = {
            name.split(".")[2]
            for name in _imports(p)
            if name.startswith("metarl.algorithms.") and name.split(".")[2] in ALLOWED
        }
        if not used <= ALLOWED[p.stem]:
            offenders.append(f"{p.name} imports {sorted(used - ALLOWED[p.stem])}")
    assert offenders == []


def test_the_trial_evaluation_names_no_task_family():
    """Classic baselines are looked up by task type (metarl.rl.classic), not imported by family."""
    names = set(_imports(ROOT / "metarl" / "rl" / "trials.py"))
    assert not [n for n in names if n.startswith("envs.light")]
    core = [p for p in (ROOT / "metarl").rglob("*.py") if p.stem not in _FAMILY_BASELINES]
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in core
        for name in _imports(p)
        if name.startswith("envs.light")
    ]
    assert offenders == []


_FAMILY_BASELINES = {"classic_bandit", "classic_mdp"}
"""The only metarl modules that import a task family of envs.light: its classic baselines."""

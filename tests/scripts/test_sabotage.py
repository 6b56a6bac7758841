"""scripts/sabotage.py: every sabotage names a patch target that exists and tests that exist.

Running the sabotages is ``make test``'s last step (``python scripts/sabotage.py``); this only
checks the registry, fast, so a refactor that moves a target fails here with the sabotage's name.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sabotage_module():
    spec = importlib.util.spec_from_file_location("sabotage", ROOT / "scripts" / "sabotage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sabotage", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SABOTAGE = _sabotage_module()


def test_names_are_unique_and_every_learner_family_has_one():
    names = [s.name for s in SABOTAGE.SABOTAGES]
    assert len(names) == len(set(names))
    targets = " ".join(s.target for s in SABOTAGE.SABOTAGES)
    for module in ("algorithms.maml:", "algorithms.maml_rl:", "supervised:", "envs.vector:"):
        assert module in targets


@pytest.mark.parametrize("sabotage", SABOTAGE.SABOTAGES, ids=lambda s: s.name)
def test_target_exists_and_the_patch_applies(sabotage):
    owner, attr, original = SABOTAGE.resolve(sabotage.target)
    assert callable(original)
    patched = sabotage.patch(original)
    assert patched is not original
    paths = [t.split("::")[0] for t in sabotage.tests if not t.startswith("-")]
    assert paths and all((ROOT / p).exists() for p in paths if p.endswith(".py")), paths


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("metarl.algorithms.maml:MAMLLearner.no_such_method", "'no_such_method' does not exist"),
        ("metarl.algorithms.maml:NoSuchClass.__init__", "has no 'NoSuchClass'"),
        ("metarl.no_such_module:thing", "does not import"),
        ("metarl.algorithms.maml", "not of the form"),
    ],
)
def test_a_missing_target_is_a_clear_error(target, message):
    with pytest.raises(SABOTAGE.TargetMissing, match=message):
        SABOTAGE.resolve(target)

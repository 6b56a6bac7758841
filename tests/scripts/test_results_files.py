"""The committed result files stay usable: every run's config loads with the current code."""

from pathlib import Path

import pytest

from metarl.algorithms import experiment_kind
from metarl.config import load_config, load_yaml
from metarl.config_renames import migrate_config
from tests.helpers.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "results").glob("*/config.yaml"))


def test_there_are_committed_runs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_a_committed_run_config_loads_with_the_current_keys(path):
    kind = experiment_kind(path)
    data, _ = migrate_config(kind.CONFIG_CLASS, load_yaml(path.read_text(encoding="utf-8")))
    cfg = load_config(kind.CONFIG_CLASS, data)
    assert cfg.algo.name == load_yaml(path.read_text(encoding="utf-8"))["algo"]["name"]


def test_every_checkpoint_a_row_starts_from_is_committed():
    """A row that continues another's training (``--init-from``) can be rerun from a clone."""
    reproduce = load_script("reproduce")
    starts = reproduce.init_checkpoints(reproduce.tables.load_manifest(ROOT / "results"))
    assert len(starts) >= 4  # the bandit second stages
    missing = sorted(p for p in starts if not (ROOT / p).is_file())
    assert not missing, f"rows start from checkpoints that are not committed: {missing}"

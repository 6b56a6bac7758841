"""Every supervised YAML under configs/ loads into SupervisedConfig and names a known learner."""

from pathlib import Path

import pytest

from metarl.algorithms import supervised_learners
from metarl.algorithms.supervised import SupervisedConfig
from metarl.config import load_config, load_yaml

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
PATHS = sorted(CONFIGS.glob("**/*.yaml"))


def _algo_name(path: Path) -> str:
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    return (data.get("algo") or {}).get("name", "maml")  # SupervisedConfig's default learner


def test_there_are_configs():
    assert len(PATHS) >= 10


@pytest.mark.parametrize("path", PATHS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_supervised_config_loads(path):
    if _algo_name(path) not in supervised_learners():
        pytest.skip(f"algo.name={_algo_name(path)!r} is not a supervised learner")
    cfg = load_config(SupervisedConfig, path)
    assert cfg.algo.name == _algo_name(path)
    assert cfg.run.run_dir.endswith(f"{cfg.algo.name}-{path.stem}")

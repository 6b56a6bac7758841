"""Data-parallel meta-RL: one update over two gloo ranks equals the one-process update.

Each case builds its experiment from a shipped config (shrunk) in every rank, with the vector env
of that rank's tasks or trials only, runs one ``update`` and compares the parameters and the
``train/`` metrics with the same update in this process (one rank, the whole batch). The world
size may change only the order of float32 sums, so the tolerance is relative 1e-5. Both ranks
must also end with bitwise equal parameters (they take the same steps from the same sums).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from metarl import distributed
from metarl.algorithms import maml_rl, rl2
from metarl.config import load_config
from metarl.rl.parallel import owned
from tests.helpers.gloo import free_port, rank_env

ROOT = Path(__file__).resolve().parents[2]

MAML_SMALL = [
    "env.horizon=8",
    "env.meta_batch_size=3",  # 2 + 1 tasks: uneven shards
    "env.episodes_per_task=2",
    "policy.hidden=[8]",
]
# With the shipped damping (1e-5) the KL Hessian of these tiny batches is near singular and CG's
# last iterations run on float32 noise: changing only the order of the sums (grad and HVPs agree
# to ~1e-7) moves TRPO's 10-iteration CG step by 1e-3..1e-1. Damping 1 keeps CG well-posed, so
# what is compared is the data-parallel reduction, not CG's amplification of rounding.
WELL_POSED = ["trpo.cg_damping=1.0"]
RL2_PPO_SMALL = [
    "env.episodes_per_trial=4",
    "env.num_trials=5",  # 3 + 2 trials; minibatches straddle the ranks
    "policy.hidden_size=8",
    "ppo.epochs=2",
    "algo.num_minibatches=2",
]

CASES: dict[str, tuple[str, str, list[str]]] = {
    "maml_trpo": (
        "maml_rl",
        "configs/maml_trpo/navigation2d.yaml",
        [*MAML_SMALL, *WELL_POSED],
    ),
    "maml_trpo_gauss_newton": (  # every rank's Gauss-Newton products summed, like the HVPs
        "maml_rl",
        "configs/maml_trpo/navigation2d.yaml",
        [*MAML_SMALL, *WELL_POSED, "trpo.fvp=gauss_newton"],
    ),
    "promp": (
        "maml_rl",
        "configs/promp/halfcheetah_vel.yaml",
        [*MAML_SMALL, "ppo.epochs=2"],
    ),
    "maml_ppo": (
        "maml_rl",
        "configs/maml_ppo/halfcheetah_vel.yaml",
        [*MAML_SMALL, "ppo.epochs=2"],
    ),
    "rl2_ppo": ("rl2", "configs/rl2/bandit_k5_n10.yaml", RL2_PPO_SMALL),
    "rl2_ppo_normalized_rewards": (  # the return statistics of every rank's trials
        "rl2",
        "configs/rl2/bandit_k5_n10.yaml",
        [*RL2_PPO_SMALL, "algo.normalize_rewards=true"],
    ),
    "rl2_trpo": (
        "rl2",
        "configs/rl2/bandit_k5_n10_trpo.yaml",
        ["env.episodes_per_trial=4", "env.num_trials=5", "policy.hidden_size=8", *WELL_POSED],
    ),
}


def _update(name: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One update of case ``name`` in this process's world; parameters and train metrics."""
    family, path, overrides = CASES[name]
    module: Any = maml_rl if family == "maml_rl" else rl2
    cfg = load_config(module.CONFIG_CLASS, ROOT / path, [*overrides, "run.seed=3"])
    cpu = torch.device("cpu")
    if family == "maml_rl":
        n = len(owned(cfg.env.meta_batch_size, "env.meta_batch_size"))
        vec = maml_rl.make_env(cfg, n, cfg.env.episodes_per_task)
        policy = maml_rl.build_policy(cfg.policy, vec, torch.Generator().manual_seed(3), cpu)
        exp: Any = maml_rl.MAMLRLExperiment(cfg, policy, maml_rl.init_params(policy), vec, cpu)
    else:
        vec = rl2.make_env(cfg, len(owned(cfg.env.num_trials, "env.num_trials")))
        policy = rl2.build_policy(cfg.policy, vec, torch.Generator().manual_seed(3), cpu)
        exp = rl2.RL2Experiment(cfg, policy, rl2.init_params(policy), vec, cpu)
    try:
        metrics = exp.update(0)
    finally:
        vec.close()
    params = {k: v.detach().clone() for k, v in exp.params.items()}
    return params, {k: float(v) for k, v in metrics.items() if k.startswith("train/")}


def _worker(rank: int, port: int, out: Any) -> None:  # pragma: no cover - runs in a child
    rank_env(rank, port)
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"), timeout_s=60)
    try:
        for name in CASES:
            params, metrics = _update(name)
            out[f"{name}/{rank}"] = (params, metrics)
        distributed.finish_rank()  # exits; tearing gloo down can abort the peer
    finally:
        distributed.shutdown()  # only after an error


@pytest.fixture(scope="module")
def two_ranks() -> dict[str, Any]:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(free_port(), out), nprocs=2, join=True)
        return dict(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_update_on_two_ranks_equals_one_rank(two_ranks: dict[str, Any], name: str) -> None:
    params, metrics = _update(name)
    (p0, m0), (p1, _) = two_ranks[f"{name}/0"], two_ranks[f"{name}/1"]
    torch.testing.assert_close(p0, p1, rtol=0, atol=0)  # the ranks stay in lockstep
    changed = any(not torch.equal(params[k], v) for k, v in p0.items())
    assert changed or name.endswith("trpo")  # PPO steps always move θ
    torch.testing.assert_close(p0, params, rtol=1e-5, atol=1e-6)
    assert m0.keys() == metrics.keys()
    for key, value in metrics.items():
        assert m0[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_meta_batch_smaller_than_the_world_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(distributed, "_WORLD", distributed.World(rank=1, size=4))
    with pytest.raises(ValueError, match="env.num_trials=3 is smaller than the 4 ranks"):
        owned(3, "env.num_trials")

"""scripts/rl2_mdp_probe.py: its reference agents, the state-swap measure, a tiny run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.light.tabular_mdp import TabularMDPEngine, TabularMDPTaskDistribution
from tests.helpers.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def probe():
    return load_script("rl2_mdp_probe")


def _tasks(n, seed=0):
    return TabularMDPTaskDistribution().sample(n, np.random.default_rng(seed))


def test_the_myopic_agent_is_the_imitation_scripts_myopic_expert(probe):
    imitation = load_script("rl2_imitation")
    tasks = _tasks(8)
    out = probe.probe_trials(
        TabularMDPEngine(8), tasks, 4, 10, np.random.default_rng(3), None, None, "myopic"
    )
    _, _, expected, _ = imitation.run_trials(
        TabularMDPEngine(8), tasks, 4, 10, "myopic", np.random.default_rng(3)
    )
    np.testing.assert_allclose(out["returns"], expected, rtol=0, atol=1e-12)


def test_the_pooled_agent_sums_over_states_and_never_changes_with_the_state(probe):
    visits = np.zeros((1, 2, 3))
    sums = np.zeros((1, 2, 3))
    visits[0, 0, 0], sums[0, 0, 0] = 1, 3.0  # state 0, action 0: reward 3
    visits[0, 1, 0], sums[0, 1, 0] = 2, -4.0  # state 1, action 0: rewards summing to -4
    visits[0, 1, 2], sums[0, 1, 2] = 1, 2.0  # state 1, action 2: reward 2
    q = probe.agent_q("pooled", visits, sums)
    np.testing.assert_allclose(q[0, 0], [(1 - 1) / 4, 1.0, (1 + 2) / 2])
    np.testing.assert_allclose(q[0, 1], q[0, 0])
    np.testing.assert_allclose(probe.agent_q("myopic", visits, sums)[0, 1], [-3 / 3, 1.0, 3 / 2])
    tasks = _tasks(6, seed=1)
    out = probe.probe_trials(
        TabularMDPEngine(6), tasks, 3, 10, np.random.default_rng(0), None, None, "pooled"
    )
    assert out["state_change"]["pooled"] == 0.0 and out["state_change"]["myopic"] > 0.0


def _policy(probe, blind: bool):
    from metarl.algorithms import rl2
    from metarl.config import load_config

    cfg = load_config(
        rl2.CONFIG_CLASS, ROOT / "configs/rl2/tabular_mdp_n10.yaml", ["policy.hidden_size=8"]
    )
    vec = rl2.make_env(cfg, 2)
    policy = rl2.build_policy(
        cfg.policy, vec, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    vec.close()
    params = {k: v.detach().clone() for k, v in rl2.init_params(policy).items()}
    weight = params["gru.weight_ih_l0"]
    weight[:, :10] = (
        0.0
        if blind
        else 5.0 * torch.randn(weight.shape[0], 10, generator=torch.Generator().manual_seed(1))
    )
    params["pi.head.weight"] = torch.randn(
        params["pi.head.weight"].shape, generator=torch.Generator().manual_seed(2)
    )
    return policy, params


def test_a_policy_blind_to_the_state_has_no_state_dependence_and_one_that_reads_it_has_some(probe):
    tasks = _tasks(5, seed=2)
    runs = {}
    for blind in (True, False):
        policy, params = _policy(probe, blind)
        runs[blind] = probe.probe_trials(
            TabularMDPEngine(5),
            tasks,
            2,
            10,
            np.random.default_rng(0),
            policy,
            params,
            "rl2",
            torch.Generator().manual_seed(0),
        )
    assert runs[True]["state_tv"] < 1e-7 and runs[False]["state_tv"] > 0.05
    assert runs[True]["memory_tv"] > 0.0  # it still reads its memory
    assert all(1 / 5 <= run["confidence"] <= 1 for run in runs.values())
    for run in runs.values():
        assert run["returns"].shape == (5, 2)
        assert all(0.0 <= v <= 1.0 for v in run["agree"].values())


def test_a_tiny_run_writes_the_table_and_its_file(tmp_path):
    run = tmp_path / "run"
    train = [
        sys.executable,
        "-m",
        "metarl",
        "train",
        "configs/rl2/tabular_mdp_n10.yaml",
        "--run-dir",
        str(run),
    ]
    for s in (
        "optim.iterations=1",
        "env.num_trials=4",
        "policy.hidden_size=8",
        "run.num_eval_tasks=3",
        "run.progress=false",
        "run.log_backends=[csv]",
    ):
        train += ["--set", s]
    assert subprocess.run(train, cwd=ROOT, capture_output=True).returncode == 0
    out = tmp_path / "probe"
    args = [
        sys.executable,
        "scripts/rl2_mdp_probe.py",
        "--run",
        str(run),
        "--eval-tasks",
        "20",
        "--out",
        str(out),
    ]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "probe.json").read_text())
    assert result["eval_tasks"] == 20 and result["checkpoint"] == "checkpoint_00000001.pt"
    assert result["pooled"]["state_change"] == 0.0
    assert (out / "probe.md").read_text().startswith("| actor |")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "no checkpoint"),
        (lambda d: (d / "x.pt").write_bytes(b""), "config.yaml"),
    ],
)
def test_bad_arguments_are_one_clear_line_before_any_work(probe, tmp_path, capsys, make, message):
    run = tmp_path / "run"
    run.mkdir()
    make(run)
    with pytest.raises(SystemExit):
        probe.main(["--run", str(run), "--out", str(tmp_path / "out")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_that_is_not_a_tabular_mdp_is_refused(probe, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "x.pt").write_bytes(b"")
    (run / "config.yaml").write_text((ROOT / "configs/rl2/bandit_k5_n10.yaml").read_text())
    with pytest.raises(SystemExit):
        probe.main(["--run", str(run), "--out", str(tmp_path / "out")])
    assert "is not a tabular-MDP run" in capsys.readouterr().err

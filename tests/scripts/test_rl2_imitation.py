"""scripts/rl2_imitation.py: its experts, the GRU inputs it builds, and one tiny run end to end."""

import json

import numpy as np
import pytest
import torch

from envs.light.tabular_mdp import TabularMDPEngine, TabularMDPTaskDistribution
from metarl.rl.classic_mdp import _plan_greedy, _run_mdp_trial
from tests.helpers.scripts import load_script


def _tasks(n, seed=0):
    return TabularMDPTaskDistribution().sample(n, np.random.default_rng(seed))


def test_the_greedy_expert_is_the_eval_files_greedy_baseline():
    imitation = load_script("rl2_imitation")
    tasks = _tasks(6)
    _, _, returns, _ = imitation.run_trials(
        TabularMDPEngine(6), tasks, 3, 10, "greedy", np.random.default_rng(5)
    )
    engine = TabularMDPEngine(6)
    engine.set_tasks(tasks)
    expected = _run_mdp_trial(engine, 3, 10, _plan_greedy, np.random.default_rng(5))
    np.testing.assert_allclose(returns, expected, rtol=0, atol=1e-12)


def test_the_myopic_expert_takes_the_best_posterior_mean_and_ties_go_to_the_lowest_index():
    imitation = load_script("rl2_imitation")
    visits = np.zeros((1, 2, 3))
    sums = np.zeros((1, 2, 3))
    visits[0, 0] = [1, 0, 3]  # state 0: action 0 seen once (reward 3), action 2 thrice (sum 0.5)
    sums[0, 0] = [3.0, 0.0, 0.5]
    q = imitation.expert_q("myopic", visits, sums, np.zeros((1, 2, 3, 2)), horizon=4)
    assert q.shape == (1, 4, 2, 3)
    np.testing.assert_allclose(q[0, 2, 0], [(1 + 3) / 2, 1.0, (1 + 0.5) / 4])
    assert np.argmax(q[0, 0, 0]) == 0 and np.argmax(q[0, 0, 1]) == 0  # state 1: all prior, a tie


def test_inputs_hold_the_state_and_the_previous_action_reward_and_episode_end():
    imitation = load_script("rl2_imitation")
    tasks = _tasks(4, seed=1)
    x, labels, returns, values = imitation.run_trials(
        TabularMDPEngine(4), tasks, 2, 3, "myopic", np.random.default_rng(2)
    )
    states, actions = 10, 5
    assert x.shape == (4, 6, states + actions + 2) and labels.shape == (4, 6)
    assert values.shape == (4, 6, actions)
    assert (values.argmax(-1) == labels).all()  # the label is the best value's action
    # episode 1 acts on the prior mean 1 everywhere; episode 2 on the posterior means of the
    # state it is in, from episode 1's (state, action, reward) steps
    assert (values[:, :3] == 1).all()
    state = x[:, :, :states].argmax(-1)
    for row in range(4):
        visits, sums = np.zeros((states, actions)), np.zeros((states, actions))
        for t in range(3):
            reward = float(x[row, t + 1, states + actions])
            visits[state[row, t], labels[row, t]] += 1
            sums[state[row, t], labels[row, t]] += reward
        for t in range(3, 6):
            expected = (1.0 + sums[state[row, t]]) / (1.0 + visits[state[row, t]])
            np.testing.assert_allclose(values[row, t].double(), expected, rtol=1e-6)
    assert (x[:, :, :states].sum(-1) == 1).all()  # one-hot state at every step
    assert (x[:, [0, 3], 0] == 1).all()  # every episode starts in state 0
    assert (x[:, 0, states:] == 0).all()  # nothing before a trial's first step
    prev_actions = x[:, 1:, states : states + actions].argmax(-1)
    assert (prev_actions == labels[:, :-1]).all()  # beta = 1: the expert acted
    done = x[:, :, -1]
    assert done[:, 3].eq(1).all() and done[:, [1, 2, 4, 5]].eq(0).all()
    # the previous rewards of steps 1-3 are the rewards of episode 1
    np.testing.assert_allclose(x[:, 1:4, states + actions].double().sum(1), returns[:, 0], 1e-5)


def test_a_tiny_run_writes_the_expert_training_rows_and_held_out_returns(tmp_path):
    imitation = load_script("rl2_imitation")
    argv = ["--iterations", "3", "--trials", "4", "--eval-every", "2", "--eval-tasks", "6"]
    assert imitation.main([*argv, "--dagger-iterations", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "imitation.json").read_text())
    assert result["expert"] == "myopic" and result["eval_tasks"] == 6
    assert [row["iteration"] for row in result["heldout"]] == [2, 3]
    assert [row["beta"] for row in result["training"]] == [1.0, 0.0]
    assert len(result["expert_heldout"]["per_episode"]) == 10
    assert result["commit"] and result["wall_clock_seconds"] >= 0
    # a run folder the probe reads: the config and the trained policy's parameters
    assert (tmp_path / "config.yaml").is_file()
    probe = load_script("rl2_mdp_probe")
    assert (
        probe.main(["--run", str(tmp_path), "--eval-tasks", "4", "--out", str(tmp_path / "p")]) == 0
    )
    assert json.loads((tmp_path / "p" / "probe.json").read_text())["checkpoint"] == (
        "imitation_policy.pt"
    )
    columns = result["runs"]["rl2-tabular_mdp_n10"]  # what the README's MDP table adds
    assert columns["imitation"]["mean"] == result["heldout"][-1]["mean"]
    assert columns["myopic"]["mean"] == result["expert_heldout"]["mean"]


def test_a_multiplicative_readout_is_trained_and_probed(tmp_path):
    imitation = load_script("rl2_imitation")
    argv = ["--iterations", "3", "--trials", "4", "--eval-every", "3", "--eval-tasks", "4"]
    argv += ["--set", "policy.readout=multiplicative", "--out", str(tmp_path)]
    assert imitation.main(argv) == 0
    saved = torch.load(tmp_path / "imitation_policy.pt", weights_only=True)
    assert float(saved["params"]["pi_obs.weight"].abs().max()) > 0  # moved off its zero init
    probe = load_script("rl2_mdp_probe")
    assert (
        probe.main(["--run", str(tmp_path), "--eval-tasks", "4", "--out", str(tmp_path / "p")]) == 0
    )


@pytest.mark.parametrize(
    "extra", [[], ["--aux-head"], ["--aux-head", "--aux-target", "reward"]], ids=str
)
def test_the_value_loss_pulls_the_logits_or_an_aux_head_onto_its_target(tmp_path, extra):
    imitation = load_script("rl2_imitation")
    errors = {}
    for weight in (0.0, 5.0):
        out = tmp_path / str(weight)
        argv = ["--iterations", "15", "--trials", "8", "--eval-every", "15", "--eval-tasks", "2"]
        argv += ["--value-weight", str(weight), "--value-scale", "1", "--dagger-iterations", "0"]
        assert imitation.main([*argv, *extra, "--out", str(out)]) == 0
        rows = json.loads((out / "imitation.json").read_text())["training"]
        errors[weight] = [rows[0]["value_error"], rows[-1]["value_error"]]
    # with the value term the error of the logits (or the aux head) against its target (the
    # expert's values, or the reward the taken action got, whose noise keeps that error above
    # 1) falls, and ends well under where training without it leaves it
    first, last = errors[5.0]
    assert last < first
    assert last < 0.8 * errors[0.0][1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--value-scale", "0"], "--value-scale > 0"),
        (["--value-weight", "-1"], "--value-weight must be >= 0"),
        (["--aux-target", "reward"], "--aux-target applies to --aux-head only"),
        (["--lr", "0"], "--lr > 0"),
        (["--config", "configs/rl2/bandit_k5_n10.yaml"], "is not a tabular-MDP config"),
        (["--set", "policy.hidden_sise=8"], "hidden_sise"),
        (["--config", "configs/rl2/nope.yaml"], "nope.yaml"),
    ],
)
def test_bad_arguments_are_one_clear_line_before_any_work(tmp_path, capsys, args, message):
    imitation = load_script("rl2_imitation")
    with pytest.raises(SystemExit):
        imitation.main([*args, "--out", str(tmp_path / "out")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_default_settings_reproduce_the_committed_imitation_runs(tmp_path):
    # values written by this script at commit ce24979, before the value-loss options existed
    # (whose extra head must not draw from the generator the policy samples with)
    imitation = load_script("rl2_imitation")
    argv = ["--iterations", "60", "--trials", "8", "--eval-every", "60", "--eval-tasks", "10"]
    assert imitation.main([*argv, "--dagger-iterations", "20", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "imitation.json").read_text())
    last = result["training"][-1]
    assert last["loss"] == pytest.approx(1.353256106376648, rel=1e-6)
    assert last["rollout_return"] == pytest.approx(110.7006592930367, rel=1e-9)
    assert result["heldout"][-1]["mean"] == pytest.approx(88.2507553100586, rel=1e-6)

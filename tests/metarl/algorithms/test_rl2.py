"""RL² (rl2_ppo, rl2_trpo): truncated BPTT, the updates, learning, resume, configs and the CLI."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from metarl.algorithms import experiment_kind
from metarl.algorithms import rl2 as R
from metarl.algorithms import rl2_update as U
from metarl.algorithms.rl2 import (
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    OptimConfig,
    PolicyConfig,
    RL2Config,
)
from metarl.algorithms.rl2_config import PPOConfig, TRPOConfig
from metarl.cli import main as cli_main
from metarl.config import ConfigError, RunConfig, load_config, undocumented_fields
from metarl.rl.policies import PolicyOutput
from metarl.rl.recurrent import RecurrentOutput, RecurrentPolicy, recurrent_forward
from metarl.rl.trials import (
    TrialChunks,
    chunk_forward,
    chunk_trials,
    sample_trials,
    to_chunks,
    trial_gae,
)
from metarl.rl.trpo import flat_grad
from metarl.runs import IncompatibleResumeError, NonFiniteLossError, check_resume, open_run

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "configs" / "rl2").glob("*.yaml"))
CPU = torch.device("cpu")
F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# truncated BPTT on a tiny float64 problem
# ----------------------------------------------------------------------------------------------


def _tiny(length=6, trials=2, chunk_len=2, seed=0):
    """A Gaussian GRU policy, synthetic trials [N, L] and their chunks with stored states."""
    policy = RecurrentPolicy(
        3, act_dim=2, hidden_size=3, init_std=0.8, generator=torch.Generator().manual_seed(0)
    ).double()
    params = {k: v.detach().clone().requires_grad_() for k, v in policy.named_parameters()}
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(trials, length, policy.input_size, generator=g, dtype=F64)
    actions = torch.randn(trials, length, 2, generator=g, dtype=F64)
    adv = torch.randn(trials, length, generator=g, dtype=F64)
    returns = torch.randn(trials, length, generator=g, dtype=F64)
    mask = torch.ones(trials, length, dtype=F64)
    mask[0, 2] = 0.0  # an early termination inside trial 0
    h0 = policy.initial_state(trials).double()
    with torch.no_grad():  # the sampler's log-probs, and its states at every step
        full = recurrent_forward(policy, params, inputs, h0, mask=mask, method="loop")
        logp = policy.log_prob(full.dist, actions)
        states = _states(policy, params, inputs, h0, mask)
    starts = torch.arange(0, length, chunk_len)
    chunks = TrialChunks(
        *(to_chunks(x, chunk_len) for x in (inputs, actions, logp, adv, returns, mask)),
        states[:, starts],
    )
    return policy, params, chunks, (inputs, actions, logp, adv, returns, mask, h0)


def _states(policy, params, inputs, h0, mask):
    """The state before every step, ``[N, L, S]``, by running prefixes."""
    out = [h0]
    for t in range(1, inputs.shape[1]):
        prefix = recurrent_forward(policy, params, inputs[:, :t], h0, mask=mask[:, :t])
        out.append(prefix.h_last)
    return torch.stack(out, dim=1)


def _truncated_twin(policy, params, inputs, h0, mask, chunk_len):
    """Step through each whole trial, detaching the state at every chunk boundary."""
    h, locs, values = h0, [], []
    for start in range(0, inputs.shape[1], chunk_len):
        part = slice(start, start + chunk_len)
        out = recurrent_forward(
            policy, params, inputs[:, part], h.detach(), mask=mask[:, part], method="loop"
        )
        locs.append(out.dist.loc)
        values.append(out.value)
        h = out.h_last
    loc, value = torch.cat(locs, 1), torch.cat(values, 1)
    return loc, value


def _loss_from(policy, params, loc, value, chunks, chunk_len):
    """PPO's loss on outputs laid out [N, L], cut into chunks like ``chunks``."""
    loc = to_chunks(loc, chunk_len).flatten(0, 1)
    value = to_chunks(value, chunk_len).flatten(0, 1)
    log_std = torch.clamp(params["log_std"], min=policy.min_log_std).expand_as(loc)
    out = RecurrentOutput(PolicyOutput(loc, log_std), value, loc.new_zeros(0))
    return R.ppo_loss(policy, out, chunks.flatten(), ALGO).loss


def _chunked_loss(policy, params, chunks):
    flat = chunks.flatten()
    return R.ppo_loss(policy, chunk_forward(policy, params, flat), flat, ALGO)


ALGO = RL2Config(
    algo=AlgoConfig(normalize_advantages=False), ppo=PPOConfig(entropy_coef=0.01, clip_eps=0.2)
)


def test_chunked_bptt_equals_full_trial_backprop_truncated_at_the_chunk_starts():
    policy, params, chunks, (inputs, _, _, _, _, mask, h0) = _tiny(chunk_len=2)
    chunked = _chunked_loss(policy, params, chunks).loss
    loc, value = _truncated_twin(policy, params, inputs, h0, mask, 2)
    twin = _loss_from(policy, params, loc, value, chunks, 2)
    torch.testing.assert_close(chunked, twin, rtol=1e-12, atol=1e-12)  # same forward values...
    grad = flat_grad(chunked, params)
    torch.testing.assert_close(grad, flat_grad(twin, params), rtol=1e-10, atol=1e-12)  # ...grads
    # the stored states make the forward pass exact, and untruncated BPTT through the whole
    # trial has the same loss; its gradient also flows back through the chunk-start states
    full = recurrent_forward(policy, params, inputs, h0, mask=mask)
    untruncated = _loss_from(policy, params, full.dist.loc, full.value, chunks, 2)
    torch.testing.assert_close(untruncated, chunked, rtol=1e-12, atol=1e-12)
    assert (flat_grad(untruncated, params) - grad).abs().max() > 1e-4


def test_one_chunk_per_trial_is_full_bptt_and_matches_finite_differences():
    policy, params, chunks, (inputs, _, _, _, _, mask, h0) = _tiny(chunk_len=6)
    assert chunks.mask.shape[1] == 1
    full = recurrent_forward(policy, params, inputs, h0, mask=mask)
    reference = _loss_from(policy, params, full.dist.loc, full.value, chunks, 6)
    grad = flat_grad(_chunked_loss(policy, params, chunks).loss, params)
    torch.testing.assert_close(grad, flat_grad(reference, params), rtol=1e-10, atol=1e-12)
    names = list(params)

    def loss(*tensors):
        return _chunked_loss(policy, dict(zip(names, tensors, strict=True)), chunks).loss

    leaves = tuple(p.detach().clone().requires_grad_() for p in params.values())
    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("separately", [False, True])
def test_clip_value_separately_keeps_a_large_value_gradient_off_the_policy_step(separately):
    """With one global norm a value loss of size ~100 (γ = 0.99 trial returns) scaled the
    policy's gradient by ~1e-3 on the tabular MDP and the policy stopped moving (approx_kl 0)."""
    policy = RecurrentPolicy(
        3,
        num_actions=4,
        hidden_size=8,
        separate_value=True,
        generator=torch.Generator().manual_seed(0),
    ).double()
    params = {k: v.detach().clone().requires_grad_() for k, v in policy.named_parameters()}
    inputs = torch.randn(2, 5, policy.input_size, generator=torch.Generator().manual_seed(1))
    out = recurrent_forward(policy, params, inputs.double(), policy.initial_state(2).double())
    loss = 0.01 * out.dist.loc.logsumexp(-1).sum() + 1e4 * (out.value - 60.0).pow(2).mean()
    ppo = PPOConfig(clip_value_separately=separately)
    policy_names = R.split_params(policy, params)[0]
    raw = torch.autograd.grad(loss, [params[k] for k in policy_names], retain_graph=True)
    raw_norm = float(torch.sqrt(sum((g**2).sum() for g in raw)))
    assert raw_norm < 0.5  # the policy's own gradient needs no clipping
    optimizer = torch.optim.SGD(list(params.values()), lr=0.0)
    U._adam_step(optimizer, loss, U._clip_groups(policy, params, ppo), 0.5)

    def norm(names):
        return float(torch.sqrt(sum((params[k].grad ** 2).sum() for k in names)))

    value_names = policy.value_parameter_names()
    if separately:
        assert norm(policy_names) == pytest.approx(raw_norm, rel=1e-9)
        assert norm(value_names) == pytest.approx(0.5, rel=1e-6)
    else:
        assert norm(policy_names) < 1e-3 * raw_norm
        assert norm(list(params)) == pytest.approx(0.5, rel=1e-6)


def test_ppo_loss_at_the_sampling_parameters_has_ratio_one():
    policy, params, chunks, _ = _tiny(chunk_len=3)
    terms = _chunked_loss(policy, params, chunks)
    assert abs(float(terms.clip.approx_kl)) < 1e-12 and float(terms.clip.clip_fraction) == 0.0
    valid = chunks.mask != 0
    torch.testing.assert_close(terms.clip.loss, -chunks.advantages[valid].mean())


# ----------------------------------------------------------------------------------------------
# on real trials
# ----------------------------------------------------------------------------------------------


def _cfg(
    iterations=4,
    trials=8,
    episodes=5,
    env_id="metarl/Bandit-K5-v0",
    horizon=1,
    epochs=2,
    trpo=None,
    **algo,
):
    name = algo.get("name", "rl2_ppo")
    return RL2Config(
        env=EnvConfig(id=env_id, horizon=horizon, episodes_per_trial=episodes, num_trials=trials),
        policy=PolicyConfig(hidden_size=16),
        algo=AlgoConfig(**{"num_minibatches": 2, **algo}),
        ppo=PPOConfig(epochs=epochs) if name == "rl2_ppo" else None,
        trpo=trpo,
        optim=OptimConfig(iterations=iterations, lr=1e-2),
        eval=EvalConfig(num_trials=4),
        run=RunConfig(progress=False, checkpoint_every=0, log_backends=("csv",), num_eval_tasks=4),
    )


def _train(cfg, run_dir=None, resume=False):
    vec = R.make_env(cfg, cfg.env.num_trials)
    policy = R.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    try:
        if run_dir is None:
            return policy, R.train(cfg, policy, R.init_params(policy), vec, device=CPU)
        with open_run(run_dir, cfg, resume=resume, log_backends=("csv",)) as run:
            return policy, R.train(cfg, policy, R.init_params(policy), vec, device=CPU, run=run)
    finally:
        vec.close()


def _metric(run_dir, key):
    rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    return np.array([float(r[2]) for r in rows if r[1] == key])


def test_tiny_bandit_run_learns_to_beat_random(tmp_path):
    """5 arms, 10 pulls: random pulls earn 5.0 on average; RL² learns to exploit (greedy 6.6)."""
    cfg = _cfg(iterations=60, trials=128, episodes=10, num_minibatches=4, epochs=4, gamma=0.9)
    cfg = dataclasses.replace(cfg, policy=PolicyConfig(hidden_size=32))
    _train(cfg, tmp_path / "run")  # about 4 s; seeds 0, 1, 2 end at 5.84, 5.96, 6.04
    returns = _metric(tmp_path / "run", "train/trial_return")
    assert len(returns) == 60
    assert returns[:5].mean() < 5.4  # starts out as random
    assert returns[-15:].mean() > 5.6  # over 15 × 128 trials the standard error is about 0.05
    last = _metric(tmp_path / "run", "train/last_episode_return")[-15:].mean()
    first = _metric(tmp_path / "run", "train/first_episode_return")[-15:].mean()
    assert last > first + 0.1  # later pulls pay more: it adapts within the trial


def test_trpo_update_respects_the_kl_bound_and_fits_the_value():
    cfg = _cfg(name="rl2_trpo", trpo=TRPOConfig(max_kl=0.01))
    cfg = dataclasses.replace(cfg, policy=PolicyConfig(hidden_size=16, value_trunk="separate"))
    vec = R.make_env(cfg, cfg.env.num_trials)
    policy = R.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    params = R.init_params(policy)
    tasks = vec.distribution.sample(8, np.random.default_rng(0))
    gen = torch.Generator().manual_seed(0)
    batch = sample_trials(vec, policy, params, tasks, 5, generator=gen, device=CPU, seed=0)
    vec.close()
    gae = trial_gae(batch.rewards, batch.values, batch.mask, 0.99, 0.95)
    chunks = chunk_trials(batch, gae.advantages, gae.returns)
    before = {k: v.detach().clone() for k, v in params.items()}
    opt = R._make_optimizer(cfg, policy, params)
    new, metrics = R.trpo_update(policy, params, opt, chunks, cfg, gen)
    assert metrics["step_frac"] > 0
    flat = chunks.flatten()
    with torch.no_grad():
        old_out = chunk_forward(policy, before, flat)
        new_out = chunk_forward(policy, new, flat)
    old_dist, new_dist = old_out.dist, new_out.dist  # torch's KL, not the one TRPO used
    if old_dist.log_std is None:
        pair = [torch.distributions.Categorical(logits=d.loc) for d in (old_dist, new_dist)]
        per_step = torch.distributions.kl_divergence(*pair)
    else:
        pair = [torch.distributions.Normal(d.loc, d.log_std.exp()) for d in (old_dist, new_dist)]
        per_step = torch.distributions.kl_divergence(*pair).sum(-1)
    kl = (per_step * flat.mask).sum() / flat.mask.sum()
    assert 1e-4 < float(kl) <= cfg.trpo.max_kl * (1 + 1e-3)
    value_names = set(policy.value_parameter_names())
    for name, value in new.items():  # TRPO moved the policy, Adam the value GRU and head
        assert not torch.equal(value, before[name]), name
        assert (value is params[name]) == (name in value_names), name


@pytest.mark.parametrize("name", ["rl2_ppo", "rl2_trpo"])
def test_multiplicative_readout_trains_from_zero_in_both_updates(name):
    """The bilinear head starts at zero (the linear policy) and both updates move it."""
    trpo = TRPOConfig() if name == "rl2_trpo" else None
    cfg = _cfg(2, 6, 2, "metarl/TabularMDP-v0", 3, trpo=trpo, name=name)
    cfg = dataclasses.replace(cfg, policy=PolicyConfig(hidden_size=8, readout="multiplicative"))
    policy, params = _train(cfg)
    assert tuple(policy.pi_obs.weight.shape) == (policy.obs_dim * policy.action_size, 8)
    assert torch.equal(policy.pi_obs.weight, torch.zeros_like(policy.pi_obs.weight))
    assert float(params["pi_obs.weight"].abs().max()) > 1e-4


@pytest.mark.parametrize(
    ("name", "normalize_rewards"), [("rl2_ppo", False), ("rl2_trpo", False), ("rl2_ppo", True)]
)
def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(
    tmp_path, name, normalize_rewards
):
    cfg = _cfg(iterations=4, name=name, bptt_len=2, normalize_rewards=normalize_rewards)
    _, full = _train(cfg, tmp_path / "full")
    half = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, iterations=2))
    _train(half, tmp_path / "split")
    _, resumed = _train(cfg, tmp_path / "split", resume=True)
    for key, value in full.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)
    key = "train/trial_return"
    np.testing.assert_array_equal(_metric(tmp_path / "split", key), _metric(tmp_path / "full", key))
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows if f",{key}," in r] == ["0", "1", "2", "3"]
    if normalize_rewards:  # the running statistics are resumed too, not restarted
        scale = _metric(tmp_path / "split", "train/return_scale")
        np.testing.assert_array_equal(scale, _metric(tmp_path / "full", "train/return_scale"))
        assert len(scale) == 4 and len(set(scale.tolist())) == 4


def test_normalized_rewards_scale_the_update_targets_not_the_policy_inputs():
    cfg = _cfg(iterations=1, normalize_rewards=True)
    vec = R.make_env(cfg, cfg.env.num_trials)
    policy = R.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), CPU)
    exp = R.RL2Experiment(cfg, policy, R.init_params(policy), vec, CPU)
    seen = {}
    real_gae = R.trial_gae

    def spy(rewards, *args):
        seen["rewards"] = rewards
        return real_gae(rewards, *args)

    try:
        R.trial_gae = spy
        metrics = exp.update(0)
    finally:
        R.trial_gae = real_gae
        vec.close()
    scale = float(metrics["train/return_scale"])
    assert scale > 0 and scale != 1.0
    state = exp.state_dict()["reward_scale"]
    assert float(state["count"]) == cfg.env.num_trials * cfg.env.episodes_per_trial
    # the trial return is logged in raw units; the targets were divided by the scale
    raw = float(metrics["train/trial_return"]) * cfg.env.num_trials
    torch.testing.assert_close(float(seen["rewards"].sum()) * scale, raw, rtol=1e-5, atol=1e-5)
    plain = R.RL2Experiment(_cfg(), policy, R.init_params(policy), vec, CPU)
    with pytest.raises(ValueError, match="cannot be switched on in a resumed run"):
        exp.load_state_dict(plain.state_dict())


def test_entropy_schedule_decays_linearly_and_resumes_a_constant_runs_checkpoint(tmp_path):
    ppo = PPOConfig(
        entropy_coef=0.05, entropy_coef_final=0.01, entropy_decay_start=2, entropy_decay_end=4
    )
    coefs = [ppo.entropy_coef_at(i) for i in range(6)]
    assert coefs == pytest.approx([0.05, 0.05, 0.05, 0.03, 0.01, 0.01], abs=1e-12)
    assert PPOConfig(entropy_coef=0.02).entropy_coef_at(10**6) == 0.02  # no schedule: constant
    bad = [
        ({"entropy_coef_final": -0.1, "entropy_decay_end": 3}, "entropy_coef_final must be >= 0"),
        ({"entropy_coef_final": 0.0}, "start 0 and end None"),
        ({"entropy_coef_final": 0.0, "entropy_decay_start": 5, "entropy_decay_end": 5}, "start 5"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            PPOConfig(**kwargs)
    # a constant-weight run checkpointed at the decay's start, resumed with the schedule, is the
    # scheduled run from scratch: same parameters, same metrics rows
    const = _cfg(iterations=2)
    const = dataclasses.replace(const, ppo=PPOConfig(epochs=2, entropy_coef=0.05))
    schedule = {"entropy_coef_final": 0.0, "entropy_decay_start": 2, "entropy_decay_end": 3}
    sched = dataclasses.replace(
        const,
        ppo=dataclasses.replace(const.ppo, **schedule),
        optim=dataclasses.replace(const.optim, iterations=4),
    )
    _, full = _train(sched, tmp_path / "full")
    _train(const, tmp_path / "split")
    _, resumed = _train(sched, tmp_path / "split", resume=True)
    for key, value in full.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)

    def rows(run, skip_coef):
        lines = (tmp_path / run / "metrics.csv").read_text().splitlines()[1:]
        keep = [r.split(",") for r in lines if ",time/" not in r]
        return [r for r in keep if not (skip_coef and r[1] == "train/entropy_coef")]

    assert rows("split", True) == rows("full", True)
    coef = [(int(r[0]), float(r[2])) for r in rows("full", False) if r[1] == "train/entropy_coef"]
    assert coef == [(0, 0.05), (1, 0.05), (2, 0.05), (3, 0.0)]
    assert sum(r[1] == "train/entropy_coef" for r in rows("split", False)) == 2  # 2 and 3
    early = dataclasses.replace(sched, ppo=dataclasses.replace(sched.ppo, entropy_decay_start=1))
    with pytest.raises(IncompatibleResumeError, match="entropy_decay_start: 2 -> 1"):
        check_resume(tmp_path / "split", early)  # would have decayed at an iteration already done
    with pytest.raises(AssertionError):  # the decay changes the run
        _, plain = _train(dataclasses.replace(const, optim=sched.optim), tmp_path / "plain")
        for key, value in full.items():
            torch.testing.assert_close(plain[key], value, rtol=0, atol=0)


def test_non_finite_loss_stops_before_a_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(iterations=2)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, checkpoint_every=1))

    def broken(policy, params, optimizer, chunks, algo, generator):
        return {"policy_loss": torch.tensor(float("nan"))}

    monkeypatch.setattr(R, "ppo_update", broken)
    with pytest.raises(NonFiniteLossError, match="train/policy_loss"):
        _train(cfg, tmp_path / "run")
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


# ----------------------------------------------------------------------------------------------
# configs, evaluation and the command line
# ----------------------------------------------------------------------------------------------


def test_every_rl2_config_loads_with_its_kind_and_a_registered_env():
    assert len(CONFIGS) >= 18 and undocumented_fields(RL2Config) == []
    names = set()
    for path in CONFIGS:
        assert experiment_kind(path) is R
        cfg = load_config(R.CONFIG_CLASS, path)
        names.add(cfg.algo.name)
        # Meta-World ids are registered only with the metaworld extra installed
        if not path.stem.startswith("metaworld_") or cfg.env.id in set(envs.task_env_ids()):
            assert envs.env_info(cfg.env.id)
        assert cfg.run.run_dir == f"runs/{cfg.algo.name}-{path.stem.removesuffix('_trpo')}"
    assert names == {"rl2_ppo", "rl2_trpo"}
    stems = {p.stem for p in CONFIGS}
    assert {f"bandit_k{k}_n{n}" for k in (5, 10, 50) for n in (10, 100, 500)} <= stems
    assert {f"tabular_mdp_n{n}" for n in (10, 25, 50, 100)} <= stems
    assert {"navigation2d", "halfcheetah_vel"} <= stems


def test_bad_configs_and_envs_raise_errors_naming_the_problem():
    path = ROOT / "configs" / "rl2" / "bandit_k5_n10.yaml"
    with pytest.raises(ConfigError, match="algo.bptt_lenn: unknown key.*did you mean"):
        load_config(RL2Config, path, ["algo.bptt_lenn=4"])
    with pytest.raises(ConfigError, match="algo.bptt_len must be > 0"):
        load_config(RL2Config, path, ["algo.bptt_len=0"])
    with pytest.raises(ConfigError, match="algo.ppo_epochs: renamed to ppo.epochs"):
        load_config(RL2Config, path, ["algo.ppo_epochs=2"])
    with pytest.raises(ConfigError, match="algo.max_kl: renamed to trpo.max_kl"):
        load_config(RL2Config, {"algo": {"name": "rl2_trpo", "max_kl": 0.1}})
    with pytest.raises(ConfigError, match="trpo section does not apply to algo.name='rl2_ppo'"):
        load_config(RL2Config, path, ["trpo.max_kl=0.1"])
    with pytest.raises(ConfigError, match="env.episodes_per_trial: expected int"):
        load_config(RL2Config, path, ["env.episodes_per_trial=ten"])
    with pytest.raises(ConfigError, match="policy.value_trunk: expected one of"):
        load_config(RL2Config, path, ["policy.value_trunk=both"])
    with pytest.raises(ConfigError, match="algo.gamma must be in"):
        load_config(RL2Config, path, ["algo.gamma=1.5"])
    with pytest.raises(ConfigError, match="algo.num_minibatches=8 exceeds env.num_trials=4"):
        load_config(RL2Config, path, ["env.num_trials=4", "algo.num_minibatches=8"])
    with pytest.raises(ValueError, match="env.horizon must be set for metarl/Bandit-K5-v0"):
        R.make_env(load_config(RL2Config, path, ["env.horizon=null"]), 2)


def test_cli_trains_evaluates_and_resumes_a_tiny_bandit(tmp_path, capsys):
    run_dir = tmp_path / "run"
    tiny = [
        "env.num_trials=4",
        "env.episodes_per_trial=6",
        "policy.hidden_size=8",
        "algo.num_minibatches=2",
        "ppo.epochs=1",
        "optim.iterations=2",
        "eval.num_trials=3",
        "run.num_eval_tasks=5",
        "run.checkpoint_every=1",
    ]
    sets = [arg for s in tiny for arg in ("--set", s)]
    args = ["train", "configs/rl2/bandit_k5_n10.yaml", "--run-dir", str(run_dir), "--device", "cpu"]
    assert cli_main([*args, *sets]) == 0
    out = capsys.readouterr().out
    assert "episode   6 of the trial" in out and "total return of a trial" in out
    assert "episode 6 minus episode 1, paired on the task: " in out
    assert all(name in out for name in ("rl2", "random", "ucb1", "thompson", "gittins"))
    result = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert result["algorithm"] == "rl2_ppo" and result["steps"] == list(range(6))
    assert len(result["mean"]) == 6 and result["num_tasks"] == 5
    assert {"mean", "ci95"} <= set(result["extra"]["trial_return"]["rl2"])
    assert (run_dir / "eval" / "eval.png").is_file() and (run_dir / "eval" / "eval.csv").is_file()
    # resume: two more iterations continue from the checkpoint of iteration 2
    more = [a if a != "optim.iterations=2" else "optim.iterations=4" for a in sets]
    assert cli_main([*args, "--resume", *more]) == 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))[-1].endswith("04.pt")
    assert cli_main(["eval", str(run_dir), "--num-tasks", "3", "--steps", "4"]) == 0
    result = json.loads((run_dir / "eval" / "eval_test.json").read_text())
    assert result["num_tasks"] == 3 and result["steps"] == [0, 1, 2, 3]


def test_eval_reports_the_classic_baselines_beside_rl2(tmp_path):
    cfg = _cfg(iterations=0, episodes=5)
    _, params = _train(cfg)
    out = R.evaluate(cfg, params, CPU, out=tmp_path / "eval.json", num_tasks=6, seed=1)
    result = json.loads(out.read_text())
    expected = {"random", "ucb1", "thompson", "gittins", "greedy", "epsilon_greedy"}
    expected |= {"bayes_optimal"}  # 5 pulls: the exact Bayes-optimal policy is solved
    assert set(result["baselines"]) == expected
    assert set(result["extra"]["trial_return"]) == expected | {"rl2"}
    # RL² minus each baseline on the same trials: its mean is the difference of the totals
    paired = result["extra"]["trial_return_paired"]
    assert paired["curve"] == "rl2" and set(paired["minus"]) == expected
    totals = result["extra"]["trial_return"]
    gap = totals["rl2"]["mean"] - totals["greedy"]["mean"]
    assert paired["minus"]["greedy"]["mean"] == pytest.approx(gap, abs=1e-6)
    for curve in result["baselines"].values():
        assert len(curve["mean"]) == 5 and curve["num_tasks"] == 6
    mdp = _cfg(iterations=0, episodes=2, env_id="metarl/TabularMDP-v0", horizon=10)
    _, params = _train(mdp)
    out = R.evaluate(mdp, params, CPU, out=tmp_path / "mdp.json", num_tasks=3, seed=1)
    result = json.loads(out.read_text())
    assert {"random", "psrl", "greedy"} <= set(result["baselines"])
    # within each episode: the return of each window of steps, adding up to the episode's
    windows = result["extra"]["return_by_window"]
    assert windows["curve"] == "rl2" and windows["steps_per_window"] == 1
    assert windows["window_starts"] == list(range(10)) and len(windows["mean"]) == 2
    np.testing.assert_allclose(np.sum(windows["mean"], axis=1), result["mean"], rtol=1e-5)
    # episode 2 minus episode 1, paired on the task: its mean is the difference of the means
    rise = result["extra"]["last_minus_first"]
    assert rise["curve"] == "rl2" and rise["episodes"] == [1, 2]
    assert rise["mean"] == pytest.approx(result["mean"][1] - result["mean"][0], abs=1e-5)
    bandit = json.loads((tmp_path / "eval.json").read_text())
    assert "return_by_window" not in bandit["extra"]  # one pull per episode: the curve itself
    assert bandit["extra"]["last_minus_first"]["episodes"] == [1, 5]


def test_the_gap_to_each_baseline_is_paired_on_the_task():
    from metarl.evaluation import minus_baselines

    curves = {  # [tasks, episodes]: trial totals rl2 3, 9, 0; greedy 2, 9, -2
        "rl2": np.array([[1.0, 2.0], [4.0, 5.0], [0.0, 0.0]]),
        "greedy": np.array([[1.0, 1.0], [4.0, 5.0], [-1.0, -1.0]]),
    }
    got = minus_baselines(curves, "rl2")
    # differences 1, 0, 2: mean 1, sample std 1, 95% half-width 1.96 / sqrt(3)
    assert got["curve"] == "rl2" and list(got["minus"]) == ["greedy"]
    assert got["minus"]["greedy"] == {"mean": 1.0, "ci95": pytest.approx(1.1316, abs=1e-4)}


def test_the_rise_within_a_trial_is_paired_on_the_task():
    from metarl.evaluation import paired_difference

    returns = np.array([[1.0, 3.0], [12.0, 12.0], [-5.0, -1.0]])  # tasks differ, rises do not
    rise = paired_difference(returns, "rl2")
    # differences 2, 0, 4: mean 2, sample std 2, 95% half-width 1.96 * 2 / sqrt(3)
    assert rise == {
        "curve": "rl2",
        "episodes": [1, 2],
        "mean": 2.0,
        "ci95": pytest.approx(2.2632, abs=1e-4),
    }
    assert paired_difference(returns[:1], "rl2")["ci95"] is None  # one task: no interval


@pytest.mark.slow
def test_benchmark_script_prints_its_table(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = [sys.executable, "scripts/bench_rl2.py", "--quick", "--rounds", "1", "--iterations", "1"]
    proc = subprocess.run(
        [*args, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| metarl RL² (GRU, PPO) |" in proc.stdout and "ratio RL² / SB3 PPO" in proc.stdout
    assert "| the vector env replaying RL²'s actions (the floor) |" in proc.stdout
    assert "| plain loop, no metarl code: RL² (GRU, PPO) |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["ratio"] > 0 and result["ratio_replay"] > 0
    assert result["ratio_bare_limit"] > 0 and result["ratio_bare"] > 0

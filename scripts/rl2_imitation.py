"""Can RL²'s recurrent policy learn a good tabular-MDP explorer when it is *told* every action?

A diagnostic for the RL² tabular-MDP rows (Duan et al. 2016, §3.2), which level off near 117
(n = 10 episodes) while the greedy agent scores about 149. It trains the same policy (the GRU,
its inputs and its action head, built from the row's config) by supervised imitation with a
label at every step, instead of by policy gradient: DAgger (Ross et al. 2011), rolling out the
learner (the expert's action with a probability that falls from 1 to 0 over the first
``--dagger-iterations``) and labelling each step with the expert's action given the history so
far. The expert is

- ``myopic``: in the current state, the action of highest posterior-mean reward (prior N(1, 1),
  unit noise; ties to the lowest index), no planning; or
- ``greedy``: optimal in the posterior-mean MDP, planned at each episode's start (the greedy
  column of the RL² eval files, :mod:`metarl.rl.classic_mdp`).

Held-out trials are run exactly as ``metarl eval`` runs RL² (:func:`trial_step_rewards`, the
row's held-out MDPs and seed), and the expert is run on the same MDPs. If supervised imitation
with this much more signal levels off where RL² does, the policy's in-context memory, not RL²'s
exploration, is what holds the rows back at these budgets.

``python scripts/rl2_imitation.py --out results/rl2-tabular_mdp_n10-imitation`` (about 20 min on
one core of the 2-core VM). Beside ``imitation.json`` it writes the resolved config and the trained
policy (``imitation_policy.pt``), so that ``scripts/rl2_mdp_probe.py --run OUT`` can probe it.

Denser targets than one label per step: ``--value-weight w`` adds ``w`` times the mean squared
error of the centred logits against ``--value-scale`` times the expert's centred action values
in the current state (logit matching, as in Ba & Caruana 2014's model compression); with
``--aux-head`` that error is taken instead by a separate linear head on the policy GRU's output,
against the expert's values or (``--aux-target reward``) against the reward the taken action
got (a reward-prediction auxiliary loss, as the reward decoder of VariBAD, Zintgraf et al.
2020), leaving the logits to the cross-entropy. ``--epochs k`` takes ``k`` optimiser steps on
each batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from envs.light.tabular_mdp import TabularMDPEngine
from metarl.algorithms import rl2
from metarl.checkpoint import save_checkpoint
from metarl.config import ConfigError, load_config, save_config
from metarl.rl import classic
from metarl.rl.classic_mdp import value_iteration_finite_horizon
from metarl.rl.evaluation import heldout_tasks
from metarl.rl.recurrent import RecurrentPolicy, RecurrentStep, action_head
from metarl.rl.trials import trial_step_rewards

ROOT = Path(__file__).resolve().parents[1]
EXPERTS = ("myopic", "greedy")
PRIOR_MEAN = 1.0  # mean rewards ~ N(1, 1), observed with unit noise (RL² §3.2)


def expert_q(
    expert: str, visits: np.ndarray, sums: np.ndarray, counts: np.ndarray, horizon: int
) -> np.ndarray:
    """``[N, H, S, A]`` action values of the expert from the trial's statistics so far."""
    mean = (PRIOR_MEAN + sums) / (1.0 + visits)  # conjugate posterior mean
    if expert == "myopic":
        return np.broadcast_to(mean[:, None], (mean.shape[0], horizon, *mean.shape[1:]))
    alpha = 1.0 + counts  # Dirichlet(1) prior on each transition row
    return value_iteration_finite_horizon(mean, alpha / alpha.sum(-1, keepdims=True), horizon).q


def run_trials(
    engine: TabularMDPEngine,
    tasks: list[Any],
    episodes: int,
    horizon: int,
    expert: str,
    rng: np.random.Generator,
    policy: RecurrentPolicy | None = None,
    params: dict[str, torch.Tensor] | None = None,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor]:
    """One trial per task: GRU inputs, expert labels, returns and the expert's action values.

    Shapes ``[N, L, I]``, ``[N, L]``, ``[N, E]`` and ``[N, L, A]`` (the values in each step's
    state, whose argmax is the label). Acts as the expert with probability ``beta``, else
    samples the policy (``policy`` None: always the expert). The inputs follow
    :func:`~metarl.rl.trials.sample_trials`' layout.
    """
    classic.set_engine_tasks(engine, tasks)
    rows = classic.share_generator(engine, rng)
    num, states, actions = engine.num_envs, engine.num_states, engine.num_actions
    visits, sums = np.zeros((num, states, actions)), np.zeros((num, states, actions))
    counts = np.zeros((num, states, actions, states))
    length = episodes * horizon
    size = states + actions + 2
    inputs = np.zeros((length, num, size), dtype=np.float32)
    labels = np.zeros((length, num), dtype=np.int64)
    values = np.zeros((length, num, actions), dtype=np.float32)
    returns = np.zeros((num, episodes))
    step = None if policy is None else RecurrentStep(policy, params or {})
    h = torch.zeros(0) if policy is None else policy.initial_state(num)
    for e in range(episodes):
        q = expert_q(expert, visits, sums, counts, horizon)
        engine.reset(rows)
        state = engine.state
        for t in range(horizon):
            i = e * horizon + t
            inputs[i, rows, state] = 1.0
            values[i] = q[rows, t, state]
            label = np.argmax(values[i], axis=-1)
            labels[i] = label
            action = label
            if step is not None:
                with torch.no_grad():
                    h, dist = step(torch.from_numpy(inputs[i]), h)
                    logits = dist.loc
                    own = torch.distributions.Categorical(logits=logits).sample().numpy()
                action = np.where(rng.random(num) < beta, label, own)
            reward = engine.step(action).reward
            after = engine.state
            counts[rows, state, action, after] += 1.0
            sums[rows, state, action] += reward
            visits[rows, state, action] += 1.0
            returns[:, e] += reward
            if i + 1 < length:  # previous action, reward and done of the next step
                inputs[i + 1, rows, states + action] = 1.0
                inputs[i + 1, :, states + actions] = reward
                inputs[i + 1, :, states + actions + 1] = float(t == horizon - 1)
            state = after
    as_rows = torch.from_numpy(inputs).transpose(0, 1).contiguous()
    targets = torch.from_numpy(values).transpose(0, 1).contiguous()
    return as_rows, torch.from_numpy(labels).transpose(0, 1).contiguous(), returns, targets


def _summary(totals: np.ndarray, per_episode: np.ndarray) -> dict[str, Any]:
    return {
        "mean": float(totals.mean()),
        "ci95": float(1.96 * totals.std(ddof=1) / np.sqrt(len(totals))),
        "per_episode": [round(float(x), 3) for x in per_episode],
    }


def _provenance() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
        "machine": f"{cpu}, {os.cpu_count()} CPUs",
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _losses(
    args: argparse.Namespace,
    policy: RecurrentPolicy,
    params: dict[str, torch.Tensor],
    aux: torch.nn.Linear,
    x: torch.Tensor,
    y: torch.Tensor,
    q: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits, the loss (cross-entropy plus the weighted value term) and the value error.

    The value error is the MSE of the centred logits against ``--value-scale`` times the
    expert's centred values or, with ``--aux-head``, of the head on the GRU's output against the
    expert's values or against the reward the taken action got (``--aux-target``).
    """
    # the policy's GRU and action head only (the value trunk is not trained here), computed once
    # for the logits and the auxiliary head: what recurrent_forward computes for the policy
    gru = {k[4:]: v for k, v in params.items() if k.startswith("gru.")}
    head = {k[3:]: v for k, v in params.items() if k.startswith("pi.")}
    h0 = torch.zeros(1, len(x), policy.hidden_size)
    feats = torch.func.functional_call(policy.gru, gru, (x, h0))[0]
    logits = action_head(
        policy.pi, head, params.get("pi_obs.weight"), feats, x[..., : policy.obs_dim]
    )
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    if args.aux_head:
        predicted = aux(feats)
        if args.aux_target == "values":
            value_error = F.mse_loss(predicted, q)
        else:  # step t's action and reward are in step t + 1's input
            states = policy.obs_dim
            taken = x[:, 1:, states : states + policy.action_size].argmax(-1)
            got = x[:, 1:, states + policy.action_size]
            guess = predicted[:, :-1].gather(-1, taken.unsqueeze(-1)).squeeze(-1)
            value_error = F.mse_loss(guess, got)
    else:
        centred = logits - logits.mean(-1, keepdim=True)
        value_error = F.mse_loss(centred, args.value_scale * (q - q.mean(-1, keepdim=True)))
    if args.value_weight:
        loss = loss + args.value_weight * value_error
    return logits, loss, value_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/rl2/tabular_mdp_n10.yaml")
    override = "config override, as metarl train --set (e.g. policy.hidden_size=512)"
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=override)
    parser.add_argument("--expert", choices=EXPERTS, default="myopic")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=100, help="trials per iteration")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dagger-iterations", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--value-weight",
        type=float,
        default=0.0,
        help="weight of a second loss: the logits, centred, regressed onto --value-scale times "
        "the expert's centred action values in the current state (logit matching)",
    )
    parser.add_argument("--value-scale", type=float, default=5.0)
    parser.add_argument(
        "--aux-head",
        action="store_true",
        help="regress the expert's action values with a separate linear head on the policy "
        "GRU's output (an auxiliary task) instead of with the logits",
    )
    parser.add_argument(
        "--aux-target",
        choices=("values", "reward"),
        default="values",
        help="with --aux-head: the expert's action values in the current state, or only the "
        "reward the taken action then got (a reward-prediction loss, no expert needed)",
    )
    parser.add_argument("--epochs", type=int, default=1, help="optimiser steps per batch")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for name in ("iterations", "trials", "eval_every", "eval_tasks", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.dagger_iterations < 0 or not args.lr > 0:
        parser.error("--dagger-iterations must be >= 0 and --lr > 0")
    if not (args.value_weight >= 0 and args.value_scale > 0):
        parser.error("--value-weight must be >= 0 and --value-scale > 0")
    if args.aux_target != "values" and not args.aux_head:
        parser.error("--aux-target applies to --aux-head only")
    try:
        cfg = load_config(rl2.CONFIG_CLASS, ROOT / args.config, args.set)
    except (ConfigError, OSError) as error:
        parser.error(str(error))
    if cfg.env.id != "metarl/TabularMDP-v0":
        parser.error(f"{args.config} is not a tabular-MDP config (env {cfg.env.id})")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    started, begin = time.time(), datetime.datetime.now(datetime.timezone.utc)
    info = _provenance()
    episodes, horizon = cfg.env.episodes_per_trial, int(cfg.env.horizon or 1)
    device = torch.device("cpu")
    # the env of rl2.evaluate, so that its chunks (and their reset seeds) are the same
    vec = rl2.make_env(cfg, min(args.eval_tasks, cfg.eval.num_trials or cfg.env.num_trials))
    generator = torch.Generator().manual_seed(cfg.run.seed)
    policy = rl2.build_policy(cfg.policy, vec, generator, device)
    params = {k: v.detach().clone().requires_grad_() for k, v in rl2.init_params(policy).items()}
    value_names = set(policy.value_parameter_names())
    trained = [v for k, v in params.items() if k not in value_names]
    with torch.random.fork_rng():  # the policy samples from the global generator: leave it be
        torch.manual_seed(args.seed + 1)
        aux = torch.nn.Linear(policy.hidden_size, policy.action_size)
    if args.aux_head:
        trained += list(aux.parameters())
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    size = {"num_states": policy.obs_dim, "num_actions": policy.action_size}
    engine = TabularMDPEngine(args.trials, **size)
    eval_seed = cfg.run.seed + 1  # metarl train's evaluation: seed run.seed + 1, split test
    tasks = heldout_tasks(vec.distribution, args.eval_tasks, eval_seed, "test")
    expert_engine = TabularMDPEngine(len(tasks), **size)
    _, _, expert_returns, _ = run_trials(
        expert_engine, tasks, episodes, horizon, args.expert, np.random.default_rng(eval_seed)
    )
    result: dict[str, Any] = {
        "config": args.config,
        "expert": args.expert,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "episodes_per_trial": episodes,
        "horizon": horizon,
        "eval_tasks": len(tasks),
        "eval_seed": eval_seed,
        "expert_heldout": _summary(expert_returns.sum(1), expert_returns.mean(0)),
        "training": [],
        "heldout": [],
        **info,
    }
    print(f"expert {args.expert} on the held-out MDPs: {result['expert_heldout']['mean']:.1f}")
    for it in range(args.iterations):
        beta = max(0.0, 1.0 - it / args.dagger_iterations) if args.dagger_iterations else 0.0
        batch = vec.distribution.sample(args.trials, rng)  # fresh MDPs, as RL² trains
        detached = {k: v.detach() for k, v in params.items()}
        x, y, returns, q = run_trials(
            engine, batch, episodes, horizon, args.expert, rng, policy, detached, beta
        )
        for _ in range(args.epochs):
            logits, loss, value_error = _losses(args, policy, params, aux, x, y, q)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if it % 100 == 0 or it == args.iterations - 1:
            agree = float((logits.argmax(-1) == y).float().mean())
            row: dict[str, Any] = {"iteration": it, "beta": round(beta, 3)}
            row.update(loss=float(loss.detach()), agreement=agree)
            row.update(value_error=float(value_error.detach()))
            row.update(rollout_return=float(returns.sum(1).mean()))
            result["training"].append(row)
            took = time.time() - started
            print(f"it {it}: loss {row['loss']:.3f}, agreement {agree:.3f}, rollout return "
                  f"{row['rollout_return']:.1f} ({took:.0f} s)", flush=True)  # fmt: skip
        if (it + 1) % args.eval_every == 0 or it == args.iterations - 1:
            final = {k: v.detach() for k, v in params.items()}
            held = (
                trial_step_rewards(
                    vec, policy, final, tasks, episodes, seed=eval_seed, device=device
                )
                .sum(-1)
                .numpy()
            )
            entry = {"iteration": it + 1, "trials_seen": (it + 1) * args.trials}
            entry.update(_summary(held.sum(1), held.mean(0)))
            result["heldout"].append(entry)
            print(f"  held-out after {it + 1}: {entry['mean']:.1f} ± {entry['ci95']:.1f}")
    vec.close()
    # the columns this run adds to its row of the README's MDP table (scripts/readme_tables.py)
    row_name = "rl2-" + Path(args.config).stem
    last = result["heldout"][-1]
    result["runs"] = {
        row_name: {
            "imitation": {"mean": last["mean"], "ci95": last["ci95"]},
            args.expert: {k: result["expert_heldout"][k] for k in ("mean", "ci95")},
        }
    }
    result["wall_clock_seconds"] = round(time.time() - started)
    result["started"] = begin.strftime("%Y-%m-%dT%H:%M:%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    # the trained policy, as a run folder scripts/rl2_mdp_probe.py --run reads
    save_config(cfg, args.out / "config.yaml")
    final = {k: v.detach().clone() for k, v in params.items()}
    save_checkpoint(args.out / "imitation_policy.pt", {"params": final})
    path = args.out / "imitation.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

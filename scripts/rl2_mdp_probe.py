"""What a trained RL² tabular-MDP policy has learned: does its choice depend on the state it is in?

A diagnostic for the RL² tabular-MDP rows (Duan et al. 2016, §3.2), which level off near 117
(n = 10 episodes) where acting on the posterior-mean reward of the current state scores about
150. To reach that, an agent must keep a reward estimate per (state, action) pair and read out the
current state's: 50 numbers with |S| = 10, |A| = 5. An agent that pools what it saw over states
(a reward estimate per action, 5 numbers) is a much easier thing for a recurrent network to learn.
This script scores both reference agents on the row's held-out MDPs and rolls out the run's final
checkpoint on the same MDPs, recording at every step

- *agreement*: how often the policy's most likely action is each reference agent's action (the
  agents' statistics are those of the policy's own trajectory so far);
- *state dependence*: the total-variation distance between the policy's action distribution and
  the one it would have in another state with the same memory (the GRU state), averaged over the
  other states; for a reference agent, how often its action changes when only the state changes
  (the state-pooled agent's never does).

Reference agents (prior N(1, 1) on each mean reward, unit noise, statistics frozen at each
episode's start, as the imitation script's experts, :mod:`rl2_imitation`):

- ``myopic``: in the current state, the action of highest posterior-mean reward;
- ``pooled``: the action of highest posterior-mean reward pooled over all states (ignores the
  state).

``python scripts/rl2_mdp_probe.py --out results/rl2-tabular_mdp_n10-probe`` (about a minute;
``--run`` names another run folder than the row's): ``OUT/probe.json`` and ``OUT/probe.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.light.tabular_mdp import TabularMDPEngine
from metarl.algorithms import rl2
from metarl.checkpoint import final_checkpoint, load_checkpoint
from metarl.config import ConfigError, load_config
from metarl.rl import classic
from metarl.rl.evaluation import heldout_tasks
from metarl.rl.recurrent import RecurrentStep

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "scripts") not in sys.path:  # also when imported by scripts/reproduce.py
    sys.path.insert(0, str(ROOT / "scripts"))
import rl2_imitation  # noqa: E402  (scripts/rl2_imitation.py: its prior, summary, provenance)

AGENTS = ("myopic", "pooled")
LABELS = {
    "rl2": "RL² policy (sampled actions)",
    "myopic": "myopic: best posterior-mean reward in the current state",
    "pooled": "pooled: best posterior-mean reward over all states (ignores the state)",
}


def agent_q(agent: str, visits: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """``[N, S, A]`` posterior-mean rewards the agent acts on (``pooled``: the same in every S)."""
    if agent == "pooled":
        pooled = (rl2_imitation.PRIOR_MEAN + sums.sum(1)) / (1.0 + visits.sum(1))
        return np.broadcast_to(pooled[:, None], sums.shape)
    return (rl2_imitation.PRIOR_MEAN + sums) / (1.0 + visits)


def probe_trials(
    engine: TabularMDPEngine,
    tasks: list[Any],
    episodes: int,
    horizon: int,
    rng: np.random.Generator,
    policy: rl2.RecurrentPolicy | None,
    params: dict[str, torch.Tensor] | None,
    actor: str = "rl2",
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """One trial per task acted by ``actor`` (the policy, or a reference agent); per-step records.

    Returns the returns ``[N, E]`` and, for each reference agent, the fraction of steps where
    its action is the policy's most likely one (``agree``) and how often its action changes with
    the state (``state_change``); for the policy, the mean total-variation distance under a state
    swap (``state_tv``), the same when only the memory is swapped for another trial's at the same
    step (``memory_tv``), and the mean probability of its most likely action (``confidence``).
    The policy's inputs follow :func:`~metarl.rl.trials.sample_trials`'s layout (one-hot state,
    one-hot previous action, previous reward, previous done).
    """
    if actor not in AGENTS and policy is None:
        raise ValueError(f"actor {actor!r} needs the policy (or one of {AGENTS})")
    classic.set_engine_tasks(engine, tasks)
    rows = classic.share_generator(engine, rng)
    num, states, actions = engine.num_envs, engine.num_states, engine.num_actions
    visits, sums = np.zeros((num, states, actions)), np.zeros((num, states, actions))
    returns = np.zeros((num, episodes))
    agree = {a: 0.0 for a in AGENTS}
    change = {a: 0.0 for a in AGENTS}
    state_tv, memory_tv, confidence, count = 0.0, 0.0, 0.0, 0
    step = None if policy is None else RecurrentStep(policy, params or {})
    drawn = np.zeros(num, dtype=np.int64)
    h = None if policy is None else policy.initial_state(num)
    x = np.zeros((num, states + actions + 2), dtype=np.float32)
    others = np.array([[s for s in range(states) if s != t] for t in range(states)])
    for e in range(episodes):
        frozen = {a: agent_q(a, visits, sums).copy() for a in AGENTS}
        engine.reset(rows)
        state = engine.state
        for t in range(horizon):
            x[:, :states] = 0.0
            x[rows, state] = 1.0
            choice = {a: np.argmax(frozen[a][rows, state], -1) for a in AGENTS}
            for a in AGENTS:  # another state, same statistics: another action?
                swapped = np.argmax(frozen[a][rows[:, None], others[state]], -1)
                change[a] += float((swapped != choice[a][:, None]).mean())
            if step is not None:
                assert h is not None
                with torch.no_grad():
                    inputs = torch.from_numpy(x)
                    h_next, dist = step(inputs, h)
                    probs = torch.softmax(dist.loc, -1)
                    swaps = inputs.repeat(states - 1, 1)  # [(S-1) N, I], other states
                    swaps[:, :states] = 0.0
                    other = torch.from_numpy(others[state].T.reshape(-1))
                    swaps[torch.arange(len(swaps)), other] = 1.0
                    _, swapped = step(swaps, h.repeat(states - 1, 1))
                    tv = 0.5 * (torch.softmax(swapped.loc, -1) - probs.repeat(states - 1, 1))
                    state_tv += float(tv.abs().sum(-1).mean())
                    _, borrowed = step(inputs, h.roll(1, 0))  # another MDP's memory
                    moved = torch.softmax(borrowed.loc, -1) - probs
                    memory_tv += float(0.5 * moved.abs().sum(-1).mean())
                    top, likely_t = probs.max(-1)
                    confidence += float(top.mean())
                    likely = likely_t.numpy()
                    drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1).numpy()
                h = h_next
                for a in AGENTS:
                    agree[a] += float((choice[a] == likely).mean())
            action = choice[actor] if actor in AGENTS else drawn
            reward = engine.step(action).reward
            sums[rows, state, action] += reward
            visits[rows, state, action] += 1.0
            returns[:, e] += reward
            count += 1
            x[:] = 0.0
            x[rows, states + action] = 1.0
            x[:, states + actions] = reward
            x[:, states + actions + 1] = float(t == horizon - 1)
            state = engine.state
    return {
        "returns": returns,
        "agree": {a: agree[a] / count for a in AGENTS},
        "state_change": {a: change[a] / count for a in AGENTS},
        "state_tv": state_tv / count,
        "memory_tv": memory_tv / count,
        "confidence": confidence / count,
    }


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no home folders in results/)."""
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)


def table(result: dict[str, Any]) -> str:
    """The README table: each actor's held-out return, agreement and state dependence."""
    lines = [
        "| actor | trial return (held-out MDPs) | agrees with RL²'s most likely action "
        "| action changes with the state |",
        "|---|---|---|---|",
    ]
    rl2_row = result["rl2"]
    lines.append(
        f"| {LABELS['rl2']} | {rl2_row['mean']:.1f} ± {rl2_row['ci95']:.1f} | – "
        f"| {rl2_row['state_tv']:.0%} (total variation; {rl2_row['memory_tv']:.0%} when the memory "
        f"is swapped for another MDP's instead; its most likely action has probability "
        f"{rl2_row['confidence']:.2f} on average) |"
    )
    for agent in AGENTS:
        row = result[agent]
        lines.append(
            f"| {LABELS[agent]} | {row['mean']:.1f} ± {row['ci95']:.1f} "
            f"| {rl2_row['agree'][agent]:.0%} | {row['state_change']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        type=Path,
        default=ROOT / "results" / "rl2-tabular_mdp_n10",
        help="a tabular-MDP run folder: config.yaml and its final checkpoint (*.pt)",
    )
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.eval_tasks < 2:
        parser.error("--eval-tasks must be >= 2")
    found = sorted(args.run.glob("*.pt")) + sorted((args.run / "checkpoints").glob("*.pt"))
    if not found:
        parser.error(f"--run {args.run}: no checkpoint (*.pt) in it or in its checkpoints/")
    try:
        cfg = load_config(rl2.CONFIG_CLASS, args.run / "config.yaml", [])
    except (ConfigError, OSError) as error:
        parser.error(str(error))
    if cfg.env.id != "metarl/TabularMDP-v0":
        parser.error(f"--run {args.run} is not a tabular-MDP run (env {cfg.env.id})")
    # a training run's last checkpoint (not an earlier one kept as another run's start), else
    # another saved policy such as scripts/rl2_imitation.py's imitation_policy.pt
    checkpoint = final_checkpoint(args.run) or max(found, key=lambda p: p.name)
    torch.set_num_threads(1)
    started, begin = time.time(), datetime.datetime.now(datetime.timezone.utc)
    device = torch.device("cpu")
    episodes, horizon = cfg.env.episodes_per_trial, int(cfg.env.horizon or 1)
    vec = rl2.make_env(cfg, min(args.eval_tasks, cfg.eval.num_trials or cfg.env.num_trials))
    try:
        policy = rl2.build_policy(cfg.policy, vec, torch.Generator().manual_seed(0), device)
        eval_seed = cfg.run.seed + 1  # metarl train's evaluation: seed run.seed + 1, split test
        tasks = heldout_tasks(vec.distribution, args.eval_tasks, eval_seed, "test")
    finally:
        vec.close()
    params = load_checkpoint(checkpoint, map_location="cpu")["params"]
    size = {"num_states": policy.obs_dim, "num_actions": policy.action_size}
    result: dict[str, Any] = {
        "run": str(args.run.resolve().relative_to(ROOT))
        if args.run.resolve().is_relative_to(ROOT)
        else str(args.run),
        "checkpoint": checkpoint.name,
        "eval_tasks": len(tasks),
        "eval_seed": eval_seed,
        "labels": LABELS,
    }
    for actor in ("rl2", *AGENTS):
        out = probe_trials(
            TabularMDPEngine(len(tasks), **size),
            tasks,
            episodes,
            horizon,
            np.random.default_rng(eval_seed),
            policy if actor == "rl2" else None,
            params if actor == "rl2" else None,
            actor,
            torch.Generator().manual_seed(eval_seed),
        )
        row = rl2_imitation._summary(out["returns"].sum(1), out["returns"].mean(0))
        if actor == "rl2":
            row.update({k: out[k] for k in ("agree", "state_tv", "memory_tv", "confidence")})
        else:
            row["state_change"] = out["state_change"][actor]
        result[actor] = row
    result.update(rl2_imitation._provenance())
    result["wall_clock_seconds"] = round(time.time() - started)
    result["started"] = begin.strftime("%Y-%m-%dT%H:%M:%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "probe.md").write_text(table(result), encoding="utf-8")
    print(table(result), end="")
    print(f"written: {args.out / 'probe.json'}, {args.out / 'probe.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

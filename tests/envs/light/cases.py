"""The light envs under test, and batched / sliced / single-env rollouts to compare."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

import envs
from envs.core import BatchedTaskEngine, TaskEnv

ActionSampler = Callable[[np.random.Generator, int, int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Case:
    env_id: str
    sample_actions: ActionSampler  # (rng, steps, num_envs) -> [steps, num_envs, ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(envs.env_info(self.env_id).kwargs)

    @property
    def engine_cls(self) -> type[BatchedTaskEngine]:
        return envs.get_engine_class(self.env_id)

    @property
    def env_cls(self) -> type[TaskEnv]:
        return envs.get_env_class(self.env_id)

    def engine(self, num_envs: int) -> BatchedTaskEngine:
        return self.engine_cls(num_envs, **self.kwargs)


def _velocities(rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
    # Wider than the action bound, so clipping is exercised too.
    return rng.normal(0.0, 0.15, size=(steps, n, 2)).astype(np.float32)


def _integers(high: int) -> ActionSampler:
    return lambda rng, steps, n: rng.integers(high, size=(steps, n))


CASES = [
    Case("metarl/Navigation2D-v0", _velocities),
    Case("metarl/Bandit-K5-v0", _integers(5)),
    Case("metarl/Bandit-K10-v0", _integers(10)),
    Case("metarl/Bandit-K50-v0", _integers(50)),
    Case("metarl/TabularMDP-v0", _integers(5)),
]
CASE_IDS = [case.env_id for case in CASES]


@dataclasses.dataclass
class Rollout:
    obs: list[np.ndarray] = dataclasses.field(default_factory=list)
    reward: list[np.ndarray] = dataclasses.field(default_factory=list)
    terminated: list[np.ndarray] = dataclasses.field(default_factory=list)
    terms: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)

    def stacked(self) -> dict[str, np.ndarray]:
        out = {
            "obs": np.stack(self.obs),
            "reward": np.stack(self.reward),
            "terminated": np.stack(self.terminated),
        }
        for key in self.terms[0]:
            out[key] = np.stack([t[key] for t in self.terms])
        return out


def run_engine(engine: BatchedTaskEngine, seeds, tasks, actions) -> dict[str, np.ndarray]:
    """Steps ``engine`` with ``actions[t]``, resetting each sub-env as soon as it terminates."""
    engine.seed(list(seeds))
    engine.set_tasks(list(tasks))
    out = Rollout(obs=[engine.reset(np.arange(engine.num_envs))])
    for batch in actions:
        step = engine.step(batch)
        obs = step.obs.copy()
        done = np.flatnonzero(step.terminated)
        if len(done):
            obs[done] = engine.reset(done)
        out.obs.append(obs)
        out.reward.append(step.reward)
        out.terminated.append(step.terminated)
        out.terms.append({**step.reward_terms, **step.extras})
    return out.stacked()


def run_sliced(case: Case, sizes, seeds, tasks, actions) -> dict[str, np.ndarray]:
    """The same rollout, with the sub-envs split into engines of ``sizes``."""
    parts, start = [], 0
    for size in sizes:
        stop = start + size
        engine = case.engine(size)
        part = run_engine(engine, seeds[start:stop], tasks[start:stop], actions[:, start:stop])
        parts.append(part)
        start = stop
    return {key: np.concatenate([p[key] for p in parts], axis=1) for key in parts[0]}


def run_single_envs(case: Case, seeds, tasks, actions) -> dict[str, np.ndarray]:
    """The same rollout with one gymnasium env per sub-env (task fixed through reset options)."""
    columns = []
    for i, (seed, task) in enumerate(zip(seeds, tasks, strict=True)):
        env = case.env_cls(**case.kwargs)
        first, _ = env.reset(seed=seed, options={"task": task})
        out = Rollout(obs=[first])
        for t in range(len(actions)):
            obs, reward, terminated, truncated, info = env.step(actions[t, i])
            assert not truncated
            if terminated:
                obs, _ = env.reset()
            out.obs.append(obs)
            out.reward.append(np.asarray(reward))
            out.terminated.append(np.asarray(terminated))
            out.terms.append({k: np.asarray(v) for k, v in info.items()})
        columns.append(out.stacked())
    return {key: np.stack([c[key] for c in columns], axis=1) for key in columns[0]}

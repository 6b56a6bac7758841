"""A purpose-built task engine for testing the vector env: a noisy counter with a known answer.

Sub-env ``i`` holds a position that starts at ``start_noise * U(0, 1)`` (drawn from its own
generator) and moves by ``action + task.drift`` each step; the reward is the new position, split
into two terms. The episode terminates once the position reaches ``task.limit``. A task with
``fail_at_step`` makes the engine raise (or, with ``crash=True``, kill its process) at that step.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.core import BatchedTaskEngine, EngineStep, Task, TaskDistribution, TaskEnv, check_range


@dataclasses.dataclass(frozen=True)
class CounterTask(Task):
    drift: float
    limit: float = 1e9
    fail_at_step: int = -1
    crash: bool = False


class CounterDistribution(TaskDistribution):
    task_type = CounterTask

    def __init__(self, low: float = -1.0, high: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [CounterTask(float(d)) for d in rng.uniform(self.low, self.high, size=n)]

    def validate(self, task: Task) -> None:
        self._check_type(task)
        check_range("drift", task.drift, self.low, self.high)

    def describe(self) -> dict[str, str]:
        return {"drift": f"U[{self.low}, {self.high}]"}


class CounterEngine(BatchedTaskEngine):
    distribution_cls = CounterDistribution
    reward_terms = ("reward_half_a", "reward_half_b")
    extra_keys = ("position",)

    def __init__(
        self, num_envs: int, start_noise: float = 1.0, low: float = -1.0, high: float = 1.0
    ):
        super().__init__(num_envs, CounterDistribution(low, high))
        self.start_noise = start_noise
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.position = np.zeros(num_envs)
        self.drift = np.zeros(num_envs)
        self.limit = np.full(num_envs, 1e9)
        self.steps = 0

    def _apply_tasks(self, indices: np.ndarray) -> None:
        for i in indices:
            task = self.tasks[int(i)]
            self.drift[i], self.limit[i] = task.drift, task.limit

    def _obs(self) -> np.ndarray:
        return np.stack([self.position, self.drift], axis=1)

    def reset(self, indices: np.ndarray) -> np.ndarray:
        for i in indices:
            self.position[i] = self.start_noise * self.rngs[int(i)].uniform()
        return self._obs()[indices]

    def step(self, actions: np.ndarray) -> EngineStep:
        self.steps += 1
        for task in self.tasks:
            if task is not None and task.fail_at_step == self.steps:
                if task.crash:
                    os._exit(3)
                raise RuntimeError(f"counter engine failed on purpose at step {self.steps}")
        self.position = self.position + actions[:, 0] + self.drift
        reward = self.position.copy()
        terms = {"reward_half_a": reward / 2, "reward_half_b": reward / 2}
        terminated = self.position >= self.limit
        return EngineStep(
            self._obs(), reward, terminated, terms, {"position": self.position.copy()}
        )


class CounterEnv(TaskEnv):
    engine_cls = CounterEngine


class MixedExtrasEngine(CounterEngine):
    """The counter with extras of other kinds: an int per sub-env and a pair of floats."""

    extra_keys = ("position", "steps_taken", "pair")

    def step(self, actions: np.ndarray) -> EngineStep:
        out = super().step(actions)
        n = len(out.reward)
        extras = {
            **out.extras,
            "steps_taken": np.full(n, self.steps, dtype=np.int64),
            "pair": np.stack([self.position, -self.position], axis=1),
        }
        return out._replace(extras=extras)

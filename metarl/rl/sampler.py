"""Sampling a meta-batch of tasks × episodes through one vectorized task env.

Sub-env ``i`` runs task ``i // episodes_per_task``; every time step is one policy forward for the
whole batch (per-task parameters: one ``bmm`` per layer over the task axis, the operations ``vmap``
would run, :func:`~metarl.rl.policies.batched_policy_forward`), one draw of action noise, one
transfer of the actions to the host and one ``vec.step``. Rewards and terminations stay on the
host and log-probabilities are computed once at the end, with the same numbers as step by step.
The result is an :class:`EpisodeBatch` shaped ``[task, episode, time, ...]`` on the training
device, with a validity mask that is 1 while the episode runs and 0 after it terminated (the
sub-env is reset and keeps stepping, but those steps are masked out), so every batch has the
fixed horizon H.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from envs.core import Task
from envs.vector import TaskVectorEnv
from metarl.functional import Params
from metarl.rl.policies import MLPPolicy, batched_policy_forward, policy_forward

__all__ = ["EpisodeBatch", "actions_to_env", "sample_actions", "sample_episodes"]


class EpisodeBatch(NamedTuple):
    """Episodes of a meta-batch, ``[task, episode, time, ...]``.

    Attributes:
        obs: observations before each step, ``[T, E, H, obs_dim]`` float32.
        actions: ``[T, E, H, act_dim]`` float32, or ``[T, E, H]`` int64 for discrete actions.
        rewards: ``[T, E, H]`` (0 where masked).
        log_probs: log-probabilities under the sampling policy, ``[T, E, H]`` (detached).
        dones: 1 at the step where the episode terminated by the task's rule, ``[T, E, H]``.
        mask: 1 for steps inside the episode, 0 after termination, ``[T, E, H]``.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    log_probs: Tensor
    dones: Tensor
    mask: Tensor

    @property
    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, ``[T, E]``."""
        return (self.rewards * self.mask).sum(-1)

    @property
    def num_steps(self) -> int:
        """Number of valid env steps in the batch (syncs with the device once)."""
        return int(self.mask.sum().item())


def _check(vec: TaskVectorEnv, tasks: Sequence[Task], episodes: int) -> int:
    if episodes < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes}")
    if vec.num_envs != len(tasks) * episodes:
        raise ValueError(
            f"the vector env has {vec.num_envs} sub-envs; {len(tasks)} tasks × {episodes} "
            f"episodes need {len(tasks) * episodes}"
        )
    if vec.horizon is None:
        raise ValueError("the vector env needs a horizon to sample fixed-length episodes")
    return vec.horizon


@torch.no_grad()
def sample_episodes(
    vec: TaskVectorEnv,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_task: int,
    *,
    per_task_params: bool,
    generator: torch.Generator,
    device: torch.device,
    seed: int | None = None,
    rows: tuple[int, int] | None = None,
) -> EpisodeBatch:
    """Runs ``episodes_per_task`` episodes of each task with the given (per-task) parameters.

    Args:
        vec: a vector env with ``len(tasks) * episodes_per_task`` sub-envs and a horizon H.
        policy: the policy module (used as a function of ``params``).
        params: shared parameters, or per-task parameters ``{name: [T, *shape]}``.
        tasks: the ``T`` tasks of the meta-batch.
        episodes_per_task: ``E``, episodes per task.
        per_task_params: whether ``params`` carry a leading task axis.
        generator: draws the action noise (on ``device``).
        device: where the batch is built.
        seed: reset seed of the vector env (None continues its generators).
        rows: ``(offset, total)`` when these sub-envs are rows ``offset, ...`` of a meta-batch
            of ``total`` sub-envs split over ranks: the action noise is drawn for all ``total``
            rows and this batch keeps its own (:func:`sample_actions`).

    Returns:
        An :class:`EpisodeBatch` ``[T, E, H, ...]`` on ``device``.
    """
    horizon = _check(vec, tasks, episodes_per_task)
    num_tasks, num_envs = len(tasks), vec.num_envs
    env_tasks = [task for task in tasks for _ in range(episodes_per_task)]
    obs_np, _ = vec.reset(seed=seed, options={"tasks": env_tasks})
    observations: list[Tensor] = []
    actions: list[Tensor] = []
    outs: list[Any] = []
    # rewards and terminations stay on the host until the episode ends: no per-step transfers
    rewards = np.empty((horizon, num_envs), dtype=np.float64)
    terminated = np.empty((horizon, num_envs), dtype=np.bool_)
    params = {k: v.detach() for k, v in params.items()}
    for t in range(horizon):
        obs = torch.as_tensor(obs_np, dtype=torch.float32, device=device)
        if per_task_params:
            out = batched_policy_forward(policy, params, obs.view(num_tasks, episodes_per_task, -1))
            out = out.apply(lambda x: x.reshape(num_envs, *x.shape[2:]))
        else:
            out = policy_forward(policy, params, obs, False)
        action = sample_actions(policy, out, generator, rows)
        observations.append(obs)
        actions.append(action)
        outs.append(out)
        obs_np, rewards[t], terminated[t], _, _ = vec.step(actions_to_env(action, vec))

    def stack(x: Tensor | list[Tensor]) -> Tensor:  # [H, N, ...] -> [T, E, H, ...]
        x = torch.stack(x, dim=1) if isinstance(x, list) else x.transpose(0, 1).contiguous()
        return x.view(num_tasks, episodes_per_task, horizon, *x.shape[2:])

    # the validity mask: 1 up to and including the step an episode terminates, then 0
    done = torch.as_tensor(terminated, dtype=torch.float32, device=device)
    alive = torch.cumprod(torch.cat([torch.ones_like(done[:1]), 1.0 - done[:-1]]), dim=0)
    # log-probabilities in one call for the whole episode (the same numbers as step by step)
    fields = zip(*outs, strict=True)
    out = type(outs[0])(*(None if x[0] is None else torch.stack(x) for x in fields))
    log_probs = policy.log_prob(out, torch.stack(actions))
    return EpisodeBatch(
        stack(observations),
        stack(actions),
        stack(torch.as_tensor(rewards, dtype=torch.float32, device=device) * alive),
        stack(log_probs),
        stack(done * alive),
        stack(alive),
    )


def actions_to_env(action: Tensor | np.ndarray, vec: TaskVectorEnv) -> Any:
    """Actions as the env expects them: numpy, in the action space's dtype.

    ``action`` may already be on the host as an array (a caller that needs it there too copies
    it once).
    """
    array = action.cpu().numpy() if isinstance(action, Tensor) else action
    dtype = vec.single_action_space.dtype
    return array.astype(dtype if dtype is not None else np.float32, copy=False)


def sample_actions(
    policy: Any, out: Any, generator: torch.Generator, rows: tuple[int, int] | None = None
) -> Tensor:
    """``policy.sample(out, generator)``, or rows ``offset:offset+n`` of a ``total``-row draw.

    A rank that holds rows ``offset, ..., offset + n - 1`` of a batch split over ranks draws the
    noise of all ``total`` rows from the generator every rank seeds alike, so each row gets the
    action noise it gets in a one-rank run (both policies draw one random tensor shaped like
    their distribution's leading tensor).

    Args:
        policy: A policy with ``sample(out, generator)``.
        out: Its distribution (a named tuple of tensors ``[n, ...]`` or None).
        generator: Draws the noise.
        rows: ``(offset, total)``, or None for the whole batch.

    Returns:
        Actions ``[n, ...]``.
    """
    if rows is None:
        action: Tensor = policy.sample(out, generator)
        return action
    offset, total = rows
    n = out[0].shape[0]

    def pad(x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        full = x.new_zeros((total, *x.shape[1:]))
        full[offset : offset + n] = x
        return full

    action = policy.sample(type(out)(*(pad(x) for x in out)), generator)
    return action[offset : offset + n]

"""RL² trials: ``n`` consecutive episodes on one task, many trials in parallel.

Sub-env ``i`` of the vector env runs the trial of task ``i``. :func:`sample_trials` loops over the
episodes ``e = 0..E-1`` of the trial and the steps ``t = 0..H-1`` of an episode (a fixed horizon,
1 for bandits), with one batched recurrent forward per step for every trial. The recurrent state
is carried across episode boundaries and is zero at the start of each trial (a new task). Steps
after an episode terminated early are padding (``mask = 0``): the env is reset and keeps
stepping, but the state, the previous action/reward/done inputs and the losses ignore them, so
sampling and training run the identical recurrence (:mod:`metarl.rl.recurrent`).

The :class:`TrialBatch` is laid out ``[trial N, episode E, time H, ...]`` like
:class:`~metarl.rl.sampler.EpisodeBatch`; ``flat`` views it as one sequence per trial
``[N, L = E * H]``. :func:`trial_gae` computes advantages with the trial as one long episode (the
value bootstraps across episode boundaries, never across trials), and :func:`chunk_trials` cuts
the trials into truncated-BPTT chunks whose initial states the sampler stored.
:func:`evaluate_trials` reports the return of each episode index of held-out trials beside RL²'s
classic baselines, looked up by task type (:func:`metarl.rl.classic.classic_baselines`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from envs.core import Task
from envs.vector import TaskVectorEnv
from metarl import distributed
from metarl.evaluation import (
    mean_ci,
    minus_baselines,
    paired_difference,
    windowed_returns,
    write_eval_results,
)
from metarl.functional import Params
from metarl.logger import Logger
from metarl.rl.classic import classic_baselines
from metarl.rl.evaluation import task_chunks
from metarl.rl.parallel import gathered_rows, skip_noise
from metarl.rl.policies import PolicyOutput
from metarl.rl.recurrent import (
    RecurrentOutput,
    RecurrentPolicy,
    RecurrentStep,
    recurrent_forward,
)
from metarl.rl.returns import GAEResult, gae
from metarl.rl.sampler import actions_to_env, sample_actions
from metarl.rl.success import SuccessRecorder, gathered_success_table, write_success_results

_log = logging.getLogger(__name__)  # `logger` is evaluate_trials' metric-logger argument.

__all__ = [
    "TrialBatch",
    "TrialChunks",
    "chunk_forward",
    "chunk_trials",
    "classic_baselines",  # re-exported from metarl.rl.classic
    "evaluate_trials",
    "num_chunks",
    "sample_trials",
    "to_chunks",
    "trial_gae",
    "trial_step_rewards",
]


class TrialBatch(NamedTuple):
    """Trials of a batch of tasks, ``[trial N, episode E, time H, ...]``.

    Attributes:
        obs: Observations before each step, ``[N, E, H, obs_dim]``.
        actions: ``[N, E, H]`` int64 (discrete) or ``[N, E, H, act_dim]``.
        rewards: ``[N, E, H]`` (0 on padding).
        log_probs: Log-probabilities under the sampling policy, ``[N, E, H]``.
        values: Value estimates at sampling time, ``[N, E, H]`` (0 on padding).
        dones: 1 where the episode terminated by the task's rule, ``[N, E, H]``.
        mask: 1 for steps inside an episode, 0 after it terminated early, ``[N, E, H]``.
        inputs: The GRU input of every step (obs ⊕ previous action ⊕ previous reward ⊕ previous
            done), ``[N, E, H, input_size]``.
        episode_index: Index of the episode within its trial, ``[N, E, H]`` int64.
        chunk_h0: The recurrent state before every truncated-BPTT chunk of the flattened trial,
            ``[N, C, state_size]`` with ``C = ceil(E * H / chunk_len)``; ``chunk_h0[:, 0]`` is
            the trial's initial state (zeros: the trial boundary).
        chunk_len: Steps per chunk.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    log_probs: Tensor
    values: Tensor
    dones: Tensor
    mask: Tensor
    inputs: Tensor
    episode_index: Tensor
    chunk_h0: Tensor
    chunk_len: int

    @property
    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, ``[N, E]``."""
        return (self.rewards * self.mask).sum(-1)

    @property
    def trial_returns(self) -> Tensor:
        """Undiscounted return of each trial (RL²'s score), ``[N]``."""
        return self.episode_returns.sum(-1)

    @property
    def num_steps(self) -> int:
        """Number of valid env steps (syncs with the device once)."""
        return int(self.mask.sum().item())

    @property
    def h0(self) -> Tensor:
        """The state at the start of each trial, ``[N, state_size]``."""
        return self.chunk_h0[:, 0]

    def flat(self, x: Tensor) -> Tensor:
        """``x [N, E, H, ...]`` viewed as one sequence per trial, ``[N, E * H, ...]``."""
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def num_chunks(length: int, chunk_len: int) -> int:
    """Number of chunks of ``chunk_len`` steps covering ``length`` steps (the last padded)."""
    return -(-length // chunk_len)


def _check(vec: TaskVectorEnv, tasks: Sequence[Task], episodes: int, chunk_len: int | None) -> int:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes_per_trial must be an int >= 1, got {episodes!r}")
    if vec.num_envs != len(tasks):
        raise ValueError(
            f"the vector env has {vec.num_envs} sub-envs but {len(tasks)} tasks were given; "
            "RL² runs one trial (task) per sub-env"
        )
    if vec.horizon is None:
        raise ValueError(
            "the vector env needs a horizon (episode length H) to run trials; set it for envs "
            "registered without one (bandits: H = 1)"
        )
    if vec.autoreset_mode != AutoresetMode.DISABLED:
        raise ValueError(
            f"sample_trials needs a vector env with autoreset_mode='disabled' (it resets the "
            f"sub-envs itself at episode boundaries), got {vec.autoreset_mode}"
        )
    if chunk_len is not None and (isinstance(chunk_len, bool) or chunk_len < 1):
        raise ValueError(f"chunk_len must be an int >= 1 or None, got {chunk_len!r}")
    return vec.horizon


@torch.no_grad()
def sample_trials(
    vec: TaskVectorEnv,
    policy: RecurrentPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_trial: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    seed: int | None = None,
    chunk_len: int | None = None,
    rows: tuple[int, int] | None = None,
) -> TrialBatch:
    """Runs one trial of ``episodes_per_trial`` episodes on each task, all trials in parallel.

    Each env step costs one GRU cell and one action head for all trials
    (:class:`~metarl.rl.recurrent.RecurrentStep`); the inputs, rewards and flags are written into
    preallocated host arrays, and the values and log-probabilities are computed for all steps at
    once after the last one.

    Args:
        vec: A vector env with ``len(tasks)`` sub-envs, a horizon H and
            ``autoreset_mode="disabled"``.
        policy: The recurrent policy.
        params: Its parameters (used detached).
        tasks: The ``N`` tasks, one trial each.
        episodes_per_trial: ``E``, episodes per trial (RL²'s ``n``).
        generator: Draws the actions (on ``device``).
        device: Where the policy runs and the batch is built.
        seed: Reset seed of the vector env (None continues its generators).
        chunk_len: Steps per truncated-BPTT chunk whose initial state is stored (None: the
            whole trial, ``E * H``).
        rows: ``(offset, total)`` when these trials are rows ``offset, ...`` of ``total`` trials
            split over ranks (:func:`~metarl.rl.sampler.sample_actions`).

    Returns:
        A :class:`TrialBatch` ``[N, E, H, ...]`` on ``device``.

    Raises:
        ValueError: If the env, the tasks or the sizes do not fit (the message names which).
    """
    horizon = _check(vec, tasks, episodes_per_trial, chunk_len)
    num, length = len(tasks), episodes_per_trial * horizon
    chunk = length if chunk_len is None else chunk_len
    step = RecurrentStep(policy, params)
    # Host buffers, time-major: inputs[t] is the GRU input of step t (obs ⊕ previous action ⊕
    # previous reward ⊕ previous done; all zero before a trial's first step).
    obs_dim, act = policy.obs_dim, policy.action_size
    inputs = np.zeros((length, num, policy.input_size), dtype=np.float32)
    rewards, dones, mask = (np.zeros((length, num), dtype=np.float32) for _ in range(3))
    x_all = torch.from_numpy(inputs) if device.type == "cpu" else None
    actions: list[Tensor] = []
    dists: list[PolicyOutput] = []
    states = torch.empty(length, num, policy.state_size, device=device)
    h = policy.initial_state(num, device)
    chunk_h0 = []
    obs_np, _ = vec.reset(seed=seed, options={"tasks": list(tasks)})
    for e in range(episodes_per_trial):
        if e > 0:  # a new episode of the same task; the recurrent state carries on
            obs_np, _ = vec.reset(options={"reset_mask": np.ones(num, dtype=np.bool_)})
        alive = np.ones(num, dtype=np.bool_)
        for t in range(horizon):
            i = e * horizon + t
            if i % chunk == 0:
                chunk_h0.append(h)
            inputs[i, :, :obs_dim] = obs_np
            x = x_all[i] if x_all is not None else torch.as_tensor(inputs[i], device=device)
            h_new, dist = step(x, h)
            action = sample_actions(policy, dist, generator, rows)
            action_np = action.cpu().numpy()  # the one transfer of this step's actions
            obs_np, reward_np, terminated, _, _ = vec.step(actions_to_env(action_np, vec))
            terminated = np.asarray(terminated, dtype=np.bool_)
            states[i] = h_new
            actions.append(action)
            dists.append(dist)
            rewards[i], dones[i], mask[i] = reward_np, terminated, alive
            everyone = bool(alive.all())
            h = (
                h_new
                if everyone
                else torch.where(torch.as_tensor(alive, device=device)[:, None], h_new, h)
            )
            if i + 1 < length:  # the next step's previous action, reward and done
                carry = inputs[i + 1, :, obs_dim:]
                if policy.discrete:
                    carry[np.arange(num), action_np] = 1.0
                else:
                    carry[:, :act] = action_np
                carry[:, act] = reward_np
                carry[:, act + 1] = terminated if t < horizon - 1 else 1.0  # episode over
                if not everyone:  # a padding step leaves them unchanged
                    carry[~alive] = inputs[i, ~alive, obs_dim:]
            alive &= ~terminated
            if t < horizon - 1 and terminated.any():  # pad the rest of the episode
                obs_np, _ = vec.reset(options={"reset_mask": terminated})

    def stack(x: Tensor) -> Tensor:  # [E*H, N, ...] -> [N, E, H, ...], contiguous (as before:
        # a strided batch changes the order of later reductions, hence their last bits)
        x = x.transpose(0, 1).contiguous()
        return x.view(num, episodes_per_trial, horizon, *x.shape[2:])

    def host(x: np.ndarray) -> Tensor:
        return stack(torch.as_tensor(x, device=device))

    valid = host(mask)
    action_t = torch.stack(actions)
    loc = torch.stack([d.loc for d in dists])
    log_std = None if step.log_std is None else step.log_std.expand_as(loc)
    log_probs = policy.log_prob(PolicyOutput(loc, log_std), action_t)
    x_t = host(inputs)
    # step by step, as the sampler's batch of N rows: the same bits as a value head inside the loop
    values = torch.stack([step.value(s) for s in states])
    index = torch.arange(episodes_per_trial, device=device).view(1, -1, 1)
    return TrialBatch(
        obs=x_t[..., :obs_dim].contiguous(),
        actions=stack(action_t),
        rewards=host(rewards) * valid,
        log_probs=stack(log_probs),
        values=stack(values) * valid,
        dones=host(dones) * valid,
        mask=valid,
        inputs=x_t,
        episode_index=index.expand(num, episodes_per_trial, horizon).clone(),
        chunk_h0=torch.stack(chunk_h0, dim=1),
        chunk_len=chunk,
    )


def trial_gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> GAEResult:
    """GAE over whole trials: one long episode per trial (Duan et al. 2016, §2.2).

    The value bootstraps across the episode boundaries of a trial (the last step of episode
    ``e`` from the first state of episode ``e + 1``, also across padding after an early
    termination) and never across trials: each row is one trial and ends at its last valid step.
    Padding is squeezed out before :func:`~metarl.rl.returns.gae` (which would treat a step
    followed by padding as terminal) and put back after.

    Args:
        rewards: ``reward_t``, ``[N, E, H]`` (or one flat trial per row, ``[N, L]``).
        values: ``value_t``, shape of ``rewards``.
        mask: Validity, shape of ``rewards``.
        gamma: Discount factor in [0, 1].
        lam: GAE λ in [0, 1].

    Returns:
        :class:`~metarl.rl.returns.GAEResult`, shaped like ``rewards``, zero on padding.

    Raises:
        ValueError: If shapes disagree or ``rewards`` has fewer than 2 axes.
    """
    if not isinstance(rewards, Tensor) or rewards.dim() not in (2, 3):
        got = list(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"rewards must have shape [N, E, H] or [N, L], got {got}")
    for name, value in (("values", values), ("mask", mask)):
        if not isinstance(value, Tensor) or value.shape != rewards.shape:
            got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"{name} must have the shape of rewards {list(rewards.shape)}, got {got}"
            )
    shape = rewards.shape
    r, v, m = (x.reshape(shape[0], -1) for x in (rewards, values, mask))
    valid = m != 0
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # valid steps first
    r_packed, v_packed, m_packed = (x.gather(1, order) for x in (r, v, valid.to(r.dtype)))
    result = gae(r_packed, v_packed, m_packed, gamma, lam)
    back = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )
    adv, ret = (x.gather(1, back).reshape(shape) for x in result)
    zero = torch.zeros((), dtype=adv.dtype, device=adv.device)
    return GAEResult(torch.where(mask != 0, adv, zero), torch.where(mask != 0, ret, zero))


def to_chunks(x: Tensor, chunk_len: int) -> Tensor:
    """Cuts flattened trials into truncated-BPTT chunks, zero-padding the last one.

    Args:
        x: One sequence per trial, ``[N, L, ...]`` (e.g. ``TrialBatch.flat(batch.inputs)``).
        chunk_len: Steps per chunk, >= 1.

    Returns:
        ``[N, C, chunk_len, ...]`` with ``C = ceil(L / chunk_len)``; the padding is zero (so a
        padded mask is 0).

    Raises:
        ValueError: If ``chunk_len`` < 1 or ``x`` has fewer than 2 axes.
    """
    if isinstance(chunk_len, bool) or not isinstance(chunk_len, int) or chunk_len < 1:
        raise ValueError(f"chunk_len must be an int >= 1, got {chunk_len!r}")
    if not isinstance(x, Tensor) or x.dim() < 2:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape [N, L, ...], got {got}")
    length = x.shape[1]
    chunks = num_chunks(length, chunk_len)
    pad = chunks * chunk_len - length
    if pad:
        x = torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], dim=1)
    return x.reshape(x.shape[0], chunks, chunk_len, *x.shape[2:])


class TrialChunks(NamedTuple):
    """Trials cut into truncated-BPTT chunks for an update, ``[trial N, chunk C, time T, ...]``.

    Attributes:
        inputs: GRU inputs ``[N, C, T, input_size]``.
        actions: ``[N, C, T]`` int64 or ``[N, C, T, act_dim]``.
        log_probs: Log-probabilities at sampling time, ``[N, C, T]``.
        advantages: ``[N, C, T]``, constants.
        returns: Value targets ``[N, C, T]``.
        mask: Validity ``[N, C, T]`` (0 on padding, also after the trial's last step).
        h0: The state stored by the sampler before each chunk, ``[N, C, state_size]``.
    """

    inputs: Tensor
    actions: Tensor
    log_probs: Tensor
    advantages: Tensor
    returns: Tensor
    mask: Tensor
    h0: Tensor

    def select(self, trials: Tensor) -> TrialChunks:
        """All chunks of some trials as independent sequences, ``[len(trials) * C, T, ...]``."""
        return TrialChunks(*(x[trials].flatten(0, 1) for x in self))

    def flatten(self) -> TrialChunks:
        """Every chunk as an independent sequence, ``[N * C, T, ...]``."""
        return TrialChunks(*(x.flatten(0, 1) for x in self))


def chunk_trials(batch: TrialBatch, advantages: Tensor, returns: Tensor) -> TrialChunks:
    """Cuts a batch's trials, with their advantages and returns ``[N, E, H]``, into its chunks.

    Raises:
        ValueError: If ``advantages`` or ``returns`` is not shaped like ``batch.rewards``.
    """
    for name, value in (("advantages", advantages), ("returns", returns)):
        if value.shape != batch.rewards.shape:
            raise ValueError(
                f"{name} must have the shape of the batch's rewards {list(batch.rewards.shape)}, "
                f"got {list(value.shape)}"
            )
    fields = (batch.inputs, batch.actions, batch.log_probs, advantages, returns, batch.mask)
    inputs, actions, log_probs, adv, ret, mask = (
        to_chunks(batch.flat(x), batch.chunk_len) for x in fields
    )
    return TrialChunks(inputs, actions, log_probs, adv, ret, mask, batch.chunk_h0)


def chunk_forward(policy: RecurrentPolicy, params: Params, chunks: TrialChunks) -> RecurrentOutput:
    """The policy over chunks as sequences ``[B, T, ...]``, each from its stored initial state.

    ``chunks`` comes from :meth:`TrialChunks.select` or :meth:`TrialChunks.flatten`.
    """
    return recurrent_forward(policy, params, chunks.inputs, chunks.h0, mask=chunks.mask)


def trial_step_rewards(
    vec: TaskVectorEnv,
    policy: RecurrentPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_trial: int,
    *,
    seed: int,
    device: torch.device,
) -> Tensor:
    """The reward of every step of one trial per task, ``[len(tasks), episodes_per_trial, H]``.

    0 after an episode ended early. Tasks run ``vec.num_envs`` at a time (the last chunk padded
    by repetition, then dropped); chunk ``c`` resets the env with seed ``seed + c * num_envs``.
    Actions are sampled: the exploration is part of the learned algorithm.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = []
    chunks = list(task_chunks(tasks, vec.num_envs))
    mine = distributed.shard(len(chunks))  # with several ranks, each runs its chunks
    for c, (chunk, real) in enumerate(chunks):
        if c not in mine:
            if len(mine) and c < mine.start:  # an earlier rank's chunk: its noise drawn, unused
                draws = episodes_per_trial * int(vec.horizon or 1)
                skip_noise(policy, _noise_template(vec, policy, params, device), generator, draws)
            continue
        batch = sample_trials(
            vec,
            policy,
            params,
            chunk,
            episodes_per_trial,
            generator=generator,
            device=device,
            seed=seed + c * vec.num_envs,
        )
        rows.append((batch.rewards * batch.mask)[:real])
    return torch.cat(gathered_rows(rows, device), dim=0)


def _noise_template(
    vec: TaskVectorEnv, policy: RecurrentPolicy, params: Params, device: torch.device
) -> Any:
    """An action distribution shaped as :func:`sample_trials` draws from, for ``vec.num_envs``."""
    num = vec.num_envs
    obs = torch.zeros(num, *(vec.single_observation_space.shape or ()), device=device)
    zeros = torch.zeros(num, device=device)
    x = policy.encode_inputs(obs, torch.zeros(num, policy.action_size, device=device), zeros, zeros)
    h0 = policy.initial_state(num, device)
    dist: Any = recurrent_forward(policy, params, x[:, None], h0).dist
    return type(dist)(*(v[:, 0] if v is not None else None for v in dist))


def evaluate_trials(
    out: Path,
    *,
    algorithm: str,
    task_family: str,
    vec: TaskVectorEnv,
    policy: RecurrentPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_trial: int,
    seed: int,
    device: torch.device,
    baselines: bool = True,
    extra: Mapping[str, Any] | None = None,
    logger: Logger | None = None,
    curve: str = "agent",
) -> Path:
    """One trial per held-out task; the return of each episode index, written as JSON/CSV/PNG.

    The curves (:func:`~metarl.evaluation.write_eval_results`, ``steps`` = the episode index
    within the trial, x label "episode in trial") are ``curve`` (:func:`trial_step_rewards`,
    summed per episode) and, with ``baselines``, the :func:`classic_baselines` on the same
    tasks. The total trial return of every curve (RL²'s score: mean and 95% CI over tasks) goes
    under ``extra.trial_return``, and its trial return minus each baseline's on the same task
    (:func:`minus_baselines`) under ``extra.trial_return_paired``; the last episode's return minus
    the first's on the same task (:func:`paired_difference`) under ``extra.last_minus_first``.

    Args:
        out: The JSON file to write (CSV and PNG beside it).
        algorithm: Name of the evaluated algorithm.
        task_family: Name of the task family (the env id).
        vec: Vector env of the task family (``autoreset_mode="disabled"``, a horizon).
        policy: The recurrent policy.
        params: Its parameters.
        tasks: The held-out tasks.
        episodes_per_trial: Episodes per trial.
        seed: Seed of the env resets, the actions and the baselines.
        device: Where the policy runs.
        baselines: Add the classic baselines (bandits and tabular MDPs only).
        extra: More JSON-serialisable information for the results file.
        logger: Also log ``eval/<curve>/return`` scalars here.
        curve: Name of the evaluated policy's curve (RL² passes ``"rl2"``).

    Returns:
        The JSON path.
    """
    recorder = SuccessRecorder(vec)  # envs that report info["success"] (Meta-World)
    rewards = trial_step_rewards(
        cast(TaskVectorEnv, recorder),
        policy,
        params,
        tasks,
        episodes_per_trial,
        seed=seed,
        device=device,
    )
    curves = {curve: rewards.sum(-1).cpu().numpy()}
    horizon = int(vec.horizon or 1)
    if baselines:
        curves.update(classic_baselines(tasks, episodes_per_trial, horizon, seed))
    totals: dict[str, dict[str, float | None]] = {}
    for name, values in curves.items():
        totals[name] = mean_ci(values.sum(axis=1))  # one task: no interval
    _log.info("trial return on %d held-out tasks: %s", len(tasks), totals)
    info: dict[str, Any] = {
        "episodes_per_trial": episodes_per_trial,
        "horizon": horizon,
        "trial_return": totals,
    }
    if len(curves) > 1:  # above or below each baseline on the same tasks? paired
        info["trial_return_paired"] = minus_baselines(curves, curve)
    if episodes_per_trial > 1:  # does the return rise within a trial? paired, task by task
        info["last_minus_first"] = paired_difference(curves[curve], curve)
    if rewards.shape[-1] > 1:  # within each episode: how fast the return comes
        info["return_by_window"] = {"curve": curve, **windowed_returns(rewards.cpu().numpy())}
    success = gathered_success_table(
        recorder.records, len(tasks), vec.num_envs, episodes_per_trial
    )  # every rank's records, on rank 0
    if success is not None:
        info["success"] = write_success_results(
            out,
            algorithm=algorithm,
            task_family=task_family,
            steps=range(episodes_per_trial),
            curves={curve: success},
            tasks=tasks,
            seed=seed,
            main=curve,
            x_label="episode in trial",
        )
    if not distributed.world().is_main:  # every rank evaluates alike; rank 0 writes the files
        return out
    return write_eval_results(
        out,
        algorithm=algorithm,
        task_family=task_family,
        metric="return",
        steps=list(range(episodes_per_trial)),
        curves=curves,
        seed=seed,
        extra={**info, **(extra or {})},
        main=curve,
        x_label="episode in trial",
        logger=logger,
    ).json

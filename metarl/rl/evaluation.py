"""Evaluation pieces shared by the meta-RL learners: held-out tasks, adaptation curves, the oracle.

- :func:`heldout_tasks`: the seeded held-out task sample (the fixed test split where the family
  has one, as the MAML test scripts draw 40 tasks from ``np.random.seed(1)`` in cbfinn/maml_rl).
- :func:`adaptation_curve`: the mean return of each task after 0, 1, ..., k adaptation steps, each
  step sampling fresh episodes with the current (per-task) parameters, as in the MAML test protocol.
- The oracle of MAML's Figures 4-5 ("the oracle receives the task parameter as input", §5.3): one
  stable-baselines3 PPO trained on the multi-task env whose observations carry the task parameters
  (:class:`TaskObservationWrapper`, :func:`train_oracle`), evaluated on each held-out task
  (:func:`oracle_returns`).

Tasks are evaluated in chunks as large as the vector env holds; the last chunk is padded by
repeating its last task and the padding is dropped from the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.core import Task, TaskDistribution
from envs.vector import TaskVectorEnv
from metarl import distributed
from metarl.checkpoint import load_checkpoint, save_checkpoint
from metarl.evaluation import write_eval_results
from metarl.functional import Params
from metarl.logger import Logger
from metarl.rl.parallel import gathered_rows, skip_noise
from metarl.rl.policies import MLPPolicy, policy_forward
from metarl.rl.sampler import EpisodeBatch, sample_episodes
from metarl.rl.success import SuccessRecorder, gathered_success_table, write_success_results

__all__ = [
    "AdaptFn",
    "OracleSpec",
    "Start",
    "TaskObservationWrapper",
    "adaptation_curve",
    "cached_weights",
    "evaluate_adaptation",
    "heldout_tasks",
    "oracle_curve",
    "OBS_MEAN",
    "OBS_VAR",
    "OracleSettings",
    "SB3_DEFAULTS",
    "oracle_policy_state",
    "oracle_returns",
    "task_chunks",
    "task_vector",
    "train_oracle",
]

_log = logging.getLogger(__name__)

AdaptFn = Callable[[Params, EpisodeBatch, int], Params]
"""``adapt_fn(params, batch, step) -> per-task params``: one adaptation step from the episodes
``batch`` (``[task, episode, time, ...]``) sampled with ``params`` (shared at step 0, per-task
``{name: [task, *shape]}`` after)."""


def heldout_tasks(
    distribution: TaskDistribution, num_tasks: int, seed: int, split: str = "test"
) -> list[Task]:
    """Draws the held-out tasks of an evaluation from ``np.random.default_rng(seed)``.

    Args:
        distribution: The task distribution of the env family.
        num_tasks: Number of tasks (>= 1).
        seed: Seed of the draw (MAML's test scripts use 1).
        split: ``"train"`` or ``"test"`` draw from that fixed set where the family has one (e.g.
            the two directions of HalfCheetahDir); any other split, or a family without fixed
            sets, draws fresh tasks.

    Returns:
        ``num_tasks`` tasks.

    Raises:
        ValueError: If ``num_tasks`` < 1.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    rng = np.random.default_rng(seed)
    if split in ("train", "test"):
        try:
            distribution.split_tasks(split)
        except ValueError:
            return distribution.sample(num_tasks, rng)
        return distribution.sample(num_tasks, rng, split=split)
    return distribution.sample(num_tasks, rng)


def task_chunks(tasks: Sequence[Task], size: int) -> Iterator[tuple[list[Task], int]]:
    """Yields ``(chunk, real)``: ``size`` tasks, the last chunk padded by repetition."""
    for start in range(0, len(tasks), size):
        chunk = list(tasks[start : start + size])
        real = len(chunk)
        yield chunk + [chunk[-1]] * (size - real), real


def adaptation_curve(
    vec: TaskVectorEnv,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Task],
    episodes_per_task: int,
    *,
    steps: int,
    adapt_fn: AdaptFn,
    generator: torch.Generator,
    device: torch.device,
    seed: int,
) -> Tensor:
    """Mean episode return of every task after 0..steps adaptation steps.

    Step ``k`` samples ``episodes_per_task`` fresh episodes per task with the parameters after
    ``k`` steps, records their mean return, then (for ``k < steps``) calls ``adapt_fn``.

    Args:
        vec: Vector env with ``chunk * episodes_per_task`` sub-envs; tasks run ``chunk`` at a time.
        policy: The policy module (a function of ``params``).
        params: Shared starting parameters ``{name: [*shape]}`` (the policy's only).
        tasks: The held-out tasks (any number).
        episodes_per_task: Episodes per task and step.
        steps: Number of adaptation steps ``K`` (>= 0).
        adapt_fn: One adaptation step, see :data:`AdaptFn`.
        generator: Draws the action noise.
        device: Where the policy runs.
        seed: Reset seed of the env; step ``k`` of chunk ``c`` uses a distinct derived seed.

    Returns:
        ``[len(tasks), steps + 1]`` mean undiscounted returns, on ``device``.

    Raises:
        ValueError: If ``vec.num_envs`` is not a multiple of ``episodes_per_task``.
    """
    if vec.num_envs % episodes_per_task:
        raise ValueError(
            f"vec has {vec.num_envs} sub-envs, not a multiple of episodes_per_task="
            f"{episodes_per_task}"
        )
    size = vec.num_envs // episodes_per_task
    rows = []
    chunks = list(task_chunks(tasks, size))
    mine = distributed.shard(len(chunks))  # with several ranks, each runs its chunks
    for c, (chunk, real) in enumerate(chunks):
        if c not in mine:
            if len(mine) and c < mine.start:  # an earlier rank's chunk: its noise drawn, unused
                shape = (vec.num_envs, *(vec.single_observation_space.shape or ()))
                template = policy_forward(policy, params, torch.zeros(shape, device=device), False)
                skip_noise(policy, template, generator, (steps + 1) * _horizon(vec))
            continue
        current, per_task, returns = params, False, []
        for k in range(steps + 1):
            batch = sample_episodes(
                vec,
                policy,
                current,
                chunk,
                episodes_per_task,
                per_task_params=per_task,
                generator=generator,
                device=device,
                seed=seed + (c * (steps + 1) + k) * vec.num_envs,
            )
            returns.append(batch.episode_returns.mean(1))
            if k < steps:
                current, per_task = adapt_fn(current, batch, k), True
        rows.append(torch.stack(returns, dim=1)[:real])
    return torch.cat(gathered_rows(rows, device), dim=0)


# ----------------------------------------------------------------------------------------------
# the oracle
# ----------------------------------------------------------------------------------------------


def task_vector(task: Task) -> np.ndarray:
    """The task's parameters flattened in field order, ``[task_dim]`` float32.

    Example:
        >>> from envs.light.navigation import Navigation2DTask
        >>> task_vector(Navigation2DTask(goal=(0.1, -0.2))).tolist() == [
        ...     np.float32(0.1), np.float32(-0.2)]
        True
    """
    values = [np.asarray(v, dtype=np.float64).reshape(-1) for v in task.to_dict().values()]
    return np.concatenate(values).astype(np.float32)


class TaskObservationWrapper(gym.ObservationWrapper):
    """Appends the current task's parameters (:func:`task_vector`) to every observation.

    The wrapped env must be a metarl task env (``env.unwrapped.task`` is the episode's task);
    with no fixed task it samples one per episode, so a learner sees the whole distribution.

    Args:
        env: A metarl task env (possibly wrapped, e.g. in a ``TimeLimit``).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.observation_space
        if not isinstance(base, spaces.Box) or len(base.shape) != 1:
            raise ValueError(f"TaskObservationWrapper needs a 1-D Box observation, got {base}")
        probe = env.unwrapped.distribution.sample(1, np.random.default_rng(0))[0]  # type: ignore[attr-defined]
        extra = len(task_vector(probe))
        low = np.concatenate([base.low, np.full(extra, -np.inf)]).astype(np.float32)
        high = np.concatenate([base.high, np.full(extra, np.inf)]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """``[obs_dim]`` -> ``[obs_dim + task_dim]`` float32."""
        task = self.env.unwrapped.task  # type: ignore[attr-defined]
        return np.concatenate([observation, task_vector(task)]).astype(np.float32)


class OracleSettings(NamedTuple):
    """PPO settings of the oracle; the defaults are stable-baselines3's own.

    Attributes:
        n_steps: Rollout length per env (capped at ``total_timesteps // num_envs`` for tiny runs).
        batch_size: PPO minibatch size.
        normalize: Wrap the envs in SB3's ``VecNormalize`` (running mean/std of the observations,
            scaled rewards), as rl-baselines3-zoo does for PPO on every MuJoCo env; the observation
            statistics are saved with the policy's weights and applied when the oracle acts.
    """

    n_steps: int = 2048
    batch_size: int = 64
    normalize: bool = False


SB3_DEFAULTS = OracleSettings()
"""stable-baselines3's own PPO settings, no normalisation."""

OBS_MEAN, OBS_VAR = "vec_normalize.obs_mean", "vec_normalize.obs_var"
"""Keys of the observation statistics in :func:`oracle_policy_state` (normalized oracles only)."""


def _oracle_model(
    env_id: str,
    env_kwargs: Mapping[str, Any],
    horizon: int | None,
    total_timesteps: int,
    num_envs: int,
    seed: int,
    device: torch.device,
    settings: OracleSettings,
) -> Any:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

    def make() -> gym.Env:
        return TaskObservationWrapper(gym.make(env_id, max_episode_steps=horizon, **env_kwargs))

    venv: VecEnv = DummyVecEnv([make] * num_envs)
    venv.seed(seed)
    if settings.normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
    # A rollout of at most n_steps per env, shorter for tiny budgets (SB3 collects at least one).
    n_steps = int(min(settings.n_steps, max(8, total_timesteps // num_envs)))
    batch_size = int(min(settings.batch_size, n_steps * num_envs))
    return PPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=batch_size,
        seed=seed,
        device=device,
        verbose=0,
    )


def train_oracle(
    env_id: str,
    *,
    env_kwargs: Mapping[str, Any],
    horizon: int | None,
    total_timesteps: int,
    num_envs: int,
    seed: int,
    device: torch.device,
    state: Mapping[str, Tensor] | None = None,
    settings: OracleSettings = SB3_DEFAULTS,
) -> Any:
    """Trains (or, given ``state``, rebuilds) stable-baselines3 PPO on task-augmented observations.

    One PPO learns on the multi-task env (each episode a fresh task) with the task parameters
    appended to the observation, so it can specialise per task; ``settings`` default to SB3's
    own hyperparameters.
    Note that SB3 re-seeds the global RNGs (``random``, numpy, torch) from ``seed`` when it builds
    the model; metarl's own randomness comes from explicit generators and is not affected.

    Args:
        env_id: A registered metarl task env id.
        env_kwargs: Env constructor options (as for the meta-learner's env).
        horizon: Episode length (None: the registered one).
        total_timesteps: PPO's training budget in env steps (0 with ``state``: no training).
        num_envs: Parallel envs of PPO's ``DummyVecEnv``.
        seed: Seed of PPO and its envs.
        device: Where PPO's networks live.
        state: A policy state dict from :func:`oracle_policy_state`; if given, it is loaded and no
            training happens.
        settings: PPO's rollout length, minibatch size and observation normalisation.

    Returns:
        The ``stable_baselines3.PPO`` model.

    Raises:
        ValueError: If ``state`` does (not) hold observation statistics while ``settings`` do
            (not) normalize.
    """
    model = _oracle_model(
        env_id, env_kwargs, horizon, total_timesteps, num_envs, seed, device, settings
    )
    if state is not None:
        weights = {k: v for k, v in state.items() if k not in (OBS_MEAN, OBS_VAR)}
        if (OBS_MEAN in state) != settings.normalize:
            have = "has" if OBS_MEAN in state else "has no"
            raise ValueError(
                f"the oracle's saved state {have} observation statistics, but normalize is "
                f"{settings.normalize}: the state was saved with other oracle settings"
            )
        model.policy.load_state_dict(weights)
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            vec_normalize.obs_rms.mean = state[OBS_MEAN].double().cpu().numpy()
            vec_normalize.obs_rms.var = state[OBS_VAR].double().cpu().numpy()
            vec_normalize.training = False
    elif total_timesteps > 0:
        model.learn(total_timesteps=total_timesteps)
    return model


def oracle_policy_state(model: Any) -> dict[str, Tensor]:
    """The oracle's policy weights and observation statistics, for a ``weights_only`` checkpoint."""
    state = {k: v.detach().cpu() for k, v in model.policy.state_dict().items()}
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        state[OBS_MEAN] = torch.as_tensor(vec_normalize.obs_rms.mean, dtype=torch.float64)
        state[OBS_VAR] = torch.as_tensor(vec_normalize.obs_rms.var, dtype=torch.float64)
    return state


def _horizon(vec: TaskVectorEnv) -> int:
    if vec.horizon is None:
        raise ValueError("the vector env needs a horizon to run fixed-length episodes")
    return vec.horizon


def oracle_returns(
    model: Any, vec: TaskVectorEnv, tasks: Sequence[Task], episodes_per_task: int, seed: int
) -> np.ndarray:
    """Mean return of the oracle's deterministic policy on each task.

    Args:
        model: A model from :func:`train_oracle`.
        vec: Vector env with ``chunk * episodes_per_task`` sub-envs and a horizon.
        tasks: The held-out tasks.
        episodes_per_task: Episodes per task.
        seed: Reset seed of the env.

    Returns:
        ``[len(tasks), 1]`` mean undiscounted returns.
    """
    size = vec.num_envs // episodes_per_task
    vec_normalize = model.get_vec_normalize_env()
    rows = []
    for c, (chunk, real) in enumerate(task_chunks(tasks, size)):
        env_tasks = [task for task in chunk for _ in range(episodes_per_task)]
        obs, _ = vec.reset(seed=seed + c * vec.num_envs, options={"tasks": env_tasks})
        extra = np.stack([task_vector(task) for task in env_tasks])
        alive = np.ones(vec.num_envs)
        total = np.zeros(vec.num_envs)
        for _ in range(_horizon(vec)):
            augmented = np.concatenate([obs, extra], axis=1).astype(np.float32)
            if vec_normalize is not None:  # the statistics PPO trained with
                augmented = vec_normalize.normalize_obs(augmented)
            action, _ = model.predict(augmented, deterministic=True)
            obs, reward, terminated, _, _ = vec.step(action.astype(vec.single_action_space.dtype))
            total += alive * reward
            alive *= 1.0 - terminated
        rows.append(total.reshape(size, episodes_per_task).mean(1, keepdims=True)[:real])
    return np.concatenate(rows, axis=0)


def cached_weights(
    path: Path | None, build: Callable[[], Mapping[str, Tensor]], device: torch.device
) -> dict[str, Tensor]:
    """Loads weights saved at ``path`` (``weights_only``), or builds them and saves them there.

    Args:
        path: Checkpoint file of the weights (None: always build, never save).
        build: Produces the weights (e.g. trains a baseline).
        device: Where the returned tensors live.

    Returns:
        ``{name: Tensor}`` on ``device``.
    """
    if path is not None and path.is_file():
        return load_checkpoint(path, map_location=device)["params"]
    weights = {k: v.detach() for k, v in build().items()}
    if path is not None and distributed.world().is_main:
        save_checkpoint(path, {"params": {k: v.cpu() for k, v in weights.items()}})
    return {k: v.to(device) for k, v in weights.items()}


class OracleSpec(NamedTuple):
    """How to train the oracle (see :func:`train_oracle`) and where to cache its weights."""

    env_id: str
    env_kwargs: Mapping[str, Any]
    horizon: int | None
    timesteps: int
    num_envs: int
    seed: int
    cache: Path | None = None
    settings: OracleSettings = SB3_DEFAULTS


def oracle_curve(
    spec: OracleSpec,
    vec: TaskVectorEnv,
    tasks: Sequence[Task],
    episodes_per_task: int,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """Trains (or loads from ``spec.cache``) the oracle and returns its ``[tasks, 1]`` returns."""
    kwargs: dict[str, Any] = {
        "env_kwargs": spec.env_kwargs,
        "horizon": spec.horizon,
        "num_envs": spec.num_envs,
        "settings": spec.settings,
    }

    def build() -> dict[str, Tensor]:
        model = train_oracle(
            spec.env_id, total_timesteps=spec.timesteps, seed=spec.seed, device=device, **kwargs
        )
        return oracle_policy_state(model)

    state = cached_weights(spec.cache, build, device)
    model = train_oracle(
        spec.env_id, total_timesteps=0, seed=spec.seed, device=device, state=state, **kwargs
    )
    return oracle_returns(model, vec, tasks, episodes_per_task, seed)


class Start(NamedTuple):
    """A curve of :func:`evaluate_adaptation`: where adaptation starts and how it steps.

    Attributes:
        params: Builds the starting parameters (called once; e.g. pre-trains a baseline).
        adapt_fn: One adaptation step (:data:`AdaptFn`).
        cache: Where the starting parameters are cached (:func:`cached_weights`), or None.
    """

    params: Callable[[], Mapping[str, Tensor]]
    adapt_fn: AdaptFn
    cache: Path | None = None


def evaluate_adaptation(
    out: Path,
    *,
    algorithm: str,
    task_family: str,
    vec: TaskVectorEnv,
    policy: MLPPolicy,
    tasks: Sequence[Task],
    episodes_per_task: int,
    starts: Mapping[str, Start],
    steps: int,
    seed: int,
    device: torch.device,
    oracle: OracleSpec | None = None,
    extra: Mapping[str, Any] | None = None,
    logger: Logger | None = None,
) -> Path:
    """Adaptation curves of several starting points (and the oracle), written as JSON/CSV/PNG.

    Every start is evaluated on the same tasks with the same env seeds: its mean return after
    0..steps adaptation steps (:func:`adaptation_curve`). The oracle's return needs no adaptation
    and is repeated over the steps (a level line in the plot). The first start is the main curve.

    Args:
        out: The JSON file to write (CSV and PNG beside it).
        algorithm: Name of the evaluated algorithm.
        task_family: Name of the task family (the env id).
        vec: Vector env with ``chunk * episodes_per_task`` sub-envs.
        policy: The policy module shared by every start.
        tasks: The held-out tasks.
        episodes_per_task: Episodes per task and step.
        starts: Curve name -> :class:`Start`.
        steps: Adaptation steps ``K``.
        seed: Seed of the env resets and the action noise.
        device: Where the policies run.
        oracle: The oracle to add as curve ``"oracle"``, or None.
        extra: More JSON-serialisable information for the results file.
        logger: Also log ``eval/<curve>/return`` scalars here.

    Returns:
        The JSON path.
    """
    curves: dict[str, np.ndarray] = {}
    successes: dict[str, np.ndarray] = {}  # envs that report info["success"] (Meta-World)
    recorder = SuccessRecorder(vec)
    for name, start in starts.items():
        params = cached_weights(start.cache, start.params, device)
        recorder.clear()
        values = adaptation_curve(
            cast(TaskVectorEnv, recorder),
            policy,
            params,
            tasks,
            episodes_per_task,
            steps=steps,
            adapt_fn=start.adapt_fn,
            generator=torch.Generator(device=device).manual_seed(seed),
            device=device,
            seed=seed,
        )
        curves[name] = values.cpu().numpy()
        size = vec.num_envs // episodes_per_task
        table = gathered_success_table(
            recorder.records, len(tasks), size, steps + 1, episodes_per_task
        )
        if table is not None:  # rank 0 (the other ranks' records went to it)
            successes[name] = table
    if successes and distributed.world().is_main:
        success = write_success_results(
            out,
            algorithm=algorithm,
            task_family=task_family,
            steps=range(steps + 1),
            curves=successes,
            tasks=tasks,
            seed=seed,
            main=next(iter(starts)),
        )
        extra = {**(extra or {}), "success": success}
    # the oracle needs no other rank, and only rank 0 writes: the others would train (when its
    # cache is missing) and evaluate one for nothing
    if oracle is not None and distributed.world().is_main:
        oracle_returns = oracle_curve(oracle, vec, tasks, episodes_per_task, seed, device)
        curves["oracle"] = np.repeat(oracle_returns, steps + 1, axis=1)
    if not distributed.world().is_main:  # every rank evaluates alike; rank 0 writes the files
        return out
    return write_eval_results(
        out,
        algorithm=algorithm,
        task_family=task_family,
        metric="return",
        steps=list(range(steps + 1)),
        curves=curves,
        seed=seed,
        extra=extra,
        main=next(iter(starts)),
        logger=logger,
    ).json

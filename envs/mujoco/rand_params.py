"""HopperRandParams and Walker2DRandParams as batched engines.

Source: github.com/dennisl88/rand_param_envs, used by PEARL and ProMP.

A task scales four arrays of the MjModel element by element (``rand_param_envs/base.py``,
``log_scale_limit = 3``): ``body_mass`` and ``body_inertia`` by ``1.5**u``, ``dof_damping`` by
``1.3**u`` and ``geom_friction`` by ``1.5**u``, with ``u ~ U[-3, 3]`` per element. Each
sub-environment has its own copy of the model; a task is applied at reset by multiplying the
model's *original* values (kept aside), so a new task never compounds on the previous one.

Reward (``info`` holds each term): ``reward_forward = (x' - x) / dt``, ``reward_ctrl = -1e-3 *
sum(a**2)``, ``reward_survive = 1`` (paid every step, as in rand_param_envs; gymnasium v5 pays it
only on healthy steps: ``survive_only_when_healthy=True``). One :class:`RandParamsEngine` serves
both; each id registers its model and healthy ranges. Termination:

* Hopper: non-finite state, ``|(qpos[2:], qvel)| >= 100``, height ``qpos[1] <= 0.7`` or
  ``|angle| >= 0.2``;
* Walker2D: height ``qpos[1]`` not in ``(0.8, 2.0)`` or angle ``qpos[2]`` not in ``(-1, 1)``.

Observation: ``qpos[1:]`` and ``clip(qvel, -10, 10)``, the layout of gymnasium v5's Hopper (11-d)
and Walker2d (17-d). ``frame_skip = 4`` for both (``RandomEnv`` hard-codes 4), ``dt = 0.008`` s.
The Walker2D model is gymnasium's ``walker2d_v5.xml`` (both feet friction 1.9); pass
``xml_file="walker2d.xml"`` for the v2-v4 model (right foot 0.9) that rand_param_envs used.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from envs.checks import check_interval, check_number, check_vector
from envs.core import EngineStep, Task, TaskDistribution
from envs.mujoco.base import MujocoEngine, resolve_xml

__all__ = [
    "MULTIPLIER_BASES",
    "RAND_PARAMS",
    "DynamicsDistribution",
    "DynamicsTask",
    "RandParamsEngine",
    "model_shapes",
]

#: The randomised model arrays, in rand_param_envs' sampling order.
RAND_PARAMS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
#: Base of each parameter's multiplier ``base**u`` (rand_param_envs/base.py).
MULTIPLIER_BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


@functools.lru_cache(maxsize=16)
def model_shapes(xml_path: str) -> dict[str, tuple[int, ...]]:
    """Returns the shape of each array in :data:`RAND_PARAMS` for a model XML."""
    model = mujoco.MjModel.from_xml_path(xml_path)
    return {name: tuple(getattr(model, name).shape) for name in RAND_PARAMS}


@dataclasses.dataclass(frozen=True)
class DynamicsTask(Task):
    """Per-element multipliers of the model's dynamics parameters (1.0 = unchanged).

    Attributes:
        body_mass: ``[nbody]`` multipliers of ``body_mass``.
        body_inertia: ``[nbody, 3]`` multipliers of ``body_inertia``.
        dof_damping: ``[nv]`` multipliers of ``dof_damping``.
        geom_friction: ``[ngeom, 3]`` multipliers of ``geom_friction``.
    """

    family: ClassVar[str] = "dynamics"
    body_mass: tuple[float, ...]
    body_inertia: tuple[tuple[float, ...], ...]
    dof_damping: tuple[float, ...]
    geom_friction: tuple[tuple[float, ...], ...]


class DynamicsDistribution(TaskDistribution):
    """Multipliers ``base**u``, ``u ~ U[-log_scale_limit, log_scale_limit]`` per element.

    Args:
        xml_file: the model whose array shapes the tasks have (``hopper.xml``).
        log_scale_limit: the exponent bound (rand_param_envs: 3.0).
        rand_params: which of :data:`RAND_PARAMS` to randomise; the others stay at 1.0.
        **kwargs: ``num_train_tasks``, ``num_test_tasks``, ``split_seed`` of
            :class:`~envs.core.TaskDistribution` (PEARL: 40 train, 10 test).
    """

    task_type = DynamicsTask
    options = ("xml_file", "log_scale_limit", "rand_params")

    def __init__(
        self,
        xml_file: str = "hopper.xml",
        log_scale_limit: float = 3.0,
        rand_params: Sequence[str] = RAND_PARAMS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.xml_file = xml_file
        self.shapes = model_shapes(str(resolve_xml(xml_file)))
        self.log_scale_limit = check_number("log_scale_limit", log_scale_limit, 0.0)
        unknown = sorted(set(rand_params) - set(RAND_PARAMS))
        if unknown or isinstance(rand_params, str):
            raise ValueError(f"rand_params must be a subset of {RAND_PARAMS}, got {rand_params!r}")
        self.rand_params = tuple(p for p in RAND_PARAMS if p in rand_params)

    def bounds(self, name: str) -> tuple[float, float]:
        """Returns the allowed multiplier range of parameter ``name``."""
        if name not in self.rand_params:
            return 1.0, 1.0
        base, limit = MULTIPLIER_BASES[name], self.log_scale_limit
        return base**-limit, base**limit

    def _sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        tasks: list[Task] = []
        limit = self.log_scale_limit
        for _ in range(n):
            values: dict[str, Any] = {}  # arrays: Task converts them to tuples
            for name in RAND_PARAMS:
                shape = self.shapes[name]
                if name in self.rand_params:
                    u = rng.uniform(-limit, limit, size=shape)
                    # Clip guards the validation bounds against pow rounding at u = +-limit.
                    values[name] = np.clip(MULTIPLIER_BASES[name] ** u, *self.bounds(name))
                else:
                    values[name] = np.ones(shape)
            tasks.append(DynamicsTask(**values))
        return tasks

    def unit_task(self) -> DynamicsTask:
        """Returns the task that leaves the model unchanged (all multipliers 1.0)."""
        ones: dict[str, Any] = {name: np.ones(self.shapes[name]) for name in RAND_PARAMS}
        return DynamicsTask(**ones)

    def validate(self, task: Task) -> None:
        """Checks each field's shape and that every multiplier lies in its range."""
        self._check_type(task)
        for name in RAND_PARAMS:
            check_vector(name, getattr(task, name), self.shapes[name], *self.bounds(name))

    def describe(self) -> dict[str, str]:
        """Returns, per parameter, the multiplier law and the array shape."""
        limit = self.log_scale_limit
        return {
            name: (
                f"{MULTIPLIER_BASES[name]}^U[{-limit}, {limit}] per element, "
                f"shape {self.shapes[name]}"
                if name in self.rand_params
                else f"1.0 (not randomised), shape {self.shapes[name]}"
            )
            for name in RAND_PARAMS
        }


class RandParamsEngine(MujocoEngine):
    """A planar walker (Hopper, Walker2d) whose dynamics parameters are the task.

    The model and the healthy ranges have no defaults: the ids ``metarl/HopperRandParams-v0`` and
    ``metarl/Walker2DRandParams-v0`` register them (``envs.make_engine(id, num_envs)``).

    Args:
        num_envs: number of sub-environments.
        xml_file: model XML in gymnasium's assets (or a path).
        ctrl_cost_weight: weight of ``sum(a**2)`` (1e-3).
        survive_reward: per-step alive bonus (1.0).
        survive_only_when_healthy: pay the bonus only on healthy steps (gymnasium v5); False pays
            it every step (rand_param_envs).
        terminate_when_unhealthy: end the episode when the state is unhealthy.
        healthy_state_range: open range of every entry of ``(qpos[2:], qvel)``, or None for no
            such check (Walker2D).
        healthy_z_range: open range of the height ``qpos[1]``.
        healthy_angle_range: open range of the torso angle ``qpos[2]``.
        frame_skip: MuJoCo steps per env step (4: ``dt = 0.008`` s).
        reset_noise_scale: ``qpos += U(-s, s)``, ``qvel += U(-s, s)`` at reset (5e-3).
        exclude_current_positions_from_observation: drop ``qpos[0]`` (x) from the observation.
        recompute_constants: call ``mj_setConst`` after scaling masses and inertias, so derived
            model constants (``body_subtreemass``, ``dof_invweight0`` used by constraint softness,
            ...) match the scaled values; False keeps rand_param_envs' behaviour.
        **kwargs: ``action_scale``, ``nonfinite_action`` (:class:`~envs.mujoco.base.MujocoEngine`)
            and the arguments of :class:`DynamicsDistribution` (``log_scale_limit``, ...).
    """

    metadata: ClassVar[dict[str, Any]] = {
        **MujocoEngine.metadata,
        "render_fps": 125,  # 1 / dt at the default frame_skip
    }
    distribution_cls = DynamicsDistribution
    reward_terms = ("reward_forward", "reward_ctrl", "reward_survive")
    extra_keys = ("x_position", "x_velocity")

    def __init__(
        self,
        num_envs: int,
        *,
        xml_file: str,
        ctrl_cost_weight: float = 1e-3,
        survive_reward: float = 1.0,
        survive_only_when_healthy: bool = False,
        terminate_when_unhealthy: bool = True,
        healthy_state_range: tuple[float, float] | None,
        healthy_z_range: tuple[float, float],
        healthy_angle_range: tuple[float, float],
        frame_skip: int = 4,
        reset_noise_scale: float = 5e-3,
        exclude_current_positions_from_observation: bool = True,
        recompute_constants: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_envs,
            xml_file=xml_file,
            frame_skip=frame_skip,
            reset_noise_scale=reset_noise_scale,
            qvel_noise="uniform",
            per_env_model=True,
            **kwargs,
        )
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight)
        self.survive_reward = check_number("survive_reward", survive_reward)
        self.survive_only_when_healthy = bool(survive_only_when_healthy)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        self.healthy_state_range = (
            None
            if healthy_state_range is None
            else check_interval("healthy_state_range", healthy_state_range)
        )
        self.healthy_z_range = check_interval("healthy_z_range", healthy_z_range)
        self.healthy_angle_range = check_interval("healthy_angle_range", healthy_angle_range)
        self.recompute_constants = bool(recompute_constants)
        self._qpos_start = 1 if exclude_current_positions_from_observation else 0
        obs_dim = self.model.nq - self._qpos_start + self.model.nv
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.original_params = {name: getattr(self.model, name).copy() for name in RAND_PARAMS}
        self._loaded: list[Task | None] = [None] * num_envs

    def _load_task(self, index: int, task: Task) -> None:
        """Scales sub-env ``index``'s model: ``param = original * multiplier``."""
        if self._loaded[index] is task:
            return
        model = self._models[index]
        for name in RAND_PARAMS:
            getattr(model, name)[:] = self.original_params[name] * np.asarray(getattr(task, name))
        if self.recompute_constants:
            mujoco.mj_setConst(model, self._datas[index])
        self._loaded[index] = task

    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        qvel = np.clip(self.state["qvel"][rows], -10.0, 10.0)
        return np.concatenate([self.state["qpos"][rows, self._qpos_start :], qvel], axis=1)

    def _healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Returns ``[num_envs]`` bool: finite state with height, angle (and state) in range."""
        healthy = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        for (low, high), values in (
            (self.healthy_z_range, qpos[:, 1]),
            (self.healthy_angle_range, qpos[:, 2]),
        ):
            healthy &= (low < values) & (values < high)
        if self.healthy_state_range is not None:
            low, high = self.healthy_state_range
            state = np.concatenate([qpos[:, 2:], qvel], axis=1)
            healthy &= ((low < state) & (state < high)).all(axis=1)
        return healthy

    def _evaluate(self, actions: np.ndarray) -> EngineStep:
        qpos, qvel = self.state["qpos"], self.state["qvel"]
        x_position = qpos[:, 0].copy()
        x_velocity = (x_position - self.previous["qpos"][:, 0]) / self.dt
        healthy = self._healthy(qpos, qvel)
        ctrl = self._ctrl_cost(actions, self.ctrl_cost_weight)
        survive = np.full(self.num_envs, self.survive_reward)
        if self.survive_only_when_healthy:
            survive *= healthy
        forward = x_velocity.copy()
        return EngineStep(
            obs=self._observe(slice(None)),
            reward=forward + ctrl + survive,
            terminated=~healthy if self.terminate_when_unhealthy else np.zeros_like(healthy),
            reward_terms={
                "reward_forward": forward,
                "reward_ctrl": ctrl,
                "reward_survive": survive,
            },
            extras={"x_position": x_position, "x_velocity": x_velocity},
        )

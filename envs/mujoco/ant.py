"""The Ant task family as batched engines.

Sources: cbfinn/maml_rl's rllab ant envs, jonasrothfuss/ProMP, learnables/learn2learn.

Physics are gymnasium v5's ``ant.xml`` with ``frame_skip=5`` (``dt = 0.05`` s); after every step
``mj_rnePostConstraint`` fills ``cfrc_ext``, as gymnasium v5 does (under mujoco-py with MuJoCo >= 2
the gym v2-era envs saw all-zero contact forces). Velocities finite-difference the torso body
position (v5 ``main_body=1``; pytorch-maml-rl's ``get_body_com("torso")``): ``v = (xy' - xy) / dt``.

Reward (every term is in ``info``; ``a`` is the action as given, in ``[-1, 1]``)::

    reward_forward = task term (+ forward_bonus)           # reward_goal for AntGoal
    reward_ctrl    = -ctrl_cost_weight * sum(a**2)
    reward_contact = -contact_cost_weight * sum(clip(cfrc_ext, lo, hi)**2)   # all bodies
    reward_survive = survive_reward           # times healthy if survive_only_when_healthy

Defaults follow MAML's rllab envs as ported by pytorch-maml-rl (``maml_rl/envs/mujoco/ant.py``):
ctrl 0.005 (v5's actions are already normalised to ``[-1, 1]`` with gear 150, so this is rllab's
``0.005 * sum((a / scale)**2)``), contact 5e-4, survive 0.05 paid every step, terminate when the
state is non-finite or the torso height ``qpos[2]`` leaves ``[0.2, 1.0]``. AntDir2D follows
ProMP/learn2learn instead (where it comes from): ctrl 0.5, survive 1.0, healthy height ``[0, 1]``.

Observation (float64): ``qpos[2:]`` (13), ``qvel`` (14) and ``clip(cfrc_ext[1:], lo, hi)`` (78),
gymnasium v5's 105-d observation (the world body's row is dropped, forces clipped as in v5's
``contact_forces``); AntGoal keeps ``qpos[0:2]`` (107-d).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.checks import check_interval, check_number
from envs.core import EngineStep, Task
from envs.mujoco.base import MujocoEngine
from envs.mujoco.tasks import (
    Direction2DDistribution,
    DirectionDistribution,
    GoalDistribution,
    GoalVelocityDistribution,
)

__all__ = [
    "AntDir2DEngine",
    "AntDirEngine",
    "AntEngine",
    "AntGoalEngine",
    "AntVelEngine",
]

#: Body index of the torso (gymnasium v5's ``main_body=1``).
TORSO = 1


class AntEngine(MujocoEngine):
    """The ant with a per-sub-env target; subclasses define the task's forward term.

    Args:
        num_envs: number of sub-environments.
        forward_bonus: constant added to the forward term (MAML AntVel +1.0, AntGoal +4.0).
        ctrl_cost_weight: weight of ``sum(a**2)`` (MAML/rllab: 0.005; gym and v5: 0.5).
        contact_cost_weight: weight of ``sum(clip(cfrc_ext)**2)`` (5e-4 everywhere).
        survive_reward: per-step survival reward (MAML/rllab: 0.05; gym and v5: 1.0).
        survive_only_when_healthy: pay ``survive_reward`` only on healthy steps (gymnasium v5);
            False pays it every step (rllab, pytorch-maml-rl, ProMP, learn2learn).
        terminate_when_unhealthy: end the episode when the state is unhealthy.
        healthy_z_range: torso heights ``qpos[2]`` counted healthy, bounds included.
        contact_force_range: clip range of ``cfrc_ext`` in the cost and the observation.
        exclude_current_positions_from_observation: drop ``qpos[0:2]`` (x, y) from the obs.
        include_cfrc_ext_in_observation: append the clipped contact forces to the obs.
        frame_skip: MuJoCo steps per env step (5: ``dt = 0.05`` s).
        reset_noise_scale: ``qpos += U(-s, s)``, ``qvel += s * N(0, 1)`` at reset (v5: 0.1).
        xml_file: model XML (gymnasium's ``ant.xml``).
        **kwargs: ``action_scale``, ``nonfinite_action`` (:class:`~envs.mujoco.base.MujocoEngine`)
            and the task distribution's arguments.
    """

    reward_terms: tuple[str, ...] = (
        "reward_forward",
        "reward_ctrl",
        "reward_contact",
        "reward_survive",
    )
    extra_keys = ("x_position", "y_position", "x_velocity", "y_velocity")
    target_shape: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        num_envs: int,
        *,
        forward_bonus: float = 0.0,
        ctrl_cost_weight: float = 0.005,
        contact_cost_weight: float = 5e-4,
        survive_reward: float = 0.05,
        survive_only_when_healthy: bool = False,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        contact_force_range: tuple[float, float] = (-1.0, 1.0),
        exclude_current_positions_from_observation: bool = True,
        include_cfrc_ext_in_observation: bool = True,
        frame_skip: int = 5,
        reset_noise_scale: float = 0.1,
        xml_file: str = "ant.xml",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_envs,
            xml_file=xml_file,
            frame_skip=frame_skip,
            reset_noise_scale=reset_noise_scale,
            qvel_noise="normal",
            fields={"torso_xpos": lambda d: d.xpos[TORSO], "cfrc_ext": lambda d: d.cfrc_ext},
            track_previous=("torso_xpos",),
            post_constraint=True,
            **kwargs,
        )
        self.forward_bonus = check_number("forward_bonus", forward_bonus)
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight)
        self.contact_cost_weight = check_number("contact_cost_weight", contact_cost_weight)
        self.survive_reward = check_number("survive_reward", survive_reward)
        self.survive_only_when_healthy = bool(survive_only_when_healthy)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        self.healthy_z_range = check_interval("healthy_z_range", healthy_z_range)
        self.contact_force_range = check_interval("contact_force_range", contact_force_range)
        self._qpos_start = 2 if exclude_current_positions_from_observation else 0
        self.include_cfrc_ext_in_observation = bool(include_cfrc_ext_in_observation)
        model = self.model
        obs_dim = model.nq - self._qpos_start + model.nv
        obs_dim += 6 * (model.nbody - 1) * self.include_cfrc_ext_in_observation
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.target = np.zeros((num_envs, *self.target_shape), dtype=np.float64)
        # the in-place evaluation's work arrays, and the block's columns it reads
        self._xy_velocity = np.zeros((num_envs, 2))
        self._clipped = np.zeros((num_envs, *self.state["cfrc_ext"].shape[1:]))
        self._finite = np.zeros((num_envs, model.nq + model.nv), dtype=np.bool_)
        self._healthy = np.zeros(num_envs, dtype=np.bool_)
        self._in_range = np.zeros(num_envs, dtype=np.bool_)
        self._qpos_qvel = self._columns("qpos", 0, "qvel")
        self._obs_state = self._columns("qpos", self._qpos_start, "qvel")

    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        clipped = None
        if self.include_cfrc_ext_in_observation:
            clipped = np.clip(self.state["cfrc_ext"][rows], *self.contact_force_range)
        return self._observation(self.state["qpos"][rows], self.state["qvel"][rows], clipped)

    def _observation(
        self, qpos: np.ndarray, qvel: np.ndarray, clipped_cfrc: np.ndarray | None
    ) -> np.ndarray:
        """Builds ``[m, obs_dim]`` from ``qpos [m, nq]``, ``qvel [m, nv]``, ``[m, nbody, 6]``."""
        parts = [qpos[:, self._qpos_start :], qvel]
        if clipped_cfrc is not None:
            parts.append(clipped_cfrc[:, 1:].reshape(len(qpos), -1))
        return np.concatenate(parts, axis=1)

    @abc.abstractmethod
    def _forward_reward(self, xy_velocity: np.ndarray, xy_position: np.ndarray) -> np.ndarray:
        """Returns the task term ``[num_envs]`` (before the bonus).

        Args:
            xy_velocity: ``[num_envs, 2]`` torso velocity.
            xy_position: ``[num_envs, 2]`` torso position after the step.
        """

    def _evaluate(self, actions: np.ndarray) -> EngineStep:
        return self._evaluate_in_new_arrays(actions)

    def _evaluate_into(self, actions: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        # in place, one numpy call per value: each costs microseconds after the physics
        forward, ctrl, contact, survive = (out[key] for key in self.reward_terms)
        qpos = self.state["qpos"]
        xy_position, xy_velocity = self.state["torso_xpos"][:, :2], self._xy_velocity
        np.subtract(xy_position, self.previous["torso_xpos"][:, :2], out=xy_velocity)
        np.divide(xy_velocity, self.dt, out=xy_velocity)
        np.add(self._forward_reward(xy_velocity, xy_position), self.forward_bonus, out=forward)
        clipped = np.clip(self.state["cfrc_ext"], *self.contact_force_range, out=self._clipped)
        flat = clipped.reshape(self.num_envs, -1)
        np.einsum("ij,ij->i", flat, flat, out=contact)
        np.multiply(-self.contact_cost_weight, contact, out=contact)
        self._ctrl_cost(actions, self.ctrl_cost_weight, out=ctrl)
        # healthy: every qpos and qvel finite, the torso height in the range
        healthy, in_range, z = self._healthy, self._in_range, qpos[:, 2]
        np.isfinite(self._block[:, self._qpos_qvel], out=self._finite)
        np.all(self._finite, axis=1, out=healthy)
        np.greater_equal(z, self.healthy_z_range[0], out=in_range)
        np.logical_and(healthy, in_range, out=healthy)
        np.less_equal(z, self.healthy_z_range[1], out=in_range)
        np.logical_and(healthy, in_range, out=healthy)
        survive.fill(self.survive_reward)
        if self.survive_only_when_healthy:
            np.multiply(survive, healthy, out=survive)
        if self.terminate_when_unhealthy:
            np.logical_not(healthy, out=out["terminated"])
        else:
            out["terminated"].fill(False)
        state = self._block[:, self._obs_state]
        if self.include_cfrc_ext_in_observation:
            cfrc = clipped[:, 1:].reshape(self.num_envs, -1)
            np.concatenate((state, cfrc), axis=1, out=out["obs"])
        else:
            np.copyto(out["obs"], state)
        reward = out["reward"]
        np.add(forward, ctrl, out=reward)
        np.add(reward, contact, out=reward)
        np.add(reward, survive, out=reward)
        np.copyto(out["x_position"], qpos[:, 0])
        np.copyto(out["y_position"], qpos[:, 1])
        np.copyto(out["x_velocity"], xy_velocity[:, 0])
        np.copyto(out["y_velocity"], xy_velocity[:, 1])


class AntVelEngine(AntEngine):
    """Run forward at a target velocity: ``reward_forward = -|v_x - v*| + 1.0``.

    MAML rllab ``ant_env_rand.py`` / pytorch-maml-rl ``AntVelEnv``; tasks
    :class:`~envs.mujoco.tasks.GoalVelocityTask` with ``v* ~ U[0, 3]``. The +1.0 is the paper's
    "positive reward bonus" (``forward_bonus``). Other arguments: :class:`AntEngine`.
    """

    distribution_cls = GoalVelocityDistribution
    distribution_defaults: ClassVar[dict[str, Any]] = {"low": 0.0, "high": 3.0}

    def __init__(self, num_envs: int, *, forward_bonus: float = 1.0, **kwargs: Any) -> None:
        super().__init__(num_envs, forward_bonus=forward_bonus, **kwargs)

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.goal_velocity  # type: ignore[attr-defined]

    def _forward_reward(self, xy_velocity: np.ndarray, xy_position: np.ndarray) -> np.ndarray:
        return -np.abs(xy_velocity[:, 0] - self.target)


class AntDirEngine(AntEngine):
    """Run forward or backward: ``reward_forward = d * v_x``, ``d in {-1, +1}``.

    MAML rllab ``ant_env_rand_direc.py`` / pytorch-maml-rl ``AntDirEnv``; tasks
    :class:`~envs.mujoco.tasks.DirectionTask` (fixed train and test sets: both directions).
    Other arguments: :class:`AntEngine`.
    """

    distribution_cls = DirectionDistribution

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.direction  # type: ignore[attr-defined]

    def _forward_reward(self, xy_velocity: np.ndarray, xy_position: np.ndarray) -> np.ndarray:
        return self.target * xy_velocity[:, 0]


class AntDir2DEngine(AntEngine):
    """Run in a direction of the plane: ``reward_forward = dir . (xy' - xy) / dt``.

    ProMP ``ant_rand_direc_2d.py`` / learn2learn ``ant_direction.py``, whose weights are the
    defaults here: ctrl 0.5, contact 5e-4, survive 1.0 every step, terminate when the torso
    height leaves ``[0.0, 1.0]`` (PEARL's ant-dir uses ``[0.2, 1.0]``). Tasks:
    :class:`~envs.mujoco.tasks.Direction2DTask`, uniform angle. Other arguments:
    :class:`AntEngine`.
    """

    distribution_cls = Direction2DDistribution
    target_shape = (2,)

    def __init__(
        self,
        num_envs: int,
        *,
        ctrl_cost_weight: float = 0.5,
        survive_reward: float = 1.0,
        healthy_z_range: tuple[float, float] = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_envs,
            ctrl_cost_weight=ctrl_cost_weight,
            survive_reward=survive_reward,
            healthy_z_range=healthy_z_range,
            **kwargs,
        )

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.direction  # type: ignore[attr-defined]

    def _forward_reward(self, xy_velocity: np.ndarray, xy_position: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.target, xy_velocity)


class AntGoalEngine(AntEngine):
    """Reach a goal position: ``reward_goal = -||xy' - g||_1 + 4.0``.

    MAML rllab ``ant_env_rand_goal.py`` / pytorch-maml-rl ``AntPosEnv`` (``xy'`` = torso position
    after the step); tasks :class:`~envs.mujoco.tasks.GoalTask` with ``g ~ U[-3, 3]^2``. The
    observation keeps ``x, y`` (107-d). ``goal_sampling="disc"`` draws goals from the radius-3
    disc of ProMP and PEARL; their reward is reproduced with ``forward_bonus=0``,
    ``survive_reward=0``, ``ctrl_cost_weight=0.1`` and ``terminate_when_unhealthy=False``.
    Other arguments: :class:`AntEngine`.
    """

    distribution_cls = GoalDistribution
    target_shape = (2,)
    reward_terms = ("reward_goal", "reward_ctrl", "reward_contact", "reward_survive")

    def __init__(
        self,
        num_envs: int,
        *,
        forward_bonus: float = 4.0,
        exclude_current_positions_from_observation: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_envs,
            forward_bonus=forward_bonus,
            exclude_current_positions_from_observation=exclude_current_positions_from_observation,
            **kwargs,
        )

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.goal  # type: ignore[attr-defined]

    def _forward_reward(self, xy_velocity: np.ndarray, xy_position: np.ndarray) -> np.ndarray:
        return -np.abs(xy_position - self.target).sum(axis=1)

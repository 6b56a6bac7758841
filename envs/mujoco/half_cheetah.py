"""HalfCheetahVel and HalfCheetahDir as batched engines.

Sources: Finn et al. 2017 (arXiv 1703.03400, §5.3); cbfinn/maml_rl; tristandeleu/pytorch-maml-rl.

Physics are gymnasium v5's ``half_cheetah.xml`` with ``frame_skip=5`` (``dt = 0.05`` s, as in
pytorch-maml-rl, ProMP and learn2learn). The forward velocity is ``v_x = (qpos[0]' - qpos[0]) /
dt``, as in pytorch-maml-rl and gymnasium v5. Episodes never terminate; the horizon (100, as in
pytorch-maml-rl) comes from registration.

Rewards (every term is in ``info``):

* HalfCheetahVel: ``reward_forward = -|v_x - v*|``, ``reward_ctrl = -0.05 * sum(a**2)``.
* HalfCheetahDir: ``reward_forward = d * v_x``, ``reward_ctrl = -0.05 * sum(a**2)``.

The control weight 0.05 is the meta-RL one (MAML, pytorch-maml-rl, ProMP, learn2learn); plain
gymnasium HalfCheetah uses 0.1.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.checks import check_number
from envs.core import EngineStep, Task
from envs.mujoco.base import FieldGetter, MujocoEngine
from envs.mujoco.tasks import DirectionDistribution, GoalVelocityDistribution

__all__ = [
    "HalfCheetahDirEngine",
    "HalfCheetahEngine",
    "HalfCheetahVelEngine",
]

#: Body index of the torso (gymnasium v5's ``main_body=1``).
TORSO = 1


class HalfCheetahEngine(MujocoEngine):
    """The half-cheetah with a per-sub-env scalar target (velocity or direction).

    Observation (float64): ``qpos[1:]`` (8) and ``qvel`` (9), gymnasium v5's 17-d observation;
    ``exclude_current_positions_from_observation=False`` adds ``qpos[0]`` (18-d) and
    ``include_torso_com=True`` appends the torso body position ``xpos[torso]`` (3), which gives
    pytorch-maml-rl's, garage's and PEARL's 20-d observation. Action: ``Box(-1, 1, (6,))``.

    Args:
        num_envs: number of sub-environments.
        ctrl_cost_weight: weight of ``sum(a**2)`` in the control cost (meta-RL envs: 0.05).
        frame_skip: MuJoCo steps per env step (5: ``dt = 0.05`` s).
        reset_noise_scale: ``qpos += U(-s, s)``, ``qvel += s * N(0, 1)`` at reset (v5: 0.1).
        exclude_current_positions_from_observation: drop ``qpos[0]`` (x) from the observation.
        include_torso_com: append the torso position (pytorch-maml-rl's 20-d observation).
        xml_file: model XML (gymnasium's ``half_cheetah.xml``).
        **kwargs: ``action_scale``, ``nonfinite_action`` (:class:`~envs.mujoco.base.MujocoEngine`)
            and the task distribution's arguments (e.g. ``low``, ``high``).
    """

    reward_terms = ("reward_forward", "reward_ctrl")
    extra_keys = ("x_position", "x_velocity")

    def __init__(
        self,
        num_envs: int,
        *,
        ctrl_cost_weight: float = 0.05,
        frame_skip: int = 5,
        reset_noise_scale: float = 0.1,
        exclude_current_positions_from_observation: bool = True,
        include_torso_com: bool = False,
        xml_file: str = "half_cheetah.xml",
        **kwargs: Any,
    ) -> None:
        fields: dict[str, FieldGetter] = {}
        if include_torso_com:
            fields["torso_xpos"] = lambda d: d.xpos[TORSO]
        super().__init__(
            num_envs,
            xml_file=xml_file,
            frame_skip=frame_skip,
            reset_noise_scale=reset_noise_scale,
            qvel_noise="normal",
            fields=fields,
            track_previous=("qpos",),
            **kwargs,
        )
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight)
        self.include_torso_com = bool(include_torso_com)
        self._qpos_start = 1 if exclude_current_positions_from_observation else 0
        obs_dim = self.model.nq - self._qpos_start + self.model.nv + 3 * self.include_torso_com
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.target = np.zeros(num_envs, dtype=np.float64)
        # qpos[start:], qvel and the torso position are adjacent columns of the field block
        last = "torso_xpos" if include_torso_com else "qvel"
        self._obs_columns = self._columns("qpos", self._qpos_start, last)

    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        return np.array(self._block[rows, self._obs_columns])  # a copy, also for a slice

    @abc.abstractmethod
    def _forward_reward(self, x_velocity: np.ndarray, out: np.ndarray) -> None:
        """Writes the task's forward term from ``v_x`` into ``out`` (both ``[num_envs]``)."""

    def _evaluate(self, actions: np.ndarray) -> EngineStep:
        return self._evaluate_in_new_arrays(actions)

    def _evaluate_into(self, actions: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        # in place, one numpy call per value: each costs microseconds after the physics
        x_position, x_velocity = out["x_position"], out["x_velocity"]
        forward, ctrl = out["reward_forward"], out["reward_ctrl"]
        np.copyto(x_position, self.state["qpos"][:, 0])
        np.subtract(x_position, self.previous["qpos"][:, 0], out=x_velocity)
        np.divide(x_velocity, self.dt, out=x_velocity)
        self._forward_reward(x_velocity, forward)
        self._ctrl_cost(actions, self.ctrl_cost_weight, out=ctrl)
        np.add(forward, ctrl, out=out["reward"])
        out["terminated"].fill(False)
        np.copyto(out["obs"], self._block[:, self._obs_columns])


class HalfCheetahVelEngine(HalfCheetahEngine):
    """Run at a target velocity: ``reward = -|v_x - v*| - 0.05 * sum(a**2)``.

    Tasks: :class:`~envs.mujoco.tasks.GoalVelocityTask`, ``v* ~ U[0, 2]`` by default (MAML,
    pytorch-maml-rl, garage; ``high=3.0`` gives ProMP's, PEARL's and varibad's range).
    See :class:`HalfCheetahEngine` for the arguments.
    """

    distribution_cls: ClassVar[type[GoalVelocityDistribution]] = GoalVelocityDistribution

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.goal_velocity  # type: ignore[attr-defined]

    def _forward_reward(self, x_velocity: np.ndarray, out: np.ndarray) -> None:
        np.subtract(x_velocity, self.target, out=out)
        np.copysign(out, -1.0, out=out)  # -|x|, bit for bit, in one call instead of two


class HalfCheetahDirEngine(HalfCheetahEngine):
    """Run forward or backward: ``reward = d * v_x - 0.05 * sum(a**2)``, ``d in {-1, +1}``.

    Tasks: :class:`~envs.mujoco.tasks.DirectionTask`, each direction with probability 0.5; the
    fixed train and test sets are both directions. See :class:`HalfCheetahEngine` for the
    arguments.
    """

    distribution_cls: ClassVar[type[DirectionDistribution]] = DirectionDistribution

    def _load_task(self, index: int, task: Task) -> None:
        self.target[index] = task.direction  # type: ignore[attr-defined]

    def _forward_reward(self, x_velocity: np.ndarray, out: np.ndarray) -> None:
        np.multiply(self.target, x_velocity, out=out)

"""The shared batched MuJoCo engine: ``num_envs`` MjData stepped in one tight loop.

Every MuJoCo task engine in :mod:`envs.mujoco` derives from :class:`MujocoEngine`. It loads a
gymnasium v5 model XML from gymnasium's own assets folder, keeps one ``MjModel`` (one per
sub-environment only for engines whose task changes the model) and one ``MjData`` per
sub-environment. :meth:`MujocoEngine.step` writes each action into ``ctrl``, calls
``mujoco.mj_step(m, d, nstep=frame_skip)`` (and ``mj_rnePostConstraint`` where contact forces are
needed, as gymnasium v5 does), then copies the MjData fields the task needs into preallocated
``[num_envs, ...]`` buffers; subclasses compute observations, every reward term and termination
once for the whole batch in numpy from those buffers (:meth:`MujocoEngine._evaluate`).

Actions are not clipped, as in gymnasium v5: MuJoCo clamps ``ctrl`` to ``ctrlrange`` (every model
here has ``ctrllimited``), while the control cost is computed on the action as given. NaN or
infinite actions (which would silently give NaN or -inf rewards) raise a ``ValueError`` naming the
engine, the sub-envs and the action, unless ``nonfinite_action="clip"`` maps NaN to 0 and
+-inf to the action bounds.

Only MuJoCo API available in MuJoCo 3.3 is used (``MjModel.from_xml_path``, ``MjData``,
``mj_step``, ``mj_forward``, ``mj_resetData``, ``mj_rnePostConstraint``, ``mj_setConst``).
"""

from __future__ import annotations

import abc
import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium.envs.mujoco
import mujoco
import numpy as np
from gymnasium import spaces

from envs.checks import check_number, check_positive_int
from envs.core import (
    MUJOCO_RENDER_MODES,
    BatchedTaskEngine,
    EngineStep,
    Task,
    TaskDistribution,
    WorkerError,
    write_step,
)
from envs.mujoco.rendering import make_renderer, render_frame
from envs.slice_threads import SliceThreads

__all__ = ["ASSETS_DIR", "FieldGetter", "MujocoEngine", "resolve_xml"]

#: gymnasium's MuJoCo assets folder (half_cheetah.xml, ant.xml, hopper.xml, walker2d_v5.xml, ...).
ASSETS_DIR = Path(gymnasium.envs.mujoco.__file__).parent / "assets"

#: Returns, for one MjData, the view of the field an engine copies into its batch buffers.
FieldGetter = Callable[[mujoco.MjData], np.ndarray]


def resolve_xml(xml_file: str) -> Path:
    """Returns the path of a model XML: a name in gymnasium's assets folder, or a path.

    Raises:
        ValueError: if the file does not exist.
    """
    path = Path(xml_file)
    if not path.is_absolute():
        path = ASSETS_DIR / path
    if not path.is_file():
        raise ValueError(
            f"xml_file={xml_file!r}: no such model file (names are looked up in {ASSETS_DIR})"
        )
    return path


#: What :meth:`MujocoEngine.step` does with NaN or infinite actions.
NONFINITE_ACTIONS = ("raise", "clip")


class MujocoEngine(BatchedTaskEngine):
    """Steps ``num_envs`` MuJoCo simulations of one model, each with its own task.

    Subclasses pass the MjData fields they need (``qpos`` and ``qvel`` are always copied) and
    implement :meth:`_load_task` (copy one sub-env's task into the batched task arrays or its
    model), :meth:`_observe` and :meth:`_evaluate`. After every reset and step, ``self.state[name]``
    holds field ``name`` of every sub-env as a ``[num_envs, *field_shape]`` float64 array, and
    ``self.previous[name]`` holds, for the fields listed in ``track_previous``, the values before
    the last step.

    A task set with :meth:`set_tasks` takes effect at the sub-environment's next :meth:`reset`.

    Args:
        num_envs: number of sub-environments.
        xml_file: model XML, a name in gymnasium's assets folder or a path.
        frame_skip: MuJoCo steps per env step (``dt = timestep * frame_skip``).
        reset_noise_scale: half-width of the uniform ``qpos`` reset noise; scale of the ``qvel``
            reset noise (see ``qvel_noise``).
        qvel_noise: ``"normal"``: ``qvel = scale * N(0, 1)`` (gymnasium v5 HalfCheetah, Ant);
            ``"uniform"``: ``qvel = U(-scale, scale)`` (v5 Hopper, Walker2d).
        fields: extra MjData fields to copy after each step, name -> getter of the view.
        track_previous: names of fields whose pre-step values are kept in ``self.previous``.
        post_constraint: call ``mj_rnePostConstraint`` after each step (fills ``cfrc_ext``).
        per_env_model: give each sub-environment its own copy of the MjModel.
        action_scale: None: actions are the controls, as in gymnasium v5 (``Box(ctrlrange)``, not
            clipped). A number ``s``: the policy acts in ``Box(-s, s)`` and each action is clipped
            and mapped linearly onto ``ctrlrange`` (``a / s`` for these models), as
            pytorch-maml-rl's ``NormalizedActionWrapper(scale=10)``, garage's
            ``expected_action_scale=10`` and ProMP's ``normalization_scale=10`` do;
            the control cost is then on the mapped action, as there.
        nonfinite_action: ``"raise"`` (default): a NaN or infinite action raises ``ValueError``
            naming the engine, the sub-envs and the action. ``"clip"``: NaN becomes 0 and
            +-inf the upper/lower bound of the action space; finite entries are unchanged.
        **task_kwargs: arguments of the task distribution (names in its
            :meth:`~envs.core.TaskDistribution.option_names`, merged over
            :attr:`~envs.core.BatchedTaskEngine.distribution_defaults`; a distribution that takes
            ``xml_file`` gets the engine's); other names raise TypeError.

    Raises:
        TypeError: if a task-distribution argument is unknown.
        ValueError: if an argument is out of range.
    """

    #: ``mj_step`` releases the GIL, so the ``thread`` backend's threads step in parallel
    #: (``backend="auto"`` may pick it; Meta-World's Python reward holds the GIL).
    THREADS_RELEASE_GIL: ClassVar[bool] = True

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(MUJOCO_RENDER_MODES),
        "render_fps": 20,  # 1 / dt at the default frame_skip (subclasses with another dt override)
    }
    action_space: spaces.Box

    def __init__(
        self,
        num_envs: int,
        *,
        xml_file: str,
        frame_skip: int,
        reset_noise_scale: float,
        qvel_noise: str,
        fields: Mapping[str, FieldGetter] | None = None,
        track_previous: Sequence[str] = ("qpos",),
        post_constraint: bool = False,
        per_env_model: bool = False,
        action_scale: float | None = None,
        nonfinite_action: str = "raise",
        **task_kwargs: Any,
    ) -> None:
        if "xml_file" in self.distribution_cls.option_names():  # its shapes come from the model
            task_kwargs = {"xml_file": xml_file, **task_kwargs}
        super().__init__(num_envs, self._build_distribution(task_kwargs))
        if nonfinite_action not in NONFINITE_ACTIONS:
            raise ValueError(
                f"nonfinite_action must be one of {NONFINITE_ACTIONS}, got {nonfinite_action!r}"
            )
        self.nonfinite_action = nonfinite_action
        if qvel_noise not in ("normal", "uniform"):
            raise ValueError(f"qvel_noise must be 'normal' or 'uniform', got {qvel_noise!r}")
        self.xml_path = resolve_xml(xml_file)
        self.frame_skip = check_positive_int("frame_skip", frame_skip)
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, 0.0)
        self._qvel_noise = qvel_noise
        self._post_constraint = bool(post_constraint)
        model = _copy_model(_compiled_model(str(self.xml_path)))
        self.model = model
        self._models = [_copy_model(model) if per_env_model else model for _ in range(num_envs)]
        self._datas = [mujoco.MjData(m) for m in self._models]
        self.init_qpos = self._datas[0].qpos.copy()
        self.init_qvel = self._datas[0].qvel.copy()
        self.dt = float(model.opt.timestep) * frame_skip
        self._ctrls = [d.ctrl for d in self._datas]
        self._rows_of: np.ndarray | None = None  # the array of the row views below
        self._rows: list[np.ndarray] = []
        getters: dict[str, FieldGetter] = {"qpos": lambda d: d.qpos, "qvel": lambda d: d.qvel}
        getters.update(fields or {})
        self._sources: dict[str, list[np.ndarray]] = {}
        for name, getter in getters.items():
            views = [getter(d) for d in self._datas]
            if not all(v.flags.c_contiguous and v.dtype == np.float64 for v in views):
                # The batched copy reads flat views; a copy would silently freeze the values.
                raise ValueError(f"field {name!r} must be a contiguous float64 view of MjData")
            self._sources[name] = views
        self.state = self._field_block(num_envs)
        self.previous = {name: self.state[name].copy() for name in track_previous}
        self._threads = SliceThreads(num_envs, type(self).__name__)
        self._renderers: dict[int, Any] = {}
        self._ready = np.zeros(num_envs, dtype=bool)
        self._all_ready = False
        self._ctrl_low, self._ctrl_high = model.actuator_ctrlrange.T.copy()
        if action_scale is None:
            self.action_scale = None
            low, high = self._ctrl_low, self._ctrl_high
        else:
            self.action_scale = check_number("action_scale", action_scale, 0.0, open_low=True)
            low, high = -np.full(model.nu, self.action_scale), np.full(model.nu, self.action_scale)
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32))
        self._action_low, self._action_high = low.astype(np.float64), high.astype(np.float64)
        self._nan_fill = np.clip(0.0, self._action_low, self._action_high)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def _build_distribution(cls, task_kwargs: dict[str, Any]) -> TaskDistribution:
        accepted = cls.distribution_cls.option_names()
        unknown = sorted(set(task_kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"{cls.__name__} got unknown argument(s) {unknown}; besides the engine's own "
                f"keyword arguments it takes those of {cls.distribution_cls.__name__}: "
                f"{sorted(accepted)}"
            )
        return cls.make_distribution(**task_kwargs)

    @property
    def models(self) -> tuple[mujoco.MjModel, ...]:
        """The MjModel of each sub-environment (the same object unless the task changes it)."""
        return tuple(self._models)

    @property
    def datas(self) -> tuple[mujoco.MjData, ...]:
        """The MjData of each sub-environment (for inspection; use :meth:`set_state` to write)."""
        return tuple(self._datas)

    # ------------------------------------------------------------------------------ task hooks
    def _apply_tasks(self, indices: np.ndarray) -> None:
        """Tasks are loaded at the sub-environment's next reset (see :meth:`reset`)."""

    @abc.abstractmethod
    def _load_task(self, index: int, task: Task) -> None:
        """Copies sub-env ``index``'s task into the engine's task arrays (or its model)."""

    @abc.abstractmethod
    def _observe(self, rows: np.ndarray | slice) -> np.ndarray:
        """Returns the observations ``[m, obs_dim]`` of sub-envs ``rows`` from ``self.state``."""

    @abc.abstractmethod
    def _evaluate(self, actions: np.ndarray) -> EngineStep:
        """Computes the batch's observations, reward terms and termination after a step.

        Args:
            actions: ``[num_envs, action_dim]`` float64 actions as given to :meth:`step`.
        """

    def _evaluate_into(self, actions: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        """:meth:`_evaluate` written into ``out`` (named as for :meth:`step_into`).

        The default copies :meth:`_evaluate`'s result; an engine that computes in place
        overrides it (and derives :meth:`_evaluate` from it, so both give the same bits).
        """
        write_step(self._evaluate(actions), out)

    def _evaluate_in_new_arrays(self, actions: np.ndarray) -> EngineStep:
        """:meth:`_evaluate_into` fresh arrays: the :meth:`_evaluate` of an in-place engine."""
        n = self.num_envs
        out: dict[str, np.ndarray] = {
            key: np.empty(n) for key in (*self.reward_terms, *self.extra_keys, "reward")
        }
        out["obs"] = np.empty((n, *(self.observation_space.shape or ())))
        out["terminated"] = np.empty(n, dtype=bool)
        self._evaluate_into(actions, out)
        return EngineStep(
            obs=out["obs"],
            reward=out["reward"],
            terminated=out["terminated"],
            reward_terms={key: out[key] for key in self.reward_terms},
            extras={key: out[key] for key in self.extra_keys},
        )

    # ------------------------------------------------------------------------------ reset/step
    def reset(self, indices: np.ndarray) -> np.ndarray:
        """Resets the listed sub-environments with gymnasium v5's reset noise.

        ``qpos = qpos0 + U(-s, s)`` and ``qvel = s * N(0, 1)`` or ``U(-s, s)`` (``s`` =
        ``reset_noise_scale``), drawn from the sub-environment's own generator in gymnasium v5's
        order, so a seeded sub-env starts where the v5 env reset with the same seed starts.

        Args:
            indices: ``[m]`` int array of sub-environment indices.

        Returns:
            ``[m, obs_dim]`` float64 observations.
        """
        idx = self._check_indices(indices)
        self.ensure_tasks(idx)
        scale = self.reset_noise_scale
        for i in idx.tolist():
            self._load_task(i, self.tasks[i])
            model, data, rng = self._models[i], self._datas[i], self.rngs[i]
            mujoco.mj_resetData(model, data)
            qpos = self.init_qpos + rng.uniform(low=-scale, high=scale, size=model.nq)
            if self._qvel_noise == "normal":
                qvel = self.init_qvel + scale * rng.standard_normal(model.nv)
            else:
                qvel = self.init_qvel + rng.uniform(low=-scale, high=scale, size=model.nv)
            self._write_state(i, qpos, qvel)
        self._ready[idx] = True
        self._all_ready = bool(self._ready.all())  # read by every step: computed here, once
        return self._observe(idx)

    def set_state(self, index: int, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Puts sub-environment ``index`` into a given state (for scripted starts and tests).

        Args:
            index: the sub-environment.
            qpos: ``[nq]`` joint positions.
            qvel: ``[nv]`` joint velocities.

        Returns:
            ``[obs_dim]`` the observation of that state.
        """
        model = self._models[index]
        qpos = np.asarray(qpos, dtype=np.float64)
        qvel = np.asarray(qvel, dtype=np.float64)
        if qpos.shape != (model.nq,) or qvel.shape != (model.nv,):
            raise ValueError(
                f"qpos/qvel must have shapes ({model.nq},)/({model.nv},), "
                f"got {qpos.shape}/{qvel.shape}"
            )
        if self.tasks[index] is None:
            raise RuntimeError(f"reset sub-environment {index} before set_state")
        self._write_state(index, qpos, qvel)
        return self._observe(np.asarray([index]))[0]

    def set_num_threads(self, num_threads: int, worker_timeout: float | None = None) -> None:
        """Steps the sub-envs on ``num_threads`` threads (``mj_step`` releases the GIL).

        The sub-envs are split into contiguous slices; the calling thread steps the first and
        pool threads the others. Each sub-env is stepped exactly as with one thread, so
        trajectories do not change. A pool thread that has not finished its share of a step
        ``worker_timeout`` seconds after the calling thread finished its own raises
        :class:`~envs.core.WorkerError` (None: wait without limit); the engine then refuses to
        step again.
        """
        self._threads.configure(num_threads, worker_timeout)

    def _write_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        data = self._datas[i]
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(self._models[i], data)
        for name, views in self._sources.items():
            self.state[name][i] = views[i]

    def step(self, actions: np.ndarray) -> EngineStep:
        """Steps every sub-environment by ``frame_skip`` MuJoCo steps.

        Args:
            actions: ``[num_envs, action_dim]`` actions (with ``action_scale=None`` not clipped:
                MuJoCo clamps ``ctrl`` to ``ctrlrange``).

        Returns:
            The batch's observations, rewards, terminations, reward terms and extras.
        """
        actions = self.check_actions(actions)
        if len(actions) != self.num_envs:
            raise ValueError(
                f"actions must have shape {(self.num_envs, *self.action_space.shape)}, "
                f"got {actions.shape}"
            )
        return self.step_checked(actions)

    def step_checked(self, actions: np.ndarray) -> EngineStep:
        """:meth:`step` without its action check (the ``process`` backend checked the batch)."""
        actions = self._advance(actions)
        return self._evaluate(actions)

    def step_into(self, actions: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        """:meth:`step_checked`, writing into ``out`` (see :meth:`_evaluate_into`)."""
        actions = self._advance(actions)
        self._evaluate_into(actions, out)

    def _advance(self, actions: np.ndarray) -> np.ndarray:
        """Steps the physics with checked actions; returns the actions the rewards see."""
        if self._threads.failed is not None:
            raise WorkerError(self._threads.failed)
        if not self._all_ready:
            raise RuntimeError(
                f"reset sub-environments {np.flatnonzero(~self._ready).tolist()} before step()"
            )
        if self.action_scale is not None:
            scale = self.action_scale
            fraction = (np.clip(actions, -scale, scale) + scale) / (2.0 * scale)
            actions = self._ctrl_low + fraction * (self._ctrl_high - self._ctrl_low)
        for name, before in self.previous.items():
            np.copyto(before, self.state[name])
        self._simulate(actions)
        return actions

    def _simulate(self, actions: np.ndarray) -> None:
        """The hot loop: one ``mj_step(nstep=frame_skip)`` per sub-env, then one copy per field."""
        self._threads.run(functools.partial(self._simulate_slice, self._action_rows(actions)))
        np.concatenate(self._gather, out=self._block_flat)

    def _action_rows(self, actions: np.ndarray) -> list[np.ndarray]:
        """The rows of ``actions`` as views, kept while the same array object comes back.

        A ``process`` backend slice steps from the same shared array at every step: its row
        views, made once, save making one per sub-env per step (a third of the Python loop
        around ``mj_step``, scratch timing). A held view also keeps the array from being resized
        in place. Any other array gets fresh views.
        """
        if actions is not self._rows_of:
            self._rows_of, self._rows = actions, list(actions)
        return self._rows

    def check_actions(self, actions: Any) -> np.ndarray:
        """Returns ``actions`` as ``[n, action_dim]`` float64, finite (any batch size ``n``).

        Raises:
            ValueError: on a wrong shape, or (``nonfinite_action="raise"``) a NaN or infinite
                entry, naming the engine, the sub-envs and the first offending action.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1:] != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {(self.num_envs, *self.action_space.shape)}, "
                f"got {actions.shape}"
            )
        finite = np.isfinite(actions)
        if np.count_nonzero(finite) == finite.size:  # a third of all()'s cost on a small batch
            return actions
        if self.nonfinite_action == "raise":
            rows = np.flatnonzero(~finite.all(axis=1))
            raise ValueError(
                f"{type(self).__name__}: actions must be finite; sub-env(s) {rows.tolist()} got "
                f"NaN or inf (sub-env {rows[0]}: {actions[rows[0]].tolist()}); pass "
                "nonfinite_action='clip' to map NaN to 0 and +-inf to the action bounds"
            )
        bound = np.where(actions > 0, self._action_high, self._action_low)
        return np.where(finite, actions, np.where(np.isnan(actions), self._nan_fill, bound))

    def render(self, index: int, render_mode: str) -> Any:
        """Renders sub-environment ``index`` with gymnasium's MuJoCo renderer.

        Returns:
            ``[480, 480, 3]`` uint8 (``"rgb_array"``), ``[480, 480]`` depth (``"depth_array"``)
            or None (``"human"``: a window).

        Raises:
            RuntimeError: if no OpenGL context can be made (naming ``MUJOCO_GL``).
        """
        if index not in self._renderers:
            self._renderers[index] = make_renderer(self._models[index], self._datas[index])
        return render_frame(self._renderers[index], render_mode)

    def _field_block(self, num_envs: int) -> dict[str, np.ndarray]:
        """Lays every copied field side by side in one ``[num_envs, width]`` block.

        ``self.state[name]`` are column views of the block, and a step fills the whole block with
        one ``np.concatenate`` of the fields' flat views in row order (sub-env 0's fields, then
        sub-env 1's, ...): one call instead of one per field, each a few microseconds after the
        physics has evicted numpy's code from the caches (``scripts/bench_step_breakdown.py``).
        A field's columns are contiguous, so an engine whose observation is adjacent fields
        copies it with one slice (:meth:`_columns`).
        """
        sizes = {name: views[0].size for name, views in self._sources.items()}
        self._block = np.zeros((num_envs, sum(sizes.values())), dtype=np.float64)
        self._block_flat = self._block.reshape(-1)
        self._offsets: dict[str, int] = {}
        state: dict[str, np.ndarray] = {}
        offset = 0
        for name, views in self._sources.items():
            columns = self._block[:, offset : offset + sizes[name]]
            state[name] = columns.reshape(num_envs, *views[0].shape)
            if not np.shares_memory(state[name], self._block):  # reshape must give a view
                raise AssertionError(f"field {name!r}: its state is not a view of the block")
            self._offsets[name] = offset
            offset += sizes[name]
        self._gather = [
            views[i].reshape(-1) for i in range(num_envs) for views in self._sources.values()
        ]
        return state

    def _columns(self, first: str, start: int = 0, last: str | None = None) -> slice:
        """The block's columns from ``state[first]``'s column ``start`` to the end of ``last``.

        Fields are laid out in the order given (``qpos``, ``qvel``, then ``fields``), so
        ``self._block[:, self._columns("qpos", 1, "qvel")]`` is ``qpos[:, 1:]`` beside ``qvel``.
        """
        end_name = last or first
        end = self._offsets[end_name] + self._sources[end_name][0].size
        return slice(self._offsets[first] + start, end)

    def _simulate_slice(self, actions: Sequence[np.ndarray], part: slice) -> None:
        """Steps sub-envs ``part``; ``actions``: :meth:`_action_rows`' rows, or an array."""
        mj_step = mujoco.mj_step
        nstep = self.frame_skip
        models, datas, ctrls = self._models[part], self._datas[part], self._ctrls[part]
        actions = actions[part]
        if self._post_constraint:
            rne = mujoco.mj_rnePostConstraint
            for model, data, ctrl, action in zip(models, datas, ctrls, actions, strict=True):
                ctrl[...] = action  # a third faster than ctrl[:] = action, the same copy
                mj_step(model, data, nstep)
                rne(model, data)
        else:
            for model, data, ctrl, action in zip(models, datas, ctrls, actions, strict=True):
                ctrl[...] = action
                mj_step(model, data, nstep)

    def _check_indices(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_envs):
            raise ValueError(f"indices must be in [0, {self.num_envs}), got {idx.tolist()}")
        return idx

    def close(self) -> None:
        """Drops the MuJoCo models and data (and stops the stepping threads and renderers)."""
        self._threads.close()
        for renderer in self._renderers.values():
            try:
                renderer.close()
            except Exception:  # noqa: BLE001, S110 - a renderer without a context has nothing open
                pass
        self._renderers = {}
        self._models, self._datas, self._ctrls = [], [], []
        self._rows_of, self._rows = None, []  # views of a shared array it may be about to free
        self._sources, self._gather = {}, []

    # ---------------------------------------------------------------------------- reward parts
    def _ctrl_cost(
        self, actions: np.ndarray, weight: float, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Returns ``-weight * sum(a**2)`` per sub-env, ``[num_envs]`` (written into ``out``)."""
        cost = np.einsum("ij,ij->i", actions, actions, out=out)
        return np.multiply(-weight, cost, out=cost)


@functools.lru_cache(maxsize=16)
def _compiled_model(xml_path: str) -> mujoco.MjModel:
    """Compiles a model XML once per process (engines take copies; compiling also warns once)."""
    return mujoco.MjModel.from_xml_path(xml_path)


def _copy_model(model: mujoco.MjModel) -> mujoco.MjModel:
    """Returns an independent copy of ``model`` (its arrays are not shared)."""
    return copy.copy(model)

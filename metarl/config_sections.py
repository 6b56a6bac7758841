"""Config sections shared by the algorithm families, and which algorithms a section applies to.

A family's root config declares its learner-specific sections as ``Section | None = None`` and
lists, in ``SECTION_USERS``, the ``algo.name`` values that use each of them. `apply_sections`
(called from the root's ``__post_init__``) fills a used section that the YAML left out with its
defaults, and refuses a section given to an algorithm that does not use it, so a misplaced key
fails like a typo instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from metarl.config_checks import check_positive

__all__ = [
    "TRPO_KEYS",
    "InnerConfig",
    "OptimConfig",
    "PPOConfig",
    "TRPOConfig",
    "apply_sections",
    "section",
]

_S = TypeVar("_S")


@dataclasses.dataclass(frozen=True)
class InnerConfig:
    """The inner (adaptation) loop of a gradient-based meta-learner."""

    lr: float = 0.01
    """Inner step size α (learning rate of each adaptation step)."""
    steps: int = 1
    """Inner gradient steps during meta-training."""
    first_order: bool = False
    """Drop second derivatives through the inner steps (first-order MAML)."""

    def __post_init__(self) -> None:
        check_positive(self, "lr")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class TRPOConfig:
    """The TRPO update: a natural-gradient step in a KL trust region, found by a line search."""

    max_kl: float = 0.01
    """Trust-region radius on the mean KL between the old and the new policy (nats)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations solving for the natural-gradient direction."""
    cg_damping: float = 1e-5
    """Damping added to the KL Hessian-vector products."""
    ls_backtrack: float = 0.8
    """Line-search shrink factor of the step, in (0, 1)."""
    ls_steps: int = 15
    """Line-search candidate steps before the update is rejected."""
    step_curvature: Literal["product", "cg"] = "product"
    """How the step length's ``s^T H s`` is found: ``product``, one more KL Hessian-vector
    product after conjugate gradient (rllab, pytorch-maml-rl; the recorded numbers); ``cg``, from
    conjugate gradient's own residual (``s^T (b - r)``), one product fewer per update, equal up
    to float rounding."""

    def __post_init__(self) -> None:
        check_positive(self, "max_kl", "cg_iters", "ls_steps")
        # Negated comparisons, so that NaN fails them too: a negative damping makes the KL
        # Hessian indefinite, and a backtrack factor >= 1 never shrinks the step.
        if not self.cg_damping >= 0:
            raise ValueError(f"cg_damping must be >= 0, got {self.cg_damping}")
        if not 0 < self.ls_backtrack < 1:
            raise ValueError(f"ls_backtrack must be in (0, 1), got {self.ls_backtrack}")

    def step_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`metarl.rl.trpo.trpo_step` this section sets."""
        names = ("max_kl", "cg_iters", "cg_damping", "ls_backtrack", "ls_steps", "step_curvature")
        return {name: getattr(self, name) for name in names}


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The PPO-clip update: several Adam epochs on the clipped surrogate of one batch."""

    clip_eps: float = 0.2
    """Clip range ε of the probability ratio."""
    epochs: int = 4
    """Adam passes over each sampled batch."""

    def __post_init__(self) -> None:
        check_positive(self, "clip_eps", "epochs")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The outer loop: its step size and length (each family's ``optim`` section extends it)."""

    lr: float = 1e-3
    """Outer (meta) step size: the outer optimiser's learning rate."""
    iterations: int = 500
    """Outer iterations (meta-batches, or RL² policy updates)."""

    def __post_init__(self) -> None:
        check_positive(self, "lr")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")


def apply_sections(config: object, users: Mapping[str, frozenset[str]]) -> None:
    """Fills the used, absent sections of ``config`` with defaults and refuses unused ones.

    Args:
        config: A frozen root config with an ``algo.name`` and one field per section of ``users``.
        users: Section field name -> the ``algo.name`` values that use it.

    Raises:
        ValueError: Starting with the section's name, if it is given to an algorithm that does
            not use it.
    """
    name = config.algo.name  # type: ignore[attr-defined]
    types = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    for section, names in users.items():
        value = getattr(config, section)
        if name in names and value is None:
            section_type = _section_class(config, types[section])
            object.__setattr__(config, section, section_type())
        elif name not in names and value is not None:
            raise ValueError(
                f"{section} section does not apply to algo.name={name!r} (only to "
                f"{', '.join(sorted(names))}); remove it (on the command line: --set "
                f"{section}=null)"
            )


def section(value: _S | None, name: str) -> _S:
    """The section ``name`` of a root config, which `apply_sections` fills for its users.

    Args:
        value: The section's value (``cfg.<name>``).
        name: The section's field name, for the error.

    Returns:
        ``value``, known not to be None.

    Raises:
        ValueError: If ``value`` is None: the config's ``algo.name`` does not use this section,
            so code reading it was handed a config for another algorithm.
    """
    if value is None:
        raise ValueError(f"the {name} section is None: this config's algo.name does not use it")
    return value


def _section_class(config: object, field: dataclasses.Field) -> type:
    import typing

    hints = typing.get_type_hints(type(config))
    members = [a for a in typing.get_args(hints[field.name]) if a is not type(None)]
    return members[0]


TRPO_KEYS = tuple(f.name for f in dataclasses.fields(TRPOConfig))
"""The TRPO settings, which older configs kept in their ``algo`` section."""

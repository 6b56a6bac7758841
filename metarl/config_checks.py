"""Range checks shared by the algorithms' config sections (called from ``__post_init__``)."""

from __future__ import annotations

__all__ = ["check_positive", "check_unit"]


def check_positive(section: object, *names: str) -> None:
    """Raises ``ValueError`` naming the first of ``names`` that is set and not > 0."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def check_unit(section: object, *names: str) -> None:
    """Raises ``ValueError`` naming the first of ``names`` outside ``[0, 1]``."""
    for name in names:
        value = getattr(section, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")

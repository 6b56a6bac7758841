"""Keys that older versions of the configs used: an error naming the new key, or a migration.

A root config class may declare ``RENAMED_KEYS`` (old dotted key -> new dotted key) and
``SECTION_USERS`` (see `metarl.config_sections`). Every root also knows the keys of
`REMOVED_KEYS`. A user's YAML or ``--set`` override that uses an old key is refused with a message
naming the new one (`renamed_key_errors`); a run directory's ``config.yaml`` written by an older
version is rewritten to the new keys (`migrate_config`), so that ``metarl eval`` still loads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["REMOVED_KEYS", "migrate_config", "renamed_key_errors", "renamed_key_message"]

REMOVED_KEYS = {
    "run.eval_every": "training evaluates once, at the end; run 'metarl eval RUN_DIR' to evaluate "
    "any checkpoint",
}
"""Old dotted key -> why it was removed (and what to do instead)."""


def _renames(cls: type) -> Mapping[str, str]:
    return getattr(cls, "RENAMED_KEYS", {})


def renamed_key_message(cls: type, key: str) -> str | None:
    """The error for an old dotted ``key`` of ``cls`` (None if it never existed).

    Args:
        cls: The root config class.
        key: A dotted key, e.g. ``"algo.inner_lr"``.

    Returns:
        ``"algo.inner_lr: renamed to inner.lr"``-style text, or None.
    """
    new = _renames(cls).get(key)
    if new is not None:
        return f"{key}: renamed to {new} (set {new} instead)"
    if key in REMOVED_KEYS:
        return f"{key}: removed; {REMOVED_KEYS[key]}"
    return None


def _dotted(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any], str]]:
    """Yields ``(dotted key, parent mapping, key)`` for every key of a nested mapping."""
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        yield dotted, data, key
        if isinstance(value, dict):  # _copy made every nested mapping a dict
            yield from _dotted(value, dotted)


def renamed_key_errors(cls: type, data: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Finds old keys in a raw config mapping.

    Args:
        cls: The root config class.
        data: The raw mapping (from YAML and overrides). Not modified.

    Returns:
        A copy of ``data`` without the old keys, and one error per old key naming its new key.
    """
    result = _copy(data)
    errors, found = [], []
    for dotted, parent, key in list(_dotted(result)):
        message = renamed_key_message(cls, dotted)
        if message is not None:
            errors.append(message)
            found.append((parent, key))
    for parent, key in found:
        parent.pop(key, None)
    return result, errors


def migrate_config(cls: type, data: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """Rewrites a config written by an older version to the current keys.

    Each old key's value moves to its new key; removed keys are dropped; sections the config's
    algorithm does not use (e.g. TRPO settings an old PPO config carried) are dropped.

    Args:
        cls: The root config class.
        data: The raw mapping, e.g. a run directory's ``config.yaml``. Not modified.

    Returns:
        The migrated mapping, and one note per change (empty if nothing was old).
    """
    result = _copy(data)
    notes: list[str] = []
    moves = []
    for dotted, parent, key in list(_dotted(result)):
        new = _renames(cls).get(dotted)
        if new is not None:
            moves.append((parent, key, new))
            notes.append(f"{dotted} -> {new}")
        elif dotted in REMOVED_KEYS:
            parent.pop(key)
            notes.append(f"{dotted} removed")
    for parent, key, new in moves:
        value = parent.pop(key)
        *path, last = new.split(".")
        node = result
        for part in path:
            node = (
                node.setdefault(part, {}) if isinstance(node.get(part), dict) else _set(node, part)
            )
        node[last] = value
    for section, names in getattr(cls, "SECTION_USERS", {}).items():
        name = (result.get("algo") or {}).get("name")
        if section in result and name not in names:
            if notes:  # only old configs carry every section; a new one naming it is an error
                result.pop(section)
    for parent in [result, *(v for v in result.values() if isinstance(v, dict))]:
        for key in [k for k, v in parent.items() if v == {} and k not in ("run",)]:
            parent.pop(key)  # an emptied old section (e.g. algo of a learner without settings)
    return result, notes


def _set(node: dict, part: str) -> dict:
    node[part] = {}
    return node[part]


def _copy(data: Mapping[str, Any]) -> dict:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}

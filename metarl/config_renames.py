"""Keys that older versions of the configs used: an error naming the new key, or a migration.

A root config class may declare ``RENAMED_KEYS`` (old dotted key -> new dotted key) and
``SECTION_USERS`` (see `metarl.config_sections`). Every root also knows the keys of
`REMOVED_KEYS`. A user's YAML or ``--set`` override that uses an old key is refused with a message
naming the new one (`renamed_key_errors`); a run directory's ``config.yaml`` written by an older
version is rewritten to the new keys (`migrate_config`), so that ``metarl eval`` still loads it.
A checkpoint written by an older version is rewritten the same way when it is loaded
(`migrate_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "REMOVED_KEYS",
    "migrate_checkpoint",
    "migrate_config",
    "renamed_key_errors",
    "renamed_key_message",
]

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


_OLD_LR_PREFIX = "inner_lr."
"""Older checkpoints kept the learned inner step sizes inside ``params`` as ``inner_lr.<name>``."""


def migrate_checkpoint(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrites a checkpoint state written by an older version to the current layout.

    Older versions kept the learned inner step sizes (Meta-SGD, MAML++ LSLR, MAML-RL's
    ``inner.learn_lr``) inside ``params`` under ``inner_lr.<name>``, in one optimiser parameter
    group with the weights. Now they are ``inner_lrs`` (``{name: Tensor}``) beside ``params``, in
    a parameter group of their own (the second): the saved optimiser's group is split the same
    way (its per-parameter state, e.g. Adam's moments, follows its parameter) and an LR
    schedule's per-group lists get an entry for the new group.

    Args:
        state: A loaded checkpoint. Not modified.

    Returns:
        A shallow copy of ``state``, migrated if it was old.
    """
    params = state.get("params")
    if not isinstance(params, Mapping) or not any(_is_old_lr(k) for k in params):
        return dict(state)
    names = list(params)
    result = dict(state)
    result["params"] = {k: v for k, v in params.items() if not _is_old_lr(k)}
    result["inner_lrs"] = {k[len(_OLD_LR_PREFIX) :]: v for k, v in params.items() if _is_old_lr(k)}
    optimizer = state.get("optimizer")
    if not isinstance(optimizer, Mapping):
        return result
    groups = optimizer["param_groups"]
    if len(groups) == 1 and len(groups[0]["params"]) == len(names):
        ids = groups[0]["params"]  # saved in the order of the old params dict
        split = [
            {
                **groups[0],
                "params": [i for i, k in zip(ids, names, strict=True) if _is_old_lr(k) == lr],
            }
            for lr in (False, True)
        ]
        result["optimizer"] = {**optimizer, "param_groups": split}
        scheduler = state.get("scheduler")
        if isinstance(scheduler, Mapping):
            result["scheduler"] = {
                k: v * 2 if k in _PER_GROUP and isinstance(v, list) and len(v) == 1 else v
                for k, v in scheduler.items()
            }
    return result


def keep_lrs_in_params(
    state: Mapping[str, Any], param_names: list[str], lr_names: list[str]
) -> dict[str, Any]:
    """Undoes :func:`migrate_checkpoint` for a learner that keeps a step size in ``params``.

    AlphaMAML's α is a parameter of θ (its outer optimiser group is the weights'), so a
    checkpoint written while it was saved as ``inner_lr.alpha`` comes out of the migration with
    α in ``inner_lrs`` and the optimiser split into two groups. This moves every such step size
    back into ``params``, re-merges the optimiser's groups in the order of ``param_names`` (the
    per-parameter state follows its parameter) and drops the schedule's added per-group entry.

    Args:
        state: A checkpoint after :func:`migrate_checkpoint`. Not modified.
        param_names: The learner's ``params`` names, in its optimiser's order.
        lr_names: The learner's ``inner_lrs`` names.

    Returns:
        ``state`` unchanged if nothing was moved out of ``params``, else a shallow copy.
    """
    lrs = state.get("inner_lrs") or {}
    moved = [k for k in lrs if k in param_names and k not in lr_names]
    if not moved:
        return dict(state)
    result = dict(state)
    result["params"] = {**state["params"], **{k: lrs[k] for k in moved}}
    result["inner_lrs"] = {k: v for k, v in lrs.items() if k not in moved}
    optimizer = state.get("optimizer")
    groups = optimizer["param_groups"] if isinstance(optimizer, Mapping) else None
    if (
        isinstance(optimizer, Mapping)
        and groups
        and len(groups) == 2
        and not result["inner_lrs"]
        and not lr_names
    ):
        ids = dict(zip(list(state["params"]), groups[0]["params"], strict=True))
        ids.update(zip(list(lrs), groups[1]["params"], strict=True))
        merged = {**groups[0], "params": [ids[k] for k in param_names]}
        result["optimizer"] = {**optimizer, "param_groups": [merged]}
        scheduler = state.get("scheduler")
        if isinstance(scheduler, Mapping):
            result["scheduler"] = {
                k: v[:1] if k in _PER_GROUP and isinstance(v, list) and len(v) == 2 else v
                for k, v in scheduler.items()
            }
    return result


_PER_GROUP = ("base_lrs", "_last_lr", "lr_lambdas")
"""The per-parameter-group lists of a saved LR scheduler (``LambdaLR``)."""


def _is_old_lr(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(_OLD_LR_PREFIX)

"""Typed, frozen run configuration loaded from YAML and dotted command-line overrides.

A config is a tree of frozen dataclasses. YAML keys are snake_case and equal to the field names, so
a file maps 1:1 onto the tree. Everything is validated before any work starts: unknown keys, missing
required keys and ill-typed values are all collected and raised together as one `ConfigError` whose
message names each offending dotted key (``inner.lr``), the value received and the type
expected.

Supported field types: ``int``, ``float`` (YAML ints are accepted and converted), ``bool`` (no
int-to-bool coercion), ``str``, ``Literal[...]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
``Optional[X]`` / ``X | None``, unions of those, and nested dataclasses.

Each field carries a one-line docstring: a string literal right below the field (preferred), or
``field(metadata={"help": ...})``; `config_help` collects them for a CLI. Config classes must be
defined at module level, so that their annotations resolve.

Example:
    >>> cfg = load_config(RunConfig, {"seed": 1, "log_every": 5}, ["device=cpu", "seed=7"])
    >>> cfg.seed, cfg.device, cfg.log_every
    (7, 'cpu', 5)
    >>> try:
    ...     load_config(RunConfig, {"seed": "7", "devise": "cpu"})  # doctest: +ELLIPSIS
    ... except ConfigError as error:
    ...     for message in error.errors:
    ...         print(message)
    devise: unknown key (did you mean 'device'?); RunConfig accepts: seed, device, ...
    seed: expected int, got '7' (type str)
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import os
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

import yaml

from metarl.config_renames import renamed_key_errors, renamed_key_message
from metarl.run_config import RunConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "ConfigError",
    "RunConfig",
    "apply_overrides",
    "config_help",
    "config_to_dict",
    "describe_yaml_error",
    "field_help",
    "format_config_help",
    "load_config",
    "load_yaml",
    "save_config",
    "undocumented_fields",
]

T = TypeVar("T", bound="DataclassInstance")


_MISSING = object()
_MAX_REPR = 80


class ConfigError(ValueError, TypeError):
    """Unknown key, missing key, wrong type or bad override; ``errors`` lists every problem.

    Subclasses both `ValueError` and `TypeError` so callers may catch either.
    """

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid config:\n  " + "\n  ".join(self.errors))


# --- YAML loading ---------------------------------------------------------------------------------


class _StrictSafeLoader(yaml.SafeLoader):
    """A SafeLoader rejecting duplicate keys and reading ``1e-3`` as a float (YAML 1.2 syntax).

    Plain PyYAML follows YAML 1.1, where ``lr: 1e-3`` loads as the *string* ``"1e-3"``.
    """


def _construct_mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in keys:
            mark = key_node.start_mark
            raise ConfigError([f"duplicate key {key!r} at line {mark.line + 1}"])
        keys.add(key)
    return loader.construct_mapping(node)


_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789.")
)
_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates
)


def load_yaml(text: str) -> Any:
    """Parse YAML safely, rejecting duplicate keys and reading ``1e-3`` as a float.

    Args:
        text: YAML document.

    Returns:
        The parsed document (plain dicts, lists, strings, numbers, booleans, None).

    Raises:
        ConfigError: If a mapping repeats a key.
        yaml.YAMLError: If the text is not valid YAML.
    """
    return yaml.load(text, Loader=_StrictSafeLoader)  # A SafeLoader subclass: no arbitrary objects.


def describe_yaml_error(err: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the problem and where (``... at line 3, column 2``).

    Args:
        err: The error PyYAML raised.

    Returns:
        The message, without PyYAML's multi-line excerpt of the source.
    """
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({err.context})" if err.context else ""
        return f"{err.problem}{where}{context}"
    return " ".join(str(err).split())


# --- Type checking and conversion -----------------------------------------------------------------


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _type_name(tp: Any, nested: bool = False) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = ", ".join(repr(c) for c in typing.get_args(tp))
        return f"Literal[{choices}]" if nested else f"one of {choices}"
    if origin in (Union, types.UnionType):
        names = ("None" if a is type(None) else _type_name(a, True) for a in typing.get_args(tp))
        return " | ".join(names)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        inner = ", ".join("..." if a is Ellipsis else _type_name(a, True) for a in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    return getattr(tp, "__name__", str(tp))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(
            f"cannot resolve the annotations of config class {cls.__qualname__}: {exc} "
            "(define config classes at module level)"
        ) from exc
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _wrong_type(key: str, value: Any, tp: Any) -> str:
    got = f"{_short_repr(value)} (type {type(value).__name__})"
    return f"{key}: expected {_type_name(tp)}, got {got}"


_SCALAR_CHECKS: dict[type, Callable[[Any], bool]] = {
    bool: lambda v: type(v) is bool,  # No int-to-bool coercion: `1` is not `true`.
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _convert_scalar(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    check = _SCALAR_CHECKS.get(tp)
    if check is None:
        errors.append(f"{key}: unsupported field type {_type_name(tp)} in config class")
    elif not check(value):
        errors.append(_wrong_type(key, value, tp))
    elif tp is float and value != value:  # NaN passes every range check written as `x < low`.
        errors.append(f"{key}: expected a number, got nan")
    else:
        return float(value) if tp is float else value
    return _MISSING


def _convert_sequence(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        errors.append(_wrong_type(key, value, tp))
        return _MISSING
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            errors.append(f"{key}: expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
            return _MISSING
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    before = len(errors)
    items = [
        item if item_tp is Any else _convert(item, item_tp, f"{key}[{i}]", errors)
        for i, (item, item_tp) in enumerate(zip(value, item_types, strict=True))
    ]
    if len(errors) > before:
        return _MISSING
    return tuple(items) if origin is tuple else list(items)


def _convert_union(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    candidates = [a for a in args if a is not type(None)]
    for candidate in candidates:
        trial: list[str] = []
        converted = _convert(value, candidate, key, trial)
        if not trial:
            return converted
        if len(candidates) == 1:  # Optional[X]: X's own message is the most precise.
            errors.extend(trial)
            return _MISSING
    errors.append(_wrong_type(key, value, tp))
    return _MISSING


def _convert(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    """Validate ``value`` against the annotation ``tp``; append messages to ``errors``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _convert(value, typing.get_args(tp)[0], key, errors)
    if tp is Any:
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        return _build_dataclass(tp, value, key, errors)
    if origin is Literal:
        choices = typing.get_args(tp)
        # Compare type too, so that True does not match Literal[1] and 1 does not match 1.0.
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        errors.append(f"{key}: expected {_type_name(tp)}, got {_short_repr(value)}")
        return _MISSING
    if origin in (Union, types.UnionType):
        return _convert_union(value, tp, key, errors)
    if origin in (tuple, list) or tp in (tuple, list):
        return _convert_sequence(value, tp, key, errors)
    return _convert_scalar(value, tp, key, errors)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _build_dataclass(cls: type[T], data: Any, prefix: str, errors: list[str]) -> T:
    """Build ``cls`` from a mapping, recording every problem under its dotted key."""
    where = prefix or "<root>"
    if not isinstance(data, Mapping):
        errors.append(f"{where}: expected a mapping for {cls.__name__}, got {_short_repr(data)}")
        return _MISSING  # type: ignore[return-value]
    types_by_name = _field_types(cls)
    before = len(errors)
    for key in data:
        if key not in types_by_name:
            hint = difflib.get_close_matches(str(key), list(types_by_name), n=1)
            suggestion = f" (did you mean {_join(prefix, hint[0])!r}?)" if hint else ""
            known = ", ".join(types_by_name)
            errors.append(
                f"{_join(prefix, str(key))}: unknown key{suggestion}; "
                f"{cls.__name__} accepts: {known}"
            )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key, tp = _join(prefix, f.name), types_by_name[f.name]
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], tp, key, errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if _is_dataclass_type(tp):  # A nested section whose fields all have defaults.
                kwargs[f.name] = _build_dataclass(tp, {}, key, errors)
            else:
                errors.append(f"{key}: missing required key (expected {_type_name(tp)})")
    if len(errors) > before:
        return _MISSING  # type: ignore[return-value]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # Range checks in __post_init__.
        message = str(exc)
        # A message starting with a field name ("log_every must be >= 1") gets the dotted key.
        named = message.split(" ", 1)[0] in types_by_name
        errors.append(_join(prefix, message) if named else f"{where}: {message}")
        return _MISSING  # type: ignore[return-value]


# --- Overrides ------------------------------------------------------------------------------------


def apply_overrides(cls: type, data: Mapping[str, Any], overrides: Sequence[str]) -> dict:
    """Return a copy of ``data`` with dotted ``key=value`` overrides applied.

    Values are parsed as YAML (``4``: int, ``0.4``: float, ``[1, 2]``: list, ``null``: None,
    ``cpu``: str). Types are checked later, by `load_config`, with the rest of the config.

    Args:
        cls: Root config dataclass; the dotted keys must name its fields.
        data: Raw config mapping (as loaded from YAML). Not modified.
        overrides: Strings such as ``"inner.lr=0.4"``.

    Returns:
        A new nested dict with the overrides applied.

    Raises:
        ConfigError: Listing each override that is malformed or names an unknown key.
    """
    result = _deep_copy_mappings(data)
    known = [key for key, _, _, _ in _walk_fields(cls)]
    errors: list[str] = []
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"override {override!r}: expected 'dotted.key=value'")
            continue
        if key not in known and renamed_key_message(cls, key):
            errors.append(f"{renamed_key_message(cls, key)}, in override {override!r}")
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            errors.append(f"{key}: unknown key in override {override!r}{suggestion}")
            continue
        parts = key.split(".")
        try:
            value = load_yaml(text) if text.strip() else None
        except yaml.YAMLError as exc:
            errors.append(
                f"{key}: cannot parse value {text!r} in override {override!r}: "
                + describe_yaml_error(exc)
            )
            continue
        node = result
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    if errors:
        raise ConfigError(errors)
    return result


def _deep_copy_mappings(data: Mapping[str, Any]) -> dict:
    return {k: _deep_copy_mappings(v) if isinstance(v, Mapping) else v for k, v in data.items()}


# --- Public loading and saving --------------------------------------------------------------------


def load_config(
    cls: type[T],
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Load, override and validate a config before any work is done.

    Args:
        cls: A frozen dataclass describing the config tree.
        path_or_dict: A YAML file, an already-parsed mapping, or None for all defaults.
        overrides: Dotted command-line overrides such as ``"inner.lr=0.4"``, applied in order.

    Returns:
        An instance of ``cls``.

    Raises:
        TypeError: If ``cls`` is not a frozen dataclass.
        FileNotFoundError: If ``path_or_dict`` names a missing file.
        ConfigError: Listing every unknown key, missing key, ill-typed value or bad override, each
            named by its dotted key.
    """
    if not _is_dataclass_type(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"cls must be a frozen dataclass type, got {cls!r}")
    data: Any = {} if path_or_dict is None else path_or_dict
    if not isinstance(data, Mapping):
        path = Path(data)
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            raise ConfigError([f"{path}: {e}" for e in exc.errors]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: invalid YAML: {describe_yaml_error(exc)}"]) from None
        data = {} if data is None else data  # An empty file means all defaults.
    if not isinstance(data, Mapping):
        raise ConfigError([f"<root>: expected a mapping, got {_short_repr(data)}"])
    if overrides:
        data = apply_overrides(cls, data, overrides)
    data, errors = renamed_key_errors(cls, data)  # Old keys: an error naming the new key.
    config = _build_dataclass(cls, data, "", errors)
    if errors:
        raise ConfigError(errors)
    return config


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Convert a config dataclass into nested plain dicts and lists (tuples become lists).

    Only init fields are included, so derived values (properties) never appear.

    Args:
        config: A dataclass instance.

    Returns:
        A dict that `load_config` maps back onto an equal config.

    Raises:
        TypeError: If ``config`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return _to_plain(config)


def save_config(config: DataclassInstance, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML in field order (via a temporary file and a rename).

    Sections that are None (those the config's algorithm does not use) are left out.

    Args:
        config: A dataclass instance.
        path: Destination file; parent directories are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config_to_dict(config)
    types_by_name = _field_types(type(config))
    unused = [k for k, v in data.items() if v is None and _section_type(types_by_name[k])]
    data = {k: v for k, v in data.items() if k not in unused}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # Never a half-written config.yaml.
    return path


# --- Field documentation --------------------------------------------------------------------------


@functools.cache
def _attribute_docstrings(cls: type) -> dict[str, str]:
    """Docstrings written as string literals right below annotated fields in ``cls``'s source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    return {
        node.target.id: inspect.cleandoc(doc.value.value)
        for node, doc in zip(body, body[1:], strict=False)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
        if isinstance(doc.value.value, str)
    }


def field_help(cls: type) -> dict[str, str]:
    """Return the help text of each init field of a config dataclass (empty if undocumented).

    ``field(metadata={"help": ...})`` wins over a string literal below the field. Inherited fields
    use the docstrings of the class that declares them.

    Args:
        cls: A dataclass type.

    Returns:
        Field name to help text, in field order.
    """
    bases = [b for b in reversed(cls.__mro__) if _is_dataclass_type(b)]
    docs = {k: v for b in bases for k, v in _attribute_docstrings(b).items()}
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return {f.name: str(f.metadata.get("help", docs.get(f.name, ""))) for f in fields}


def _section_type(tp: Any) -> type | None:
    """The dataclass of a ``Section`` or ``Section | None`` field, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = members[0] if len(members) == 1 else None
    return tp if _is_dataclass_type(tp) else None


def _walk_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any, str]]:
    """Yield ``(dotted key, field, type, help)`` depth first, sections before their fields."""
    types_by_name = _field_types(cls)
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        if f.init:
            key, tp = _join(prefix, f.name), types_by_name[f.name]
            yield key, f, tp, helps[f.name]
            section = _section_type(tp)
            if section is not None:
                yield from _walk_fields(section, key)


def config_help(cls: type) -> dict[str, str]:
    """Return help text for every dotted key of a config tree, sections included.

    Args:
        cls: The root config dataclass.

    Returns:
        Dotted key to help text, depth first in field order.
    """
    return {key: text for key, _, _, text in _walk_fields(cls)}


def undocumented_fields(cls: type) -> list[str]:
    """Return the dotted keys of fields without help text (a test can assert this is empty).

    Args:
        cls: The root config dataclass.

    Returns:
        Dotted keys, in field order.
    """
    return [key for key, text in config_help(cls).items() if not text.strip()]


def format_config_help(cls: type) -> str:
    """Format one line per dotted key with its type, default and help, for a CLI ``--help``.

    Args:
        cls: The root config dataclass.

    Returns:
        Lines such as ``run.seed (int, default 0): Seed of every random number generator.``
    """
    lines = []
    for key, f, tp, text in _walk_fields(cls):
        if _section_type(tp) is not None:
            detail = "section"
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            detail = f"{_type_name(tp)}, required"
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            detail = f"{_type_name(tp)}, default {default!r}"
        lines.append(f"{key} ({detail}): {text}")
    return "\n".join(lines)

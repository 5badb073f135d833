"""The one typed-YAML loader: YAML files -> validated dataclasses, every mistake one line.

Used by the simulation config (:class:`xecreco.sim.config.SimConfig`, a flat mapping) and the
training config (:class:`xecreco.train.config.TrainConfig`, sections of nested dataclasses).

* :func:`read_yaml_mapping` reads a file with ``yaml.safe_load``: a missing or unreadable file,
  bytes that are not UTF-8, invalid YAML (with its line), nesting too deep for the parser, or a
  top level that is not a mapping is a :class:`~xecreco.errors.UserError` naming the file.
* :func:`build_dataclass` builds a dataclass from a mapping, typed by the field annotations: an
  unknown key names the closest valid key (:func:`closest_key`, by edit distance, with optional
  per-key aliases) and a value of the wrong type names the key and the expected type.
* :func:`apply_overrides` applies ``--set key.sub=value`` strings (values parsed as YAML).

Types (from the annotations): ``bool`` needs a YAML boolean; ``int`` an integer, or a number or
numeric string with an integral value (``1.0e6``, ``"1e6"``); ``float`` a number or numeric string
(YAML 1.1 reads ``3e-4`` without a dot as text); ``str`` a string (null is ``""``); ``list[T]`` a
list (a single value is a one-item list); ``dict`` a mapping (null is ``{}``); a nested dataclass
a mapping; ``X | None`` also null. Errors start with the ``origin`` (for example
``config file c.yaml``) when one is given.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from xecreco.errors import UserError

__all__ = [
    "apply_overrides",
    "build_dataclass",
    "closest_key",
    "edit_distance",
    "read_yaml_mapping",
    "type_name",
    "with_origin",
]


def with_origin(origin: str | None, message: str) -> str:
    """``"origin: message"``, or ``message`` when there is no origin."""
    return f"{origin}: {message}" if origin else message


# ------------------------------------------------------------------------------ reading files


def read_yaml_mapping(path, what: str = "config file") -> dict:
    """The YAML mapping in ``path`` (safe_load; an empty file is ``{}``).

    ``what`` names the kind of file in the errors, e.g. ``"config file"`` or ``"sim config"``.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; pass a YAML file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start}); pass a YAML "
                        "file") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserError(f"{what} {path}: nested too deeply to be a config (expected a mapping "
                        "of keys to values)") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{what} {path} must hold a mapping of keys to values, "
                        f"got {type(values).__name__}")
    return values


# ------------------------------------------------------------------------------ suggestions


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two strings."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def closest_key(key: str, names, aliases: dict | None = None) -> str | None:
    """The valid key of ``names`` closest to the unknown ``key`` by edit distance to the name or
    one of its ``aliases[name]`` spellings (case-insensitive); None when even the closest needs
    more edits than half its length."""
    aliases = aliases or {}
    best, best_distance = None, None
    for name in names:
        for spelling in (name, *aliases.get(name, ())):
            distance = edit_distance(key.lower(), spelling.lower())
            if distance <= max(1, len(spelling) // 2) and (
                    best_distance is None or distance < best_distance):
                best, best_distance = name, distance
    return best


# ------------------------------------------------------------------------------ typed building


def type_name(tp) -> str:
    """Readable name of a field annotation, e.g. ``list of float`` or ``int or null``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {type_name(item)}"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    """The value does not have the annotated type (turned into a UserError by the caller)."""


def _number(value) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, numbers.Real):  # numpy scalars too
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _Mismatch from None
    raise _Mismatch


def _coerce(value, tp, key: str, ctx: dict):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, ctx)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        number = _number(value)
        if not (math.isfinite(number) and number == int(number)):
            raise _Mismatch
        return int(number)
    if tp is float:
        return _number(value)
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        out = []
        for i, entry in enumerate(items):
            try:
                out.append(_coerce(entry, item, f"{key}[{i}]", ctx))
            except _Mismatch:
                raise UserError(with_origin(ctx["origin"], f"config key '{key}[{i}]': expected "
                                            f"{type_name(item)}, got {entry!r}")) from None
        return out
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if isinstance(value, dict):
            return dict(value)
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, ctx)
    raise _Mismatch


def _build(cls, values, prefix: str, ctx: dict):
    origin = ctx["origin"]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        where = f"section '{prefix}'" if prefix else "the config"
        raise UserError(with_origin(origin, f"{where} must be a mapping of keys to values, got "
                                    f"{values!r}"))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = closest_key(str(key), names, ctx["aliases"])
            dotted = f"{prefix}." if prefix else ""
            hint = f"; did you mean '{dotted}{close}'?" if close else ""
            if ctx["key_help"]:
                listing = f" ({ctx['key_help']})"
            else:
                where = f" in {prefix}" if prefix else ""
                listing = f" (valid keys{where}: {', '.join(names)})"
            raise UserError(with_origin(origin, f"unknown config key '{full}'{hint}{listing}"))
        try:
            kwargs[key] = _coerce(value, hints[key], full, ctx)
        except _Mismatch:
            raise UserError(with_origin(origin, f"config key '{full}': expected "
                                        f"{type_name(hints[key])}, got {value!r}")) from None
    return cls(**kwargs)


def build_dataclass(cls, values, *, origin: str | None = None, aliases: dict | None = None,
                    key_help: str | None = None):
    """An instance of the dataclass ``cls`` from the mapping ``values``, typed by its annotations
    (see the module docstring); fields not given keep their defaults.

    Args:
        origin: where the values came from, the start of every error (e.g. ``config file c.yaml``).
        aliases: ``{field name: (other spellings, ...)}`` that also lead to a suggestion.
        key_help: said instead of the list of valid keys after an unknown key (e.g. ``see
            configs/sim-default.yaml``), for schemas too long to list in one line.
    Raises:
        UserError: an unknown key (with the closest valid one), a value of the wrong type, a
            section that is not a mapping; one line naming the origin and the key.
    """
    ctx = {"origin": origin, "aliases": aliases or {}, "key_help": key_help}
    return _build(cls, values, "", ctx)


# ------------------------------------------------------------------------------ overrides


def _deep_copy(values):
    if isinstance(values, dict):
        return {k: _deep_copy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deep_copy(v) for v in values]
    return values


def apply_overrides(values: dict, overrides) -> dict:
    """Apply ``key.sub=value`` strings to a nested dict (values parsed as YAML); returns a copy."""
    out = _deep_copy(values)
    for item in overrides or ():
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key.sub=value (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise UserError(f"override '{item}': value is not valid YAML ({exc.problem})") from None
        parts = key.split(".")
        if not all(parts):
            raise UserError(f"override '{item}': empty key component")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return out

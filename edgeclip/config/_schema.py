"""Turn parsed YAML into frozen dataclasses, collecting nothing silently.

Each dataclass field's type hint drives validation: unknown keys, wrong types and values
outside a field's ``choices`` metadata raise one ``ConfigError`` that names the file, the key
path, what was found and what is allowed.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from ..errors import ConfigError

__all__ = ["build", "choice", "load_yaml_file", "fail"]


def choice(*allowed: str, default: Any = dataclasses.MISSING, **kw):
    """A dataclass field whose value (or each element, for tuples) must be one of ``allowed``."""
    md = {"choices": tuple(allowed)}
    if default is dataclasses.MISSING and "default_factory" not in kw:
        return dataclasses.field(metadata=md, **kw)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=md, **kw)
    return dataclasses.field(default=default, metadata=md, **kw)


def fail(file: str | Path, keypath: str, message: str) -> typing.NoReturn:
    where = f"{file}: {keypath}: " if keypath else f"{file}: "
    raise ConfigError(where + message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, found {_kind(key)}",
                key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; each key may appear once per mapping",
                key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def load_yaml_file(path: Path) -> dict:
    """Read a YAML mapping safely; syntax errors say line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path or run `edgeclip list` for known names")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e}); it must be a UTF-8 YAML file") from e
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(f"{path}: YAML syntax error at {loc}: {problem}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {str(e).splitlines()[0]}") from e
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it must hold a YAML mapping")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, found {_kind(data)}")
    return data


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            type(None): "null", Any: "any value"}.get(tp, getattr(tp, "__name__", str(tp)))


def build(cls: type, data: Any, file: str | Path, keypath: str = ""):
    """Build dataclass ``cls`` from ``data``; raise ConfigError on the first problem."""
    if not isinstance(data, dict):
        fail(file, keypath, f"expected a mapping, found {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            near = _near(str(key), fields)
            hint = f" (did you mean {near!r}?)" if near else ""
            fail(file, _join(keypath, str(key)),
                 f"unknown key {key!r}{hint}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        kp = _join(keypath, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                fail(file, kp, f"missing required key {name!r}")
            continue
        value = _convert(hints[name], data[name], file, kp)
        allowed = f.metadata.get("choices")
        if allowed is not None:
            for v in value if isinstance(value, tuple) else (value,):
                if v is not None and v not in allowed:
                    fail(file, kp, f"unknown value {v!r}; allowed: {', '.join(allowed)}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as e:  # __post_init__ checks report without the location
        fail(file, keypath, str(e))


def _convert(tp: Any, v: Any, file, kp: str):
    origin = typing.get_origin(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:  # Optional[X]: X's own message is the most precise
            return _convert(real[0], v, file, kp)
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, v, file, kp)
            except ConfigError:
                continue
        fail(file, kp, f"expected {_type_name(tp)}, found {_kind(v)} {v!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, v, file, kp)
    if origin is tuple:
        (elem, *_rest) = typing.get_args(tp)
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and elem in (str, int, float):
            v = [v]  # a scalar where a list is allowed reads as a one-element list
        if not isinstance(v, list):
            fail(file, kp, f"expected {_type_name(tp)}, found {_kind(v)}")
        return tuple(_convert(elem, x, file, f"{kp}[{i}]") for i, x in enumerate(v))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(v, dict):
            fail(file, kp, f"expected a mapping, found {_kind(v)}")
        return {_convert(kt, k, file, kp): _convert(vt, x, file, _join(kp, str(k))) for k, x in v.items()}
    if tp is bool:
        if not isinstance(v, bool):
            fail(file, kp, f"expected true/false, found {_kind(v)} {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            fail(file, kp, f"expected an integer, found {_kind(v)} {v!r}")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(file, kp, f"expected a number, found {_kind(v)} {v!r}")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            fail(file, kp, f"expected a string, found {_kind(v)} {v!r}")
        return v
    raise TypeError(f"unsupported config type {tp!r}")  # a bug in a dataclass, not user input


def _join(kp: str, key: str) -> str:
    """``a.b`` for a plain key; a key with spaces, dots or control characters is quoted
    (``a['x\\ny']``) so the message stays one readable line."""
    if not key or not key.isprintable() or any(c in key for c in " .[]'\""):
        return f"{kp}[{key!r}]"
    return f"{kp}.{key}" if kp else key


def _near(key: str, options) -> str | None:
    import difflib
    m = difflib.get_close_matches(key, list(options), n=1, cutoff=0.75)
    return m[0] if m else None

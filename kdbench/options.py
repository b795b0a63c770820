"""Plugin options: dataclass fields checked against TOML tables.

A component's options are the fields of its dataclass. `option()` adds the help text and
bounds that `kdbench plugins` shows and that `build()` enforces, so a plugin author writes
each option once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from kdbench.errors import ConfigError, did_you_mean, one_of


def option(
    default: Any = MISSING,
    *,
    help: str,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
) -> Any:
    """Declare a plugin option: a dataclass field with help text and an optional lower bound."""
    metadata = {"help": help, "minimum": minimum, "exclusive_minimum": exclusive_minimum}
    if isinstance(default, list):
        frozen = list(default)
        return field(default_factory=lambda: list(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionInfo:
    """One option as `kdbench plugins` shows it."""

    name: str
    type: str
    default: Any
    help: str


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def type_name(tp: Any) -> str:
    """A short, readable name of an option's type, for help and error messages."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join("none" if a is type(None) else type_name(a) for a in get_args(tp))
    if origin in (list, Sequence):
        return f"list of {type_name(get_args(tp)[0])}"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def describe(cls: type) -> list[OptionInfo]:
    """The options of a component class."""
    hints = get_type_hints(cls)
    return [
        OptionInfo(f.name, type_name(hints[f.name]), _default(f), f.metadata.get("help", ""))
        for f in _fields(cls)
    ]


def _matches(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(tp))
    if origin in (list, Sequence):
        (item,) = get_args(tp)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:  # TOML has nan and inf; no option means them
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _coerce(value: Any, tp: Any) -> Any:
    """TOML writes 1 for 1.0; a float option stores a float."""
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def build(cls: type, table: Mapping[str, Any], *, file: str | None, key: str) -> Any:
    """Instantiate `cls` from a TOML table, raising ConfigError at the offending key."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in _fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in table.items():
        if name not in fields:
            raise ConfigError(
                f"unknown option '{name}'{did_you_mean(name, fields)}; allowed: {one_of(fields)}",
                file=file,
                key=key,
            )
        tp = hints[name]
        if value is None or not _matches(value, tp):
            hint = did_you_mean(value, map(str, get_args(tp))) if isinstance(value, str) else ""
            raise ConfigError(
                f"expected {type_name(tp)}, got {value!r}{hint}", file=file, key=f"{key}.{name}"
            )
        minimum = fields[name].metadata.get("minimum")
        if minimum is not None:
            strict = fields[name].metadata.get("exclusive_minimum")
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, (int, float)) and (
                    item <= minimum if strict else item < minimum
                ):
                    bound = f"> {minimum}" if strict else f">= {minimum}"
                    raise ConfigError(
                        f"must be {bound}, got {value!r}", file=file, key=f"{key}.{name}"
                    )
        kwargs[name] = _coerce(value, typing.cast(Any, tp))
    return cls(**kwargs)


def resolved(component: Any) -> dict[str, Any]:
    """All option values of a component, defaults included: what a run records."""
    return {f.name: getattr(component, f.name) for f in _fields(type(component))}


def preset(base: type, name: str, doc: str, **defaults: Any) -> type:
    """A subclass of the component `base`, named `name`, whose options default differently.

    For named configurations of one plugin (the paper's students, say): register the result
    like any component; users can still override every option.
    """
    fields = {f.name: f for f in _fields(base)}
    unknown = sorted(set(defaults) - set(fields))
    if unknown:
        raise TypeError(f"{base.__name__} has no option {', '.join(unknown)}")
    hints = get_type_hints(base)
    changed = [
        (key, hints[key], option(value, **_bounds(fields[key]))) for key, value in defaults.items()
    ]
    class_name = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    namespace = {"name": name, "__doc__": doc, "__module__": base.__module__}
    return dataclasses.make_dataclass(
        class_name, changed, bases=(base,), namespace=namespace, kw_only=True
    )


def _bounds(f: dataclasses.Field) -> dict[str, Any]:
    meta = f.metadata
    return {
        "help": meta.get("help", ""),
        "minimum": meta.get("minimum"),
        "exclusive_minimum": meta.get("exclusive_minimum", False),
    }

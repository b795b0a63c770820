"""Plugin options: dataclass fields checked against TOML tables.

A component's options are the fields of its dataclass. `option()` adds the help text, bounds
and choices that `kdbench plugins` shows and that `build()` enforces, so a plugin author
writes each option once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from kdbench.errors import ConfigError, OptionError, did_you_mean, one_of


def option(
    default: Any = MISSING,
    *,
    help: str,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    maximum: float | None = None,
    exclusive_maximum: bool = False,
    choices: Sequence[Any] | None = None,
    recorded_at_default: bool = True,
    recorded_if: str | None = None,
    unrecorded: Any = MISSING,
    recorded: bool = True,
) -> Any:
    """Declare a plugin option: a dataclass field with help text and optional limits.

    `minimum` and `maximum` bound a number (each item of a list); `choices` lists the allowed
    values when they are computed at import (fixed ones read better as a `Literal` type).
    `recorded_at_default=False` leaves the option out of what a run records (and so of cell
    ids and teacher cache keys) while it has its default: for an option added to a released
    component, so that the runs of configs written before it keep their ids.
    `recorded_if="other"` records it only while the option `other` is set (truthy): for an
    option that does nothing without that one (a backend's smoothing of shots it does not
    draw), so that adding it leaves the ids of the runs it cannot change as they were.
    `unrecorded=value` leaves it out while it has that value instead: for an option whose
    default changed from `value`, so that configs which set the old default keep their ids
    and configs that took it get new ones (their computation changed).
    `recorded=False` never records it: for an option that says how a result is computed,
    not what it is (results agree to float tolerance whatever its value).
    """
    metadata = {
        "help": help,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "exclusive_maximum": exclusive_maximum,
        "choices": None if choices is None else tuple(choices),
        "recorded_at_default": recorded_at_default,
        "recorded_if": recorded_if,
        "unrecorded": unrecorded,
        "recorded": recorded,
    }
    if isinstance(default, (list, dict)):  # mutable: each instance gets a copy
        frozen = copy.deepcopy(default)
        return field(default_factory=lambda: copy.deepcopy(frozen), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionInfo:
    """One option as `kdbench plugins` shows it."""

    name: str
    type: str
    default: Any
    help: str
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] | None = None

    def limits(self) -> str:
        """The bounds and choices for a reader: '0 ≤ x ≤ 1', 'x > 0', 'one of: a, b' or ''."""
        low = "<" if self.exclusive_minimum else "≤"
        high = "<" if self.exclusive_maximum else "≤"
        parts = []
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{self.minimum} {low} x {high} {self.maximum}")
        elif self.minimum is not None:
            parts.append(f"x {'>' if self.exclusive_minimum else '≥'} {self.minimum}")
        elif self.maximum is not None:
            parts.append(f"x {high} {self.maximum}")
        if self.choices is not None:
            parts.append("one of: " + ", ".join(map(str, self.choices)))
        return "; ".join(parts)


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
    if origin in (dict, Mapping):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def describe(cls: type) -> list[OptionInfo]:
    """The options of a component class."""
    hints = get_type_hints(cls)
    return [
        OptionInfo(f.name, type_name(hints[f.name]), _default(f), **_bounds(f))
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
    if origin in (dict, Mapping):  # a TOML table: string keys
        key, item = get_args(tp)
        return isinstance(value, dict) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items()
        )
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


def outside_limits(meta: Mapping[str, Any], value: Any) -> str:
    """Why `value` (or an item of a list) breaks the option's bounds or choices; '' if not."""
    low, high, choices = meta.get("minimum"), meta.get("maximum"), meta.get("choices")
    low_strict, high_strict = meta.get("exclusive_minimum"), meta.get("exclusive_maximum")
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (int, float)):
            if low is not None and (item <= low if low_strict else item < low):
                return f"must be {'>' if low_strict else '>='} {low}, got {value!r}"
            if high is not None and (item >= high if high_strict else item > high):
                return f"must be {'<' if high_strict else '<='} {high}, got {value!r}"
        if choices is not None and item is not None and item not in choices:
            hint = did_you_mean(item, map(str, choices)) if isinstance(item, str) else ""
            return f"expected one of {', '.join(map(repr, choices))}, got {value!r}{hint}"
    return ""


def check_limits(component: Any) -> None:
    """Raise OptionError for the first option of `component` outside its bounds or choices,
    those of `option()` and those of a `Literal` type alike."""
    hints = get_type_hints(type(component))
    for f in _fields(type(component)):
        value, tp = getattr(component, f.name), hints[f.name]
        problem = outside_limits(f.metadata, value)
        if not problem and _has_literal(tp) and not _matches(value, tp):
            problem = f"expected {type_name(tp)}, got {value!r}"
        if problem:
            raise OptionError(f.name, problem)


def _has_literal(tp: Any) -> bool:
    if get_origin(tp) is Literal:
        return True
    return get_origin(tp) in (Union, types.UnionType) and any(map(_has_literal, get_args(tp)))


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
        problem = outside_limits(fields[name].metadata, value)
        if problem:
            raise ConfigError(problem, file=file, key=f"{key}.{name}")
        kwargs[name] = _coerce(value, typing.cast(Any, tp))
    return cls(**kwargs)


def build_component(cls: type, table: Mapping[str, Any], *, file: str | None, key: str) -> Any:
    """`build`, then the component's check of its options together (`check()`), whose
    OptionError becomes a ConfigError at that option's key."""
    component = build(cls, table, file=file, key=key)
    try:
        component.check()
    except OptionError as exc:
        raise ConfigError(exc.message, file=file, key=f"{key}.{exc.key}") from None
    return component


def resolved(component: Any) -> dict[str, Any]:
    """All option values of a component, defaults included: what a run records (an option
    declared `recorded=False` never, one declared `recorded_at_default=False` only when it
    differs from its default, one declared
    `unrecorded=value` only when it differs from that value, one declared
    `recorded_if=other` only while `other` is set)."""

    def recorded(f: dataclasses.Field) -> bool:
        if not f.metadata.get("recorded", True):
            return False
        condition = f.metadata.get("recorded_if")
        if condition is not None and not getattr(component, condition):
            return False
        value, unrecorded = getattr(component, f.name), f.metadata.get("unrecorded", MISSING)
        if unrecorded is not MISSING:
            return value != unrecorded
        return f.metadata.get("recorded_at_default", True) or value != _default(f)

    return {f.name: getattr(component, f.name) for f in _fields(type(component)) if recorded(f)}


def preset(base: type, name: str, doc: str, *, title: str | None = None, **defaults: Any) -> type:
    """A subclass of the component `base`, named `name`, whose options default differently.

    For named configurations of one plugin (the paper's students, say): register the result
    like any component; users can still override every option. `title` is how reports name
    it (see `Component.title`; default: the base's). Its class is `name` in CamelCase
    ("vqc-q3": `VqcQ3`), of the calling module: assign it to that name there, so that it
    pickles (worker processes and Ray tasks get their cells' components by pickle).
    """
    fields = {f.name: f for f in _fields(base)}
    unknown = sorted(set(defaults) - set(fields))
    if unknown:
        raise TypeError(f"{base.__name__} has no option {', '.join(unknown)}")
    hints = get_type_hints(base)
    changed = [
        (key, hints[key], option(value, **_bounds(fields[key]), **_recording(fields[key])))
        for key, value in defaults.items()
    ]
    class_name = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    caller = sys._getframe(1).f_globals.get("__name__", base.__module__)
    namespace = {"name": name, "__doc__": doc, "__module__": caller}
    if title is not None:
        namespace["title"] = title
    return dataclasses.make_dataclass(
        class_name, changed, bases=(base,), namespace=namespace, kw_only=True
    )


# The metadata `option()` records beside the help text.
_LIMITS = ("minimum", "exclusive_minimum", "maximum", "exclusive_maximum", "choices")


def _recording(f: dataclasses.Field) -> dict[str, Any]:
    meta = f.metadata
    return {
        "recorded_at_default": meta.get("recorded_at_default", True),
        "recorded_if": meta.get("recorded_if"),
        "unrecorded": meta.get("unrecorded", MISSING),
        "recorded": meta.get("recorded", True),
    }


def _bounds(f: dataclasses.Field) -> dict[str, Any]:
    """The keyword arguments of `option()` that declared `f` (help and limits)."""
    meta = f.metadata
    return {"help": meta.get("help", ""), **{k: meta[k] for k in _LIMITS if k in meta}}

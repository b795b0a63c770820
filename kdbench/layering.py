"""Profiles and --set: how a parsed TOML document is changed before it is validated."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from kdbench.api import KINDS
from kdbench.errors import ConfigError, did_you_mean, one_of


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (arrays of tables included) replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_profile(raw: dict[str, Any], profile: str | None, file: str) -> dict[str, Any]:
    """The document without its [profiles], with the chosen one merged in."""
    profiles = raw.pop("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError("expected tables [profiles.NAME]", file=file, key="profiles")
    if profile is None:
        return raw
    if profile not in profiles:
        raise ConfigError(
            f"unknown profile '{profile}'{did_you_mean(profile, profiles)};"
            f" defined: {one_of(profiles)}",
            file=file,
            key="profiles",
        )
    chosen = profiles[profile]
    raw = dict(raw)
    for kind in KINDS:
        # An instance whose profile table names its plugin starts from that plugin's
        # defaults: the document's options are another plugin's, or another setting of
        # this one (`{ plugin = "statevector" }` over a 5000-shot statevector is exact).
        if not isinstance(raw.get(kind, {}), dict) or not isinstance(chosen.get(kind, {}), dict):
            continue  # not tables: parse_spec says so, at the merged value
        instances = dict(raw.get(kind, {}))
        for name, table in chosen.get(kind, {}).items():
            old = instances.get(name)
            replaced = isinstance(table, dict) and "plugin" in table and isinstance(old, dict)
            if replaced:
                del instances[name]
        if kind in raw:
            raw[kind] = instances
    return merge(raw, chosen)


def apply_override(raw: dict[str, Any], override: str, file: str) -> dict[str, Any]:
    """Set one "dotted.key=value" (from --set) in the document."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted KEY, got {override!r}", file=file)
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word is a string: --set teachers.t.device=cpu
    except RecursionError:
        raise ConfigError(f"--set {key}: value nested too deeply", file=file) from None
    return set_key(raw, key, value)


def dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested table's leaves by dotted key: {'a': {'b': 1}} -> {'a.b': 1} (set_key's
    inverse)."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The document with the dotted `key` set to `value` (tables on the way made or merged)."""
    tree: Any = value
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return merge(raw, tree)

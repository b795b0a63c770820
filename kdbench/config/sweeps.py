"""The points of a [[matrix]] entry's sweep, and which keys a sweep may set."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

from kdbench.config.spec import MAX_SWEEP_POINTS, SWEPT_SECTIONS
from kdbench.errors import ConfigError, one_of
from kdbench.layering import dotted


def sweep_points(sweep: Any, zipped: Any, file: str, where: str) -> list[dict[str, Any]]:
    """The points of `[[matrix]] sweep = {KEY = [values]}`: the values crossed (or zipped);
    [] without a sweep."""
    if not isinstance(zipped, bool):
        raise ConfigError("expected true or false", file=file, key=f"{where}.zip")
    if sweep is None:
        if zipped:
            raise ConfigError(
                "zips the values of a sweep, and there is none", file=file, key=f"{where}.zip"
            )
        return []
    if not isinstance(sweep, dict) or not sweep:
        raise ConfigError(
            'expected a table of dotted keys to lists of values, e.g. {"train.lr" = [1e-3, 1e-2]}',
            file=file,
            key=f"{where}.sweep",
        )
    sweep = dotted(sweep)  # an unquoted `train.lr = [...]` is a nested table in TOML
    for key, values in sweep.items():
        problem = sweep_key_problem(key)
        if problem:
            raise ConfigError(problem, file=file, key=f"{where}.sweep")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                "expected a non-empty list of values", file=file, key=f"{where}.sweep.{key}"
            )
    keys, lists = list(sweep), list(sweep.values())
    if zipped:
        lengths = {k: len(v) for k, v in sweep.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(
                f"zip = true needs lists of one length; got {lengths}",
                file=file,
                key=f"{where}.sweep",
            )
        count = len(lists[0])
    else:
        count = math.prod(len(v) for v in lists)
    if count > MAX_SWEEP_POINTS:
        raise ConfigError(
            f"has {count} points; at most {MAX_SWEEP_POINTS}: split it into [[matrix]] entries",
            file=file,
            key=f"{where}.sweep",
        )
    if zipped:
        combos = list(zip(*lists, strict=True))
    else:
        for key, values in sweep.items():
            _refuse_repeats([repr(v) for v in values], file, f"{where}.sweep.{key}")
        combos = list(itertools.product(*lists))
    _refuse_repeats([repr(c) for c in combos], file, f"{where}.sweep")
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def _refuse_repeats(texts: list[str], file: str, key: str) -> None:
    repeated = sorted(text for text, n in Counter(texts).items() if n > 1)
    if repeated:
        raise ConfigError(f"repeats {', '.join(repeated)}", file=file, key=key)


def sweep_key_problem(key: str) -> str | None:
    """Why `key` cannot be swept, or None: a sweep sets one option of [train], [distill] or
    an instance, as `--set` would."""
    parts = key.split(".")
    example = "e.g. 'train.lr', 'distill.kd_weight', 'students.q3.layers'"
    if any(not part for part in parts):
        return f"sweep key '{key}' is not a dotted key; {example}"
    if parts[0] == "experiment" and parts[1:] == ["seeds"]:
        return "the seeds are not swept: they are the matrix's own axis (seeds = [...])"
    if parts[0] not in SWEPT_SECTIONS:
        return f"sweep key '{key}': a sweep sets an option of {one_of(SWEPT_SECTIONS)}; {example}"
    if parts[-1] == "plugin":
        return (
            f"sweep key '{key}': a sweep sets options, not plugins; list instances of other"
            " plugins in the matrix instead"
        )
    depth = 2 if parts[0] in ("train", "distill") else 3
    if len(parts) != depth:
        shape = f"{parts[0]}.OPTION" if depth == 2 else f"{parts[0]}.NAME.OPTION"
        return f"sweep key '{key}' must have the form {shape}; {example}"
    return None

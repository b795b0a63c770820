"""TOML config -> a validated, typed `Spec`. Every error names the file and the key path."""

from __future__ import annotations

import itertools
import math
import os
import stat
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from kdbench.api import KINDS, MAX_SEED, Component
from kdbench.errors import ConfigError, OptionError, PluginError, did_you_mean, one_of
from kdbench.layering import apply_override, apply_profile, dotted, set_key
from kdbench.names import experiment_name_problem, instance_name_problem
from kdbench.options import build, option, outside_limits, resolved
from kdbench.plugins import Registry

if TYPE_CHECKING:
    from kdbench.report.reference import ReportConfig

NO_TEACHER = "none"
COMPONENT_KINDS = tuple(KINDS)
DEFAULT_DISTILLER = "paper"  # the instance [distill] configures, and the matrix's default
MATRIX_KEYS = ("datasets", "teachers", "students", "backends", "distillers", "seeds",
               "eval_backend", "also_test_on", "sweep", "zip")  # fmt: skip
SWEPT_SECTIONS = ("train", "distill", *COMPONENT_KINDS)
MAX_SWEEP_POINTS = 1000
MAX_CONFIG_BYTES = 1 << 20  # a config is a page or two of TOML; refuse /dev/zero and the like


@dataclass(kw_only=True)
class ExperimentConfig:
    """[experiment]: where runs are logged and with which seeds."""

    name: str = option("kdbench", help="MLflow experiment name")
    seeds: list[int] = option([0], help="seeds of every cell", minimum=0, maximum=MAX_SEED)
    tracking_uri: str | None = option(
        None, help="MLflow tracking URI (default sqlite:///mlflow.db)"
    )
    data_dir: str | None = option(None, help="data directory (default $KDBENCH_DATA or the cache)")


_SEED_LIMITS = next(f for f in fields(ExperimentConfig) if f.name == "seeds").metadata


# `[train] selection` that keeps the best TEST epoch (the released notebooks'): flagged in reports.
BEST_TEST = "best-test"


@dataclass(kw_only=True)
class TrainConfig:
    """[train]: how every student is trained (paper §4.6)."""

    epochs: int = option(10, help="training epochs", minimum=1)
    batch_size: int = option(32, help="mini-batch size", minimum=1)
    lr: float = option(1e-3, help="Adam learning rate", minimum=0, exclusive_minimum=True)
    threads: int = option(
        1,
        help="torch threads a student trains and is tested with, whatever --jobs gives its"
        " worker: a sum split over threads adds in another order, so results depend on it",
        minimum=1,
        maximum=256,
        recorded_at_default=False,
    )
    selection: Literal["validation", "best-test"] = option(
        "validation",
        help="which epoch's weights a student keeps: validation (the best validation accuracy),"
        " or best-test (the best TEST accuracy over epochs, the released notebooks' 'best"
        " accuracy': optimistic, for reproducing them only; the report flags it)",
        recorded_at_default=False,
    )
    budgets: list[int] = option(
        [],
        help="also test the weights validation kept within each of these optimizer-step"
        " budgets (each read at the nearest epoch's end): one run answers 'what would training"
        " this long have given', exactly, as Adam's constant learning rate does not depend on"
        " the number of epochs",
        minimum=1,
        recorded_at_default=False,
    )


@dataclass(frozen=True)
class Instance:
    """A named, configured component: a table such as [students.q3], or a bare plugin name."""

    kind: str
    name: str
    plugin: str
    component: Any

    def resolved(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **resolved(self.component)}


@dataclass
class SweepPoint:
    """One point of a [[matrix]] sweep: its values by dotted key, and the config they give
    (validated like the same values written in the file)."""

    values: dict[str, Any]
    spec: Spec


@dataclass
class MatrixEntry:
    datasets: list[str]
    teachers: list[str]
    students: list[str]
    backends: list[str]
    seeds: list[int]
    distillers: list[str] = field(default_factory=lambda: [DEFAULT_DISTILLER])
    eval_backend: str | None = None  # test on this backend instead of the training one
    also_test_on: list[str] = field(default_factory=list)  # and test again on each of these
    sweep: list[dict[str, Any]] = field(default_factory=list)  # the points' values
    points: list[SweepPoint] = field(default_factory=list, repr=False)  # [] without a sweep


@dataclass
class Spec:
    """A whole validated config."""

    file: str
    experiment: ExperimentConfig
    train: TrainConfig
    instances: dict[str, dict[str, Instance]] = field(default_factory=dict)
    matrix: list[MatrixEntry] = field(default_factory=list)
    report: ReportConfig | None = None  # [report]; parse_spec always sets it

    def instance(self, kind: str, name: str) -> Instance:
        return self.instances[kind][name]


def load_spec(
    path: str | Path,
    registry: Registry,
    *,
    profile: str | None = None,
    overrides: Sequence[str] = (),
) -> Spec:
    """Read and validate a config file; raise ConfigError on the first problem.

    `profile` merges the table [profiles.NAME] over the document; each override
    "dotted.key=value" (value in TOML syntax, or a bare string) is applied after it.
    """
    path = Path(path)
    file = str(path)
    try:
        raw = tomllib.loads(_read_config(path, file).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise ConfigError("invalid TOML: arrays or tables nested too deeply", file=file) from None
    raw = apply_profile(raw, profile, file)
    for override in overrides:
        raw = apply_override(raw, override, file)
    return parse_spec(raw, file, registry)


def _read_config(path: Path, file: str) -> bytes:
    """The bytes of a config file, refusing what is not a regular file of sane size before
    reading it: /dev/zero or a FIFO would never end, a huge file would fill the memory."""
    limit = f"a config file may have at most {MAX_CONFIG_BYTES // 1024 // 1024} MiB"
    info = os.stat(path)  # follows links; OSError (a loop, no permission) is the caller's
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError("is a directory, not a config file", file=file)
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ConfigError(f"is {kind}, not a regular file; {limit} of TOML", file=file)
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"is {info.st_size} bytes; {limit}", file=file)
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since the stat
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is over {MAX_CONFIG_BYTES} bytes; {limit}", file=file)
    return data


def parse_spec(raw: dict[str, Any], file: str, registry: Registry) -> Spec:
    """Validate an already parsed TOML document (profiles already applied), and the config
    at every point of every [[matrix]] sweep."""
    spec = _parse_document(raw, file, registry)
    for i, entry in enumerate(spec.matrix):
        entry.points = [
            SweepPoint(values, _parse_point(raw, values, i, file, registry))
            for values in entry.sweep
        ]
    return spec


def _parse_document(raw: dict[str, Any], file: str, registry: Registry) -> Spec:
    # Here, not at the top: kdbench.report imports this module.
    from kdbench.report.reference import parse_report

    allowed = ("experiment", "train", "distill", *COMPONENT_KINDS, "matrix", "report")
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"unknown section{did_you_mean(key, allowed)}; allowed: {one_of(allowed)}",
                file=file,
                key=key,
            )
    spec = Spec(
        file=file,
        experiment=build(
            ExperimentConfig, _table(raw, "experiment", file), file=file, key="experiment"
        ),
        train=build(TrainConfig, _table(raw, "train", file), file=file, key="train"),
    )
    if not spec.experiment.seeds:
        raise ConfigError("needs at least one seed", file=file, key="experiment.seeds")
    if spec.train.budgets and spec.train.selection == BEST_TEST:
        raise ConfigError(
            f"cannot be read with selection = '{BEST_TEST}': a budget's weights are the ones"
            " validation kept; use selection = 'validation'",
            file=file,
            key="train.budgets",
        )
    problem = experiment_name_problem(spec.experiment.name)
    if problem:
        raise ConfigError(problem, file=file, key="experiment.name")
    for kind in COMPONENT_KINDS:
        spec.instances[kind] = {}
        for name, table in _table(raw, kind, file).items():
            if not isinstance(table, dict):
                raise ConfigError("expected a table of options", file=file, key=f"{kind}.{name}")
            _define(spec, registry, kind, name, table)
    _define_default_distiller(spec, registry, _table(raw, "distill", file), "distill" in raw)
    _parse_matrix(spec, raw.get("matrix"), registry)
    spec.report = parse_report(raw.get("report", {}), file)
    return spec


def _table(raw: dict[str, Any], key: str, file: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError("expected a table", file=file, key=key)
    return value


def _define_default_distiller(
    spec: Spec, registry: Registry, table: dict[str, Any], written: bool
) -> None:
    """[distill] is the table of the 'paper' distiller, the one every cell with a teacher
    used before distillers were plugins: what it meant then it means now."""
    if not written:
        return  # a bare 'paper' in the matrix defines it with its defaults
    if DEFAULT_DISTILLER in spec.instances["distillers"]:
        raise ConfigError(
            f"[distill] configures the '{DEFAULT_DISTILLER}' distiller, which"
            f" [distillers.{DEFAULT_DISTILLER}] defines too: keep one of them",
            file=spec.file,
            key="distill",
        )
    if "plugin" in table:
        raise ConfigError(
            f"[distill] configures the '{DEFAULT_DISTILLER}' distiller; for another method"
            ' define [distillers.NAME] with plugin = "..." and list it in [[matrix]] distillers',
            file=spec.file,
            key="distill.plugin",
        )
    _define(spec, registry, "distillers", DEFAULT_DISTILLER, {"plugin": DEFAULT_DISTILLER,
            **table}, key="distill")  # fmt: skip


def _define(
    spec: Spec,
    registry: Registry,
    kind: str,
    name: str,
    table: dict[str, Any],
    key: str | None = None,
) -> Instance:
    problem = instance_name_problem(name)
    if problem:
        raise ConfigError(problem, file=spec.file, key=kind)
    key = key or f"{kind}.{name}"
    if table and all(isinstance(value, dict) for value in table.values()):
        # [backends.dep-0.001] is the table "001" inside "dep-0": TOML splits names at dots.
        nested = f"{name}.{next(iter(table))}"
        raise ConfigError(
            f"holds only tables; if you meant an instance named '{nested}', quote its name: "
            f'[{kind}."{nested}"]',
            file=spec.file,
            key=key,
        )
    options = dict(table)
    plugin = options.pop("plugin", name)
    if not isinstance(plugin, str):
        raise ConfigError("expected a plugin name (string)", file=spec.file, key=f"{key}.plugin")
    if name == NO_TEACHER:
        raise ConfigError(f"'{NO_TEACHER}' is reserved for 'no teacher'", file=spec.file, key=key)
    try:
        cls = registry.get(kind, plugin)
    except PluginError as exc:
        raise ConfigError(str(exc), file=spec.file, key=f"{key}.plugin" if table else key) from None
    component: Component = build(cls, options, file=spec.file, key=key)
    try:
        component.check()
    except OptionError as exc:
        raise ConfigError(exc.message, file=spec.file, key=f"{key}.{exc.key}") from None
    instance = Instance(kind, name, plugin, component)
    spec.instances[kind][name] = instance
    return instance


def _reference(spec: Spec, registry: Registry, kind: str, name: Any, key: str) -> Instance:
    """An instance by name; a bare plugin name defines an instance with default options."""
    if not isinstance(name, str):
        raise ConfigError(f"expected a name, got {name!r}", file=spec.file, key=key)
    if name in spec.instances[kind]:
        return spec.instances[kind][name]
    if name in registry.refused.get(kind, {}):
        try:
            registry.get(kind, name)
        except PluginError as exc:  # says why the plugin is refused
            raise ConfigError(str(exc), file=spec.file, key=key) from None
    if name not in registry.components[kind]:
        choices = [*spec.instances[kind], *registry.components[kind]]
        raise ConfigError(
            f"unknown {kind[:-1]} '{name}'{did_you_mean(name, choices)};"
            f" defined or available: {one_of(set(choices))}{registry.not_loaded_hint(name)}",
            file=spec.file,
            key=key,
        )
    return _define(spec, registry, kind, name, {})


def _parse_matrix(spec: Spec, raw: Any, registry: Registry) -> None:
    if raw is None or raw == []:
        raise ConfigError("no [[matrix]] entry: nothing to run", file=spec.file, key="matrix")
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError("expected [[matrix]] tables", file=spec.file, key="matrix")
    for i, entry in enumerate(raw):
        where = f"matrix[{i}]"
        for key in entry:
            if key not in MATRIX_KEYS:
                raise ConfigError(
                    f"unknown key{did_you_mean(key, MATRIX_KEYS)}; allowed: {one_of(MATRIX_KEYS)}",
                    file=spec.file,
                    key=f"{where}.{key}",
                )
        lists = {}
        for key, default in (
            ("datasets", None),
            ("teachers", [NO_TEACHER]),
            ("students", None),
            ("backends", ["statevector"]),
            ("distillers", [DEFAULT_DISTILLER]),
        ):
            value = entry.get(key, default)
            if value is None:
                raise ConfigError("is required", file=spec.file, key=f"{where}.{key}")
            if not isinstance(value, list) or not value:
                raise ConfigError(
                    "expected a non-empty list of names", file=spec.file, key=f"{where}.{key}"
                )
            lists[key] = value
        seeds = entry.get("seeds", spec.experiment.seeds)
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        ):
            raise ConfigError(
                f"expected a non-empty list of integers >= 0 and <= {MAX_SEED}",
                file=spec.file,
                key=f"{where}.seeds",
            )
        problem = outside_limits(_SEED_LIMITS, seeds)  # the bounds of experiment.seeds
        if problem:
            raise ConfigError(problem, file=spec.file, key=f"{where}.seeds")
        for kind, names in lists.items():
            for j, name in enumerate(names):
                if kind == "teachers" and name == NO_TEACHER:
                    continue
                _reference(spec, registry, kind, name, f"{where}.{kind}[{j}]")
        eval_backend = entry.get("eval_backend")
        if eval_backend is not None:
            _reference(spec, registry, "backends", eval_backend, f"{where}.eval_backend")
        also = entry.get("also_test_on", [])
        if not isinstance(also, list) or not all(isinstance(n, str) for n in also):
            raise ConfigError(
                "expected a list of backend names", file=spec.file, key=f"{where}.also_test_on"
            )
        if len(set(also)) < len(also):
            raise ConfigError("names a backend twice", file=spec.file, key=f"{where}.also_test_on")
        for j, name in enumerate(also):
            _reference(spec, registry, "backends", name, f"{where}.also_test_on[{j}]")
        sweep = _sweep_points(entry.get("sweep"), entry.get("zip", False), spec.file, where)
        spec.matrix.append(
            MatrixEntry(
                seeds=list(seeds),
                eval_backend=eval_backend,
                also_test_on=list(also),
                sweep=sweep,
                **lists,
            )
        )
    _check_students(spec, registry)
    _check_teachers(spec, registry)


def _check_students(spec: Spec, registry: Registry) -> None:
    """Resolve each student's encoder and refuse datasets it cannot read out."""
    for entry_index, entry in enumerate(spec.matrix):
        for name in entry.students:
            student = spec.instance("students", name)
            encoder = student.component.encoder
            if encoder is not None:
                _reference(spec, registry, "encoders", encoder, f"students.{name}.encoder")
            limit = student.component.max_classes()
            if entry.sweep:  # checked at each point, with the point's values
                continue
            for dataset_name in entry.datasets:
                classes = len(spec.instance("datasets", dataset_name).component.selected_classes)
                if limit is not None and classes > limit:
                    raise ConfigError(
                        f"student '{name}' reads out at most {limit} classes but dataset"
                        f" '{dataset_name}' has {classes}; use fewer classes or more qubits",
                        file=spec.file,
                        key=f"matrix[{entry_index}]",
                    )
                problem = student.component.readout_problem(classes)
                if problem:
                    raise ConfigError(
                        f"student '{name}' on dataset '{dataset_name}': {problem}",
                        file=spec.file,
                        key=f"students.{name}",
                    )


def _check_teachers(spec: Spec, registry: Registry) -> None:
    """Resolve the members of composite teachers, refusing cycles."""

    def visit(name: str, path: tuple[str, ...]) -> None:
        for j, member in enumerate(spec.instance("teachers", name).component.member_names()):
            key = f"teachers.{name}.members[{j}]"
            if member == NO_TEACHER:
                raise ConfigError("'none' cannot be a member", file=spec.file, key=key)
            if member in (*path, name):
                raise ConfigError(f"'{member}' would contain itself", file=spec.file, key=key)
            _reference(spec, registry, "teachers", member, key)
            visit(member, (*path, name))

    for name in list(spec.instances["teachers"]):
        visit(name, ())


def _sweep_points(sweep: Any, zipped: Any, file: str, where: str) -> list[dict[str, Any]]:
    """The points of `[[matrix]] sweep = {KEY = [values]}`: the values crossed (or zipped);
    [] without a sweep."""
    if not isinstance(zipped, bool):
        raise ConfigError("expected true or false", file=file, key=f"{where}.zip")
    if sweep is None:
        if zipped:
            raise ConfigError("zips the values of a sweep, and there is none", file=file,
                              key=f"{where}.zip")  # fmt: skip
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
            raise ConfigError("expected a non-empty list of values", file=file,
                              key=f"{where}.sweep.{key}")  # fmt: skip
    keys, lists = list(sweep), list(sweep.values())
    if zipped:
        lengths = {k: len(v) for k, v in sweep.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(
                f"zip = true needs lists of one length; got {lengths}", file=file,
                key=f"{where}.sweep",
            )  # fmt: skip
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


def _parse_point(
    raw: dict[str, Any], values: dict[str, Any], index: int, file: str, registry: Registry
) -> Spec:
    """The config at one sweep point of [[matrix]] entry `index`: the document with the
    point's values set, validated as if they were written there."""
    document = raw
    for key, value in values.items():
        document = set_key(document, key, value)
    document = dict(document)
    # The entry alone: the point's values are not those of the other entries' cells.
    entry = raw["matrix"][index]
    document["matrix"] = [{k: v for k, v in entry.items() if k not in ("sweep", "zip")}]
    try:
        return _parse_document(document, file, registry)
    except ConfigError as exc:
        point = ", ".join(f"{k} = {v!r}" for k, v in values.items())
        key = exc.key
        if key is not None and key.startswith("matrix[0]"):
            key = f"matrix[{index}]" + key.removeprefix("matrix[0]")
        raise ConfigError(
            f"{exc.message} (at the sweep point {point} of matrix[{index}])", file=file, key=key
        ) from None

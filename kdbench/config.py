"""TOML config -> a validated, typed `Spec`. Every error names the file and the key path."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from kdbench.api import KINDS, MAX_SEED, Component
from kdbench.errors import ConfigError, OptionError, PluginError, did_you_mean, one_of
from kdbench.layering import apply_override, apply_profile
from kdbench.names import experiment_name_problem, instance_name_problem
from kdbench.options import build, option, outside_limits, resolved
from kdbench.plugins import Registry

if TYPE_CHECKING:
    from kdbench.report.reference import ReportConfig

NO_TEACHER = "none"
COMPONENT_KINDS = tuple(KINDS)
MATRIX_KEYS = ("datasets", "teachers", "students", "backends", "seeds", "eval_backend")
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


@dataclass(kw_only=True)
class TrainConfig:
    """[train]: how every student is trained (paper §4.6)."""

    epochs: int = option(10, help="training epochs", minimum=1)
    batch_size: int = option(32, help="mini-batch size", minimum=1)
    lr: float = option(1e-3, help="Adam learning rate", minimum=0, exclusive_minimum=True)


@dataclass(kw_only=True)
class DistillConfig:
    """[distill]: the loss CE(s, y)·ce_weight + KL(σ(t/τ) ‖ σ(s/τ))·kd_weight (paper Eq. 6)."""

    temperature: float = option(
        3.0, help="τ of the softened distributions", minimum=0, exclusive_minimum=True
    )
    kd_weight: float = option(0.9, help="λ, weight of the KL term", minimum=0)
    ce_weight: float = option(1.0, help="weight of the cross-entropy term", minimum=0)
    t2_scaling: bool = option(False, help="multiply the KL term by τ² (Hinton); not in the paper")


@dataclass(frozen=True)
class Instance:
    """A named, configured component: a table such as [students.q3], or a bare plugin name."""

    kind: str
    name: str
    plugin: str
    component: Any

    def resolved(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **resolved(self.component)}


@dataclass(frozen=True)
class MatrixEntry:
    datasets: list[str]
    teachers: list[str]
    students: list[str]
    backends: list[str]
    seeds: list[int]
    eval_backend: str | None = None  # test on this backend instead of the training one


@dataclass
class Spec:
    """A whole validated config."""

    file: str
    experiment: ExperimentConfig
    train: TrainConfig
    distill: DistillConfig
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
    """Validate an already parsed TOML document (profiles already applied)."""
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
        distill=build(DistillConfig, _table(raw, "distill", file), file=file, key="distill"),
    )
    if not spec.experiment.seeds:
        raise ConfigError("needs at least one seed", file=file, key="experiment.seeds")
    problem = experiment_name_problem(spec.experiment.name)
    if problem:
        raise ConfigError(problem, file=file, key="experiment.name")
    for kind in COMPONENT_KINDS:
        spec.instances[kind] = {}
        for name, table in _table(raw, kind, file).items():
            if not isinstance(table, dict):
                raise ConfigError("expected a table of options", file=file, key=f"{kind}.{name}")
            _define(spec, registry, kind, name, table)
    _parse_matrix(spec, raw.get("matrix"), registry)
    spec.report = parse_report(raw.get("report", {}), file)
    return spec


def _table(raw: dict[str, Any], key: str, file: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError("expected a table", file=file, key=key)
    return value


def _define(
    spec: Spec, registry: Registry, kind: str, name: str, table: dict[str, Any]
) -> Instance:
    problem = instance_name_problem(name)
    if problem:
        raise ConfigError(problem, file=spec.file, key=kind)
    key = f"{kind}.{name}"
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
        spec.matrix.append(MatrixEntry(seeds=list(seeds), eval_backend=eval_backend, **lists))
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
            for dataset_name in entry.datasets:
                classes = len(spec.instance("datasets", dataset_name).component.selected_classes)
                if limit is not None and classes > limit:
                    raise ConfigError(
                        f"student '{name}' reads out at most {limit} classes but dataset"
                        f" '{dataset_name}' has {classes}; use fewer classes or more qubits",
                        file=spec.file,
                        key=f"matrix[{entry_index}]",
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

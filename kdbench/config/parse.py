"""A parsed TOML document -> a validated `Spec`: sections, instances, the matrix and its
sweep points, each error naming the file and the key path."""

from __future__ import annotations

from typing import Any

from kdbench.api import MAX_SEED, Component
from kdbench.config.report import parse_report
from kdbench.config.spec import (
    COMPONENT_KINDS,
    MATRIX_KEYS,
    SEED_LIMITS,
    ExperimentConfig,
    Instance,
    MatrixEntry,
    Spec,
    SweepPoint,
    TrainConfig,
)
from kdbench.config.sweeps import sweep_points
from kdbench.constants import BEST_TEST, DEFAULT_DISTILLER, NO_TEACHER
from kdbench.errors import ConfigError, PluginError, did_you_mean, one_of
from kdbench.layering import set_key
from kdbench.names import experiment_name_problem, instance_name_problem
from kdbench.options import build, build_component, outside_limits
from kdbench.plugins import Registry


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
    if spec.experiment.lease_s < 2 * spec.experiment.heartbeat_s:
        raise ConfigError(
            f"{spec.experiment.lease_s:g} s is shorter than two heartbeats"
            f" (heartbeat_s = {spec.experiment.heartbeat_s:g}): a live holder would lose its"
            " cells; make it at least twice heartbeat_s",
            file=file,
            key="experiment.lease_s",
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
    """[distill] is the table of the 'paper' distiller, the default of every [[matrix]]
    entry: a config that names no distiller means the paper's loss (Eq. 6)."""
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
    _define(
        spec,
        registry,
        "distillers",
        DEFAULT_DISTILLER,
        {"plugin": DEFAULT_DISTILLER, **table},
        key="distill",
    )


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
    component: Component = build_component(cls, options, file=spec.file, key=key)
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
        problem = outside_limits(SEED_LIMITS, seeds)  # the bounds of experiment.seeds
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
        sweep = sweep_points(entry.get("sweep"), entry.get("zip", False), spec.file, where)
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

"""Spec -> cells: the cross product of each [[matrix]] entry, each cell with a stable id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import product
from typing import Any

from kdbench.config import Instance, MatrixEntry, Spec
from kdbench.constants import DEFAULT_DISTILLER, NO_DISTILLER, NO_TEACHER
from kdbench.errors import ConfigError
from kdbench.options import resolved

# Bump when a change to kdbench makes old results incomparable (cell ids change with it).
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One training run: a student on a data set, alone or taught by a teacher through a
    distiller, for one seed, at one point of its entry's sweep."""

    dataset: Instance
    teacher: Instance | None
    student: Instance
    encoder: Instance | None
    backend: Instance
    seed: int
    spec: Spec
    eval_backend: Instance | None = None
    distiller: Instance | None = None  # None: the cross-entropy alone
    sweep: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The values of its entry's sweep point that this cell uses, by dotted key."""
    also_test_on: tuple[Instance, ...] = ()
    """Backends the trained student is tested on too, after its own test (a noise ladder)."""

    @property
    def tested_on(self) -> list[tuple[Instance, bool]]:
        """(backend, whether it trains) for every backend the cell's student runs on."""
        tests = [self.eval_backend] if self.eval_backend is not None else []
        return [(self.backend, True), *((b, False) for b in (*tests, *self.also_test_on))]

    @property
    def teacher_name(self) -> str:
        return self.teacher.name if self.teacher else NO_TEACHER

    @property
    def distiller_name(self) -> str:
        return self.distiller.name if self.distiller else NO_DISTILLER

    @property
    def distils_features(self) -> bool:
        """Whether its distiller learns from features (the teacher's and the student's)."""
        return self.distiller is not None and self.distiller.component.uses_features

    @property
    def backend_label(self) -> str:
        """The backend, and the one tested on when it differs: "statevector→noisy-aer"."""
        if self.eval_backend is None:
            return self.backend.name
        return f"{self.backend.name}→{self.eval_backend.name}"

    @property
    def group(self) -> tuple[str, str, str, str, str]:
        """The cell without its seed and sweep point: an arm of the comparison, over whose
        seeds results are averaged (at the sweep point selected on validation)."""
        return (
            self.dataset.name,
            self.teacher_name,
            self.student.name,
            self.backend_label,
            self.distiller_name,
        )

    @property
    def label(self) -> str:
        names = self.group if self.distiller else self.group[:-1]
        point = [point_text(self.sweep)] if self.sweep else []
        return " · ".join((*names, *point, f"seed {self.seed}"))

    def uses(self, key: str) -> bool:
        """Whether the dotted config `key` (a sweep key) is part of this cell's config."""
        section, _, rest = key.partition(".")
        if section == "train":
            return True
        if section == "distill":
            return self.distiller_name == DEFAULT_DISTILLER
        return rest.partition(".")[0] in self.instance_names(section)

    def instance_names(self, kind: str) -> set[str]:
        """The names of the `kind` instances this cell uses (a teacher's members included)."""
        if kind == "teachers":
            return set(_teacher_names(self.spec, self.teacher)) if self.teacher else set()
        used = {
            "datasets": [self.dataset],
            "students": [self.student],
            "encoders": [self.encoder],
            "backends": [self.backend, self.eval_backend, *self.also_test_on],
            "distillers": [self.distiller],
        }
        return {instance.name for instance in used.get(kind, []) if instance is not None}

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration: everything that determines the result."""
        config = {
            "protocol": PROTOCOL_VERSION,
            "dataset": self.dataset.resolved(),
            "teacher": teacher_config(self.spec, self.teacher) if self.teacher else None,
            "student": self.student.resolved(),
            "encoder": self.encoder.resolved() if self.encoder else None,
            "backend": self.backend.resolved(),
            "eval_backend": self.eval_backend.resolved() if self.eval_backend else None,
            "train": resolved(self.spec.train),
            "distill": distiller_config(self.distiller) if self.distiller else None,
            "seed": self.seed,
        }
        if self.also_test_on:  # absent otherwise: the cells of older configs keep their ids
            config["also_test_on"] = [b.resolved() for b in self.also_test_on]
        return config

    @cached_property  # hashed once: ids key every lookup of a run
    def id(self) -> str:
        """Hash of the resolved config: stable across runs, renames and key order."""
        return digest(self.config())


def point_text(point: Mapping[str, Any], empty: str = "–") -> str:
    """A sweep point for people: 'kd_weight=0.5, temperature=2' (each key by its last part,
    unless two keys share it)."""
    if not point:
        return empty
    last = [key.rsplit(".", 1)[-1] for key in point]
    names = [n if last.count(n) == 1 else key for n, key in zip(last, point, strict=True)]
    return ", ".join(f"{n}={v}" for n, v in zip(names, point.values(), strict=True))


def teacher_config(spec: Spec, teacher: Instance) -> dict[str, Any]:
    """A teacher's resolved options, with each member of a composite teacher resolved in place."""
    config = teacher.resolved()
    names = teacher.component.member_names()
    if names:
        config["members"] = [teacher_config(spec, spec.instance("teachers", n)) for n in names]
    return config


def distiller_config(distiller: Instance) -> dict[str, Any]:
    """A distiller's resolved options; the paper's without its plugin name: [distill]'s own
    record, so that a config's cells keep their ids whether it names the paper's loss or
    leaves it to the default."""
    if distiller.plugin == DEFAULT_DISTILLER:
        return resolved(distiller.component)
    return distiller.resolved()


def _teacher_names(spec: Spec, teacher: Instance) -> Iterator[str]:
    yield teacher.name
    for name in teacher.component.member_names():
        yield from _teacher_names(spec, spec.instance("teachers", name))


def digest(value: Any) -> str:
    """A short, stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the matrix in config order, without duplicates.

    Each entry crosses its data sets, teachers, students, backends, seeds, distillers (for
    each teacher but "none") and sweep points. A distiller that needs no teacher makes one
    cell per student, whatever the teachers; a sweep value a cell does not use leaves it
    one cell.
    """
    cells: dict[str, Cell] = {}
    # Cells keep their config's Spec (workers receive it): the points' own Specs stay here.
    bare = replace(spec, matrix=[replace(entry, points=[]) for entry in spec.matrix])
    for index, entry in enumerate(spec.matrix):
        used: set[str] = set()
        points = [(p.values, p.spec) for p in entry.points] or [({}, bare)]
        for values, point_spec in points:
            for cell in _entry_cells(entry, point_spec):
                cell_sweep = {k: v for k, v in values.items() if cell.uses(k)}
                used.update(cell_sweep)
                cell = replace(cell, sweep=cell_sweep)
                cells.setdefault(cell.id, cell)
        unused = [key for key in entry.sweep[0] if key not in used] if entry.sweep else []
        if unused:
            raise ConfigError(
                f"no cell of this entry uses the swept {', '.join(unused)}",
                file=spec.file,
                key=f"matrix[{index}].sweep",
            )
    return list(cells.values())


def _entry_cells(entry: MatrixEntry, spec: Spec) -> Iterator[Cell]:
    def arms(teacher: str) -> Iterator[tuple[Instance | None, Instance | None]]:
        if teacher == NO_TEACHER:
            yield None, None
        for name in entry.distillers:
            distiller = spec.instance("distillers", name)
            if not distiller.component.uses_teacher:
                yield None, distiller  # the same cell for every teacher: kept once
            elif teacher != NO_TEACHER:
                yield spec.instance("teachers", teacher), distiller

    combos = product(entry.datasets, entry.teachers, entry.students, entry.backends, entry.seeds)
    for dataset, teacher_name, student, backend, seed in combos:
        student_instance = spec.instance("students", student)
        encoder = student_instance.component.encoder
        for teacher, distiller in arms(teacher_name):
            yield Cell(
                dataset=spec.instance("datasets", dataset),
                teacher=teacher,
                student=student_instance,
                encoder=None if encoder is None else spec.instance("encoders", encoder),
                backend=spec.instance("backends", backend),
                seed=seed,
                spec=spec,
                eval_backend=None
                if entry.eval_backend is None
                else spec.instance("backends", entry.eval_backend),
                distiller=distiller,
                also_test_on=tuple(spec.instance("backends", b) for b in entry.also_test_on),
            )

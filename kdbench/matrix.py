"""Spec -> cells: the cross product of each [[matrix]] entry, each cell with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import product
from typing import Any

from kdbench.config import NO_TEACHER, Instance, Spec
from kdbench.options import resolved

# Bump when a change to kdbench makes old results incomparable (cell ids change with it).
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One training run: a student on a data set, with or without a teacher, for one seed."""

    dataset: Instance
    teacher: Instance | None
    student: Instance
    encoder: Instance | None
    backend: Instance
    seed: int
    spec: Spec

    @property
    def teacher_name(self) -> str:
        return self.teacher.name if self.teacher else NO_TEACHER

    @property
    def group(self) -> tuple[str, str, str, str]:
        """The cell without its seed: what results are averaged over."""
        return (self.dataset.name, self.teacher_name, self.student.name, self.backend.name)

    @property
    def label(self) -> str:
        return " · ".join((*self.group, f"seed {self.seed}"))

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration: everything that determines the result."""
        return {
            "protocol": PROTOCOL_VERSION,
            "dataset": self.dataset.resolved(),
            "teacher": self.teacher.resolved() if self.teacher else None,
            "student": self.student.resolved(),
            "encoder": self.encoder.resolved() if self.encoder else None,
            "backend": self.backend.resolved(),
            "train": resolved(self.spec.train),
            "distill": resolved(self.spec.distill) if self.teacher else None,
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        """Hash of the resolved config: stable across runs, renames and key order."""
        return digest(self.config())


def digest(value: Any) -> str:
    """A short, stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the matrix in config order, without duplicates."""
    cells: dict[str, Cell] = {}
    for entry in spec.matrix:
        combos = product(
            entry.datasets, entry.teachers, entry.students, entry.backends, entry.seeds
        )
        for dataset, teacher, student, backend, seed in combos:
            student_instance = spec.instance("students", student)
            encoder = student_instance.component.encoder
            cell = Cell(
                dataset=spec.instance("datasets", dataset),
                teacher=None if teacher == NO_TEACHER else spec.instance("teachers", teacher),
                student=student_instance,
                encoder=None if encoder is None else spec.instance("encoders", encoder),
                backend=spec.instance("backends", backend),
                seed=seed,
                spec=spec,
            )
            cells.setdefault(cell.id, cell)
    return list(cells.values())

"""Spec -> cells: the cross product of each [[matrix]] entry, each cell with a stable id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
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
    eval_backend: Instance | None = None

    @property
    def teacher_name(self) -> str:
        return self.teacher.name if self.teacher else NO_TEACHER

    @property
    def backend_label(self) -> str:
        """The backend, and the one tested on when it differs: "statevector→noisy-aer"."""
        if self.eval_backend is None:
            return self.backend.name
        return f"{self.backend.name}→{self.eval_backend.name}"

    @property
    def group(self) -> tuple[str, str, str, str]:
        """The cell without its seed: what results are averaged over."""
        return (self.dataset.name, self.teacher_name, self.student.name, self.backend_label)

    @property
    def label(self) -> str:
        return " · ".join((*self.group, f"seed {self.seed}"))

    def config(self) -> dict[str, Any]:
        """The fully resolved configuration: everything that determines the result."""
        return {
            "protocol": PROTOCOL_VERSION,
            "dataset": self.dataset.resolved(),
            "teacher": teacher_config(self.spec, self.teacher) if self.teacher else None,
            "student": self.student.resolved(),
            "encoder": self.encoder.resolved() if self.encoder else None,
            "backend": self.backend.resolved(),
            "eval_backend": self.eval_backend.resolved() if self.eval_backend else None,
            "train": resolved(self.spec.train),
            "distill": resolved(self.spec.distill) if self.teacher else None,
            "seed": self.seed,
        }

    @cached_property  # hashed once: ids key every lookup of a run
    def id(self) -> str:
        """Hash of the resolved config: stable across runs, renames and key order."""
        return digest(self.config())


def teacher_config(spec: Spec, teacher: Instance) -> dict[str, Any]:
    """A teacher's resolved options, with each member of a composite teacher resolved in place."""
    config = teacher.resolved()
    names = teacher.component.member_names()
    if names:
        config["members"] = [teacher_config(spec, spec.instance("teachers", n)) for n in names]
    return config


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
                eval_backend=None
                if entry.eval_backend is None
                else spec.instance("backends", entry.eval_backend),
            )
            cells.setdefault(cell.id, cell)
    return list(cells.values())

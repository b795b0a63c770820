"""The classes a plugin subclasses: one per kind of component.

Each component is a keyword-only dataclass; its fields are the options a user sets in TOML
(declare them with `kdbench.option`). Register the class, not an instance, from the matching
hook in `kdbench.hookspecs`; the harness builds one instance per config table.

Laid out one module per job: `component` (the base of all, the seed bound), `dataset`,
`teacher`, `circuits` (the compiled-circuit protocol, backends, encoders), `student`,
`distiller`.
"""

from __future__ import annotations

from kdbench.api.circuits import Backend, CircuitFunction, CircuitPlan, Encoder
from kdbench.api.component import MAX_SEED, Component
from kdbench.api.dataset import Dataset, as_image
from kdbench.api.distiller import DistillBatch, Distiller, Loss
from kdbench.api.student import Student, StudentContext
from kdbench.api.teacher import Teacher

__all__ = [
    "KINDS",
    "MAX_SEED",
    "Backend",
    "CircuitFunction",
    "CircuitPlan",
    "Component",
    "Dataset",
    "DistillBatch",
    "Distiller",
    "Encoder",
    "Loss",
    "Student",
    "StudentContext",
    "Teacher",
    "as_image",
]

KINDS: dict[str, type[Component]] = {
    "datasets": Dataset,
    "teachers": Teacher,
    "students": Student,
    "encoders": Encoder,
    "backends": Backend,
    "distillers": Distiller,
}

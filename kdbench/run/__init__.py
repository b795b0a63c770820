"""Running a matrix: the invocation (`invocation`), where cells run (`executors`), one cell's
lifecycle (`cell`), its training (`training`) and files (`artifacts`), and the checks before
anything is logged (`preflight`)."""

from kdbench.run.events import CellOutcome, Events
from kdbench.run.executors import connect_ray
from kdbench.run.invocation import run_matrix, teachers_first
from kdbench.run.preflight import preflight

__all__ = [
    "CellOutcome",
    "Events",
    "connect_ray",
    "preflight",
    "run_matrix",
    "teachers_first",
]

"""TOML config -> a validated, typed `Spec`. Every error names the file and the key path.

`files` reads a config file (refusing what is not one), `parse` validates the document into
the data of `spec`, `sweeps` expands a [[matrix]] entry's sweep, `report` reads [report].
"""

from kdbench.config.files import MAX_CONFIG_BYTES, load_spec
from kdbench.config.parse import parse_spec
from kdbench.config.report import ReportConfig, parse_report
from kdbench.config.spec import (
    COMPONENT_KINDS,
    MATRIX_KEYS,
    MAX_SWEEP_POINTS,
    SWEPT_SECTIONS,
    ExperimentConfig,
    Instance,
    MatrixEntry,
    Spec,
    SweepPoint,
    TrainConfig,
)
from kdbench.config.sweeps import sweep_key_problem
from kdbench.constants import BEST_TEST, DEFAULT_DISTILLER, NO_TEACHER

__all__ = [
    "BEST_TEST",
    "COMPONENT_KINDS",
    "DEFAULT_DISTILLER",
    "MATRIX_KEYS",
    "MAX_CONFIG_BYTES",
    "MAX_SWEEP_POINTS",
    "NO_TEACHER",
    "SWEPT_SECTIONS",
    "ExperimentConfig",
    "Instance",
    "MatrixEntry",
    "ReportConfig",
    "Spec",
    "SweepPoint",
    "TrainConfig",
    "load_spec",
    "parse_report",
    "parse_spec",
    "sweep_key_problem",
]

"""kdbench: a plugin-based benchmarking harness for classical-to-quantum knowledge distillation."""

from importlib.metadata import PackageNotFoundError, version

from kdbench.api import (
    Backend,
    CircuitFunction,
    Component,
    Dataset,
    Encoder,
    Student,
    StudentContext,
    Teacher,
)
from kdbench.errors import OptionError
from kdbench.hookspecs import hookimpl
from kdbench.options import option

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Backend",
    "CircuitFunction",
    "Component",
    "Dataset",
    "Encoder",
    "OptionError",
    "Student",
    "StudentContext",
    "Teacher",
    "__version__",
    "hookimpl",
    "option",
]

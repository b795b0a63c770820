"""A validated config's data: `Spec` and its parts, and the names they use."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from kdbench.api import KINDS, MAX_SEED
from kdbench.constants import DEFAULT_DISTILLER
from kdbench.options import option, resolved

if TYPE_CHECKING:
    from kdbench.config.report import ReportConfig

COMPONENT_KINDS = tuple(KINDS)
MATRIX_KEYS = (
    "datasets",
    "teachers",
    "students",
    "backends",
    "distillers",
    "seeds",
    "eval_backend",
    "also_test_on",
    "sweep",
    "zip",
)
SWEPT_SECTIONS = ("train", "distill", *COMPONENT_KINDS)
MAX_SWEEP_POINTS = 1000


@dataclass(kw_only=True)
class ExperimentConfig:
    """[experiment]: where runs are logged and with which seeds."""

    name: str = option("kdbench", help="MLflow experiment name")
    seeds: list[int] = option([0], help="seeds of every cell", minimum=0, maximum=MAX_SEED)
    tracking_uri: str | None = option(
        None, help="MLflow tracking URI (default sqlite:///mlflow.db)"
    )
    data_dir: str | None = option(None, help="data directory (default $KDBENCH_DATA or the cache)")
    heartbeat_s: float = option(
        10.0,
        help="how often a process renews the lease of the cells it runs (seconds)",
        minimum=0,
        exclusive_minimum=True,
    )
    lease_s: float = option(
        60.0,
        help="a cell whose holder on another host has not renewed its lease for this long"
        " (seconds, at least twice heartbeat_s) is taken as abandoned and run again",
        minimum=0,
        exclusive_minimum=True,
    )


SEED_LIMITS = next(f for f in fields(ExperimentConfig) if f.name == "seeds").metadata


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
    stacked: Literal["auto", "on", "off"] = option(
        "auto",
        help="train the seeds of an arm together, as one batched model (torch.func): on"
        " wherever the student and backend allow it, auto where that is also faster (linear"
        " and pooling fronts, convolutional ones at small batches), off one at a time; each"
        " cell stays its own run, with results equal to float tolerance (not part of ids)",
        recorded=False,
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

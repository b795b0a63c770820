"""What a cell records in MLflow and how it is read back: one schema for the runner and the report.

A cell's child run carries the tags of `cell_tags` (what it is), its flattened resolved
config as params, per-epoch metrics (`EPOCH_METRICS`) and final metrics (`test_accuracy`,
`teacher_test_accuracy`, the circuit counters...). `Result.from_run` reads one back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kdbench.constants import DEFAULT_DISTILLER, NO_DISTILLER, NO_TEACHER

if TYPE_CHECKING:
    from kdbench.api import CircuitFunction
    from kdbench.matrix import Cell

DATASET_TAG = "kdbench.dataset"
TEACHER_TAG = "kdbench.teacher"
STUDENT_TAG = "kdbench.student"
BACKEND_TAG = "kdbench.backend"
SEED_TAG = "kdbench.seed"
DISTILLER_TAG = "kdbench.distiller"
SWEEP_TAG = "kdbench.sweep"  # JSON: the sweep values the cell uses, by dotted key
CELL_ID_TAG = "kdbench.cell_id"  # the cell's id, set when the tracker claims it
ERROR_TAG = "kdbench.error"
TEACHER_SOURCE_TAG = "kdbench.teacher_source"
STACKED_TAG = "kdbench.stacked"  # how many cells trained as one stacked model with the cell
ALSO_TESTED_TAG = "kdbench.also_tested_on"  # JSON: the names of the extra test backends, in order

# Logged once per epoch (step = epoch), beside the distiller's parts (train_kd, val_kd...);
# the report draws its loss curves from these.
EPOCH_METRICS = (
    "train_loss",
    "train_ce",
    "train_accuracy",
    "val_loss",
    "val_ce",
    "val_accuracy",
    "seconds",
)

# What the harness reads off every compiled circuit: summed (executions, shots) or the
# largest (depth, width) over the circuits a student compiled.
SUMMED_COUNTERS = ("executions", "shots")
LARGEST_COUNTERS = ("depth", "width")


def cell_tags(cell: Cell) -> dict[str, str]:
    """The tags that say what a cell is (its id and role are the tracker's)."""
    tags = {
        DATASET_TAG: cell.dataset.name,
        TEACHER_TAG: cell.teacher_name,
        STUDENT_TAG: cell.student.name,
        BACKEND_TAG: cell.backend_label,
        DISTILLER_TAG: cell.distiller_name,
        SEED_TAG: str(cell.seed),
    }
    if cell.sweep:
        tags[SWEEP_TAG] = json.dumps(dict(cell.sweep), sort_keys=True)
    return tags


def also_metric(what: str, backend: str) -> str:
    """The metric of the test on an extra backend: 'test_accuracy/noisy-aer'."""
    return f"test_{what}/{backend}"


def circuit_metrics(circuits: Iterable[CircuitFunction], prefix: str = "") -> dict[str, float]:
    """`circuit_executions`, `_shots`, `_depth`, `_width` of the circuits a student compiled
    ({} for a student without circuits)."""
    circuits = list(circuits)
    if not circuits:
        return {}
    summed = {f"{prefix}circuit_{n}": sum(getattr(c, n) for c in circuits) for n in SUMMED_COUNTERS}
    largest = {
        f"{prefix}circuit_{n}": max(getattr(c, n) for c in circuits) for n in LARGEST_COUNTERS
    }
    return summed | largest


@dataclass(frozen=True)
class Result:
    """The outcome of one cell, however it was obtained (this run or read from MLflow).

    `params` is the cell's flattened resolved config, as logged to MLflow.
    """

    dataset: str
    teacher: str
    student: str
    backend: str
    distiller: str
    seed: int
    test_accuracy: float
    teacher_test_accuracy: float | None = None
    val_accuracy: float | None = None  # of the epoch selected on validation
    sweep: Mapping[str, Any] = field(default_factory=dict, compare=False)
    params: Mapping[str, str] = field(default_factory=dict, compare=False)
    run_id: str | None = field(default=None, compare=False)
    cell_id: str | None = field(default=None, compare=False)
    collapsed: bool | None = None  # validation accuracy fell back to chance (None: not logged)
    also: Mapping[str, float] = field(default_factory=dict, compare=False)
    """Test accuracy on each backend of the cell's `also_test_on`, in its order."""
    also_loss: Mapping[str, float] = field(default_factory=dict, compare=False)
    """Test cross-entropy on each of those backends."""

    @property
    def point(self) -> str:
        """The sweep point as a stable text: what tells a group's points apart."""
        return json.dumps(dict(self.sweep), sort_keys=True)

    @classmethod
    def from_run(cls, run: Any) -> Result:
        """The result a finished MLflow child run recorded."""
        tags, metrics = run.data.tags, run.data.metrics
        teacher = tags[TEACHER_TAG]
        # A run without a distiller tag recorded [distill] alone: the paper's loss.
        default = NO_DISTILLER if teacher == NO_TEACHER else DEFAULT_DISTILLER
        return cls(
            tags[DATASET_TAG],
            teacher,
            tags[STUDENT_TAG],
            tags[BACKEND_TAG],
            tags.get(DISTILLER_TAG, default),
            int(tags[SEED_TAG]),
            metrics["test_accuracy"],
            metrics.get("teacher_test_accuracy"),
            metrics.get("best_val_accuracy"),
            json.loads(tags.get(SWEEP_TAG, "{}")),
            dict(run.data.params),
            run.info.run_id,
            tags.get(CELL_ID_TAG),
            None if "collapsed" not in metrics else bool(metrics["collapsed"]),
            *(
                {
                    name: metrics[also_metric(what, name)]
                    for name in json.loads(tags.get(ALSO_TESTED_TAG, "[]"))
                    if also_metric(what, name) in metrics
                }
                for what in ("accuracy", "loss")
            ),
        )

    def as_in(self, cells: Mapping[str, Cell]) -> Result:
        """This result with the distiller and sweep point its cell has in `cells` (by id):
        a finished cell reused by another config keeps the tags of the config that ran it."""
        cell = cells.get(self.cell_id or "")
        if cell is None:
            return self
        return replace(self, distiller=cell.distiller_name, sweep=dict(cell.sweep))

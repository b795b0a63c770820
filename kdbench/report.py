"""Results tables: mean ± std over seeds, and each teacher's gain over the student alone."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from kdbench.config import NO_TEACHER


@dataclass(frozen=True)
class Result:
    """The outcome of one cell, however it was obtained (this run or read from MLflow)."""

    dataset: str
    teacher: str
    student: str
    backend: str
    seed: int
    test_accuracy: float
    teacher_test_accuracy: float | None = None

    @classmethod
    def from_run(cls, run: Any) -> Result:
        """The result a finished MLflow child run recorded."""
        tags, metrics = run.data.tags, run.data.metrics
        return cls(
            tags["kdbench.dataset"],
            tags["kdbench.teacher"],
            tags["kdbench.student"],
            tags["kdbench.backend"],
            int(tags["kdbench.seed"]),
            metrics["test_accuracy"],
            metrics.get("teacher_test_accuracy"),
        )


@dataclass(frozen=True)
class Row:
    dataset: str
    teacher: str
    student: str
    backend: str
    seeds: int
    mean: float
    std: float
    teacher_mean: float | None
    delta: float | None  # mean paired gain over the same student without a teacher
    delta_std: float | None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: Iterable[Result]) -> list[Row]:
    """One row per (dataset, teacher, student, backend), in first-seen order."""
    groups: dict[tuple[str, str, str, str], dict[int, Result]] = defaultdict(dict)
    for r in results:
        groups[(r.dataset, r.teacher, r.student, r.backend)][r.seed] = r
    rows = []
    for (dataset, teacher, student, backend), by_seed in groups.items():
        mean, std = _mean_std([r.test_accuracy for r in by_seed.values()])
        teacher_accuracies = [
            r.teacher_test_accuracy for r in by_seed.values() if r.teacher_test_accuracy is not None
        ]
        delta = delta_std = None
        baseline = groups.get((dataset, NO_TEACHER, student, backend))
        if teacher != NO_TEACHER and baseline:
            gains = [
                r.test_accuracy - baseline[s].test_accuracy
                for s, r in by_seed.items()
                if s in baseline
            ]
            if gains:
                delta, delta_std = _mean_std(gains)
        rows.append(
            Row(
                dataset,
                teacher,
                student,
                backend,
                len(by_seed),
                mean,
                std,
                statistics.fmean(teacher_accuracies) if teacher_accuracies else None,
                delta,
                delta_std,
            )
        )
    return rows


def _percent(mean: float | None, std: float | None = None, signed: bool = False) -> str:
    if mean is None:
        return "–"
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return f"{text} ± {100 * std:.1f}" if std is not None else text


def results_table(rows: Sequence[Row], title: str = "Test accuracy (%)") -> Table:
    """A rich table of the rows: student accuracy, teacher accuracy and the paired gain."""
    table = Table(title=title)
    for column in ("dataset", "teacher", "student", "backend", "seeds"):
        table.add_column(column)
    table.add_column("student acc", justify="right")
    table.add_column("teacher acc", justify="right")
    table.add_column("Δ vs no teacher", justify="right")
    for row in rows:
        table.add_row(
            row.dataset,
            row.teacher,
            row.student,
            row.backend,
            str(row.seeds),
            _percent(row.mean, row.std),
            _percent(row.teacher_mean),
            _percent(row.delta, row.delta_std, signed=True),
        )
    return table

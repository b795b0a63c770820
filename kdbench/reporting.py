"""`kdbench report`: the paper's tables and figures from the runs an experiment logged."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdbench import figures
from kdbench.report import Row, summarize
from kdbench.tables import (
    TableRow,
    dataset_label,
    paper_tables,
    student_label,
    teacher_label,
    to_csv,
    to_latex,
    to_markdown,
)
from kdbench.tracking import Tracker

History = Callable[[str, str], list[float]]


@dataclass
class Report:
    """Tables (one per data-set family) and figures, as files by name."""

    rows: list[Row]
    tables: dict[str, list[TableRow]]
    files: dict[str, bytes] = field(default_factory=dict)


def build_report(rows: Sequence[Row], history: History, experiment: str) -> Report:
    """Tables in every format and Figs. 6 and 7 per data-set family."""
    report = Report(list(rows), paper_tables(rows))
    for family, table in report.tables.items():
        title = f"{experiment}: {family}"
        stem = family.lower().replace(" ", "-")
        report.files[f"table-{stem}.md"] = to_markdown(table, title).encode()
        report.files[f"table-{stem}.tex"] = to_latex(table, title).encode()
        report.files[f"table-{stem}.csv"] = to_csv(table).encode()
        family_rows = [r for r in rows if dataset_label(r.params, r.dataset)[0] == family]
        panels = loss_panels(family_rows, history)
        if panels:
            report.files[f"fig6-loss-{stem}.png"] = figures.loss_bands(
                panels, f"{title}: distilled students' loss (mean ± std over seeds)"
            )
        report.files[f"fig7-accuracy-{stem}.png"] = figures.accuracy_bars(
            accuracy_groups(family_rows), f"{title}: test accuracy by teacher"
        )
    return report


def _student(row: Row) -> str:
    return f"{dataset_label(row.params, row.dataset)[1]}, {student_label(row.params, row.student)}"


def loss_panels(rows: Sequence[Row], history: History) -> list:
    """Per (data set, student) with a teacher: each teacher's train/val loss curves."""
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for row in rows:
        if row.teacher == "none":
            continue
        curves = [(history(r.run_id, "train_loss"), history(r.run_id, "val_loss"))
                  for r in row.results if r.run_id]  # fmt: skip
        epochs = min((min(len(t), len(v)) for t, v in curves), default=0)
        if epochs:
            train = np.array([t[:epochs] for t, _ in curves])
            val = np.array([v[:epochs] for _, v in curves])
            panels[_student(row)][teacher_label(row.params, row.teacher)] = (train, val)
    return list(panels.items())


def accuracy_groups(rows: Sequence[Row]) -> list:
    """Per (data set, student): mean and std test accuracy with each teacher (and none)."""
    groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for row in rows:
        teacher = "no teacher" if row.teacher == "none" else teacher_label(row.params, row.teacher)
        groups[_student(row)][teacher] = (row.mean, row.std)
    return list(groups.items())


def load_rows(tracker: Tracker) -> list[Row]:
    from kdbench.report import Result

    return summarize(Result.from_run(run) for run in tracker.cell_runs())


def write(report: Report, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in report.files.items():
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    return paths

"""The report's tables: rows by data-set family and category, in rich, Markdown, LaTeX, CSV.

One table per data-set family (MNIST, FashionMNIST, ...) with the categories Student, Teacher
and Distillation: our mean ± std over seeds, the paired gain with its 95 % interval and
p-value, and the reference's own numbers (the config's [report]) where it has the row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from kdbench.config import NO_TEACHER
from kdbench.report.labels import dataset_label, student_label, teacher_label
from kdbench.report.reference import Number, ReportConfig
from kdbench.report.stats import Gain, Row, mean_std

CATEGORIES = ("Student", "Teacher", "Distillation")
NONE = "–"  # an empty cell


@dataclass(frozen=True)
class TableRow:
    category: str
    architecture: str
    dataset: str
    cells: tuple[str, ...]  # accuracy, Δ, CI, p, reference accuracy, reference Δ


@dataclass(frozen=True)
class FamilyTable:
    """One data-set family's rows, Student, Teacher then Distillation, under `headers`."""

    headers: tuple[str, ...]
    rows: list[TableRow]


def headers(reference: str) -> tuple[str, ...]:
    return ("Category", "Architecture", "Dataset", "Accuracy (%)", "+Δ for Student", "95% CI",
            "p", f"{reference} (%)", f"{reference} +Δ")  # fmt: skip


def _reference(number: Number | None) -> tuple[str, str]:
    """The reference's (accuracy, Δ) cells, or dashes where it lacks the row."""
    if number is None:
        return NONE, NONE
    accuracy, gain = number
    return f"{accuracy:.2f}", NONE if gain is None else f"{gain:+.2f}"


def family_tables(
    rows: Sequence[Row], config: ReportConfig | None = None
) -> dict[str, FamilyTable]:
    """The rows in the paper's layout, one table per data-set family."""
    config = config or ReportConfig()
    labels = config.labels
    backends = {r.backend for r in rows}
    tables: dict[str, dict[str, list[tuple[tuple, TableRow]]]] = {}
    teachers: dict[tuple[str, str], list[Row]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(r.dataset for r in rows))}
    for row in rows:
        params = row.params
        family, dataset = dataset_label(params, row.dataset, labels)
        student = student_label(params, row.student, labels)
        if len(backends) > 1:
            student = f"{student} [{row.backend}]"
        bucket = tables.setdefault(family, {c: [] for c in CATEGORIES})
        reference = _reference(config.student_number(row.dataset, row.student, row.teacher))
        if row.teacher == NO_TEACHER:
            cells = (percent(row.mean, row.std), NONE, NONE, NONE, *reference)
            bucket["Student"].append(
                ((order[row.dataset], student), TableRow("Student", student, dataset, cells))
            )
            continue
        teacher = teacher_label(params, row.teacher, labels)
        if params.get("teacher.shuffled") != "True":
            teachers.setdefault((row.teacher, row.dataset), []).append(row)
        cells = (percent(row.mean, row.std), *gain_text(row.gain), *reference)
        key = (teacher, order[row.dataset], student)
        architecture = f"Teacher: {teacher}, Student: {student}"
        bucket["Distillation"].append((key, TableRow("Distillation", architecture, dataset,
                                                     cells)))  # fmt: skip
    for (name, dataset_name), group in teachers.items():
        accuracies = [r.teacher_test_accuracy for row in group for r in row.results
                      if r.teacher_test_accuracy is not None]  # fmt: skip
        if not accuracies:
            continue
        params = group[0].params
        family, dataset = dataset_label(params, dataset_name, labels)
        by_seed = {r.seed: r.teacher_test_accuracy for row in group for r in row.results}
        mean, std = mean_std([a for a in by_seed.values() if a is not None])
        label = f"Classical, {teacher_label(params, name, labels)}"
        cells = (percent(mean, std), NONE, NONE, NONE,
                 *_reference(config.teacher_number(dataset_name, name)))  # fmt: skip
        tables[family]["Teacher"].append(
            ((label, order[dataset_name]), TableRow("Teacher", label, dataset, cells))
        )
    heading = headers(config.reference)
    return {
        family: FamilyTable(
            heading,
            [
                row
                for category in CATEGORIES
                for _, row in sorted(buckets[category], key=lambda kv: kv[0])
            ],
        )
        for family, buckets in tables.items()
    }


def _records(table: FamilyTable) -> list[list[str]]:
    return [[r.category, r.architecture, r.dataset, *r.cells] for r in table.rows]


def to_rich(table: FamilyTable, title: str) -> Table:
    rich = Table(title=title)
    for i, header in enumerate(table.headers):
        rich.add_column(header, justify="right" if i >= 3 else "left")
    previous = None
    for record in _records(table):
        if previous is not None and record[0] != previous:
            rich.add_section()
        previous = record[0]
        rich.add_row(*record)
    return rich


def to_markdown(table: FamilyTable, title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(table.headers) + " |",
        "|" + "|".join("---:" if i >= 3 else "---" for i in range(len(table.headers))) + "|",
    ]
    lines += ["| " + " | ".join(record) + " |" for record in _records(table)]
    return "\n".join(lines) + "\n"


def to_latex(table: FamilyTable, title: str) -> str:
    def escape(text: str) -> str:
        for old, new in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                         ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"),
                         ("–", "--"), ("→", r"$\to$")):  # fmt: skip
            text = text.replace(old, new)
        return text

    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{escape(title)}}}",
             r"\begin{tabular}{lll" + "r" * (len(table.headers) - 3) + "}", r"\toprule",
             " & ".join(escape(h) for h in table.headers) + r" \\", r"\midrule"]  # fmt: skip
    previous = None
    for record in _records(table):
        if previous is not None and record[0] != previous:
            lines.append(r"\midrule")
        previous = record[0]
        lines.append(" & ".join(escape(cell) for cell in record) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: FamilyTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.headers)
    writer.writerows(_records(table))
    return buffer.getvalue()


def percent(mean: float | None, std: float | None = None, signed: bool = False) -> str:
    """'97.4 ± 0.3' (or '+1.2') from fractions; '–' for None."""
    if mean is None:
        return NONE
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return f"{text} ± {100 * std:.1f}" if std is not None else text


def gain_text(gain: Gain | None) -> tuple[str, str, str]:
    """(Δ, 95 % CI, p) cells for a table."""
    if gain is None:
        return NONE, NONE, NONE
    if gain.n < 2:
        return percent(gain.mean, signed=True), NONE, NONE
    interval = f"[{100 * gain.low:+.1f}, {100 * gain.high:+.1f}]"
    return percent(gain.mean, signed=True), interval, f"{gain.p_value:.3f}"


def results_table(rows: Sequence[Row], title: str = "Test accuracy (%)") -> Table:
    """A rich table of the rows: student accuracy, teacher accuracy and the paired gain."""
    table = Table(title=title)
    for column in ("dataset", "teacher", "student", "backend", "seeds"):
        table.add_column(column)
    for column in ("student acc", "teacher acc", "Δ vs no teacher", "95% CI", "p"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.dataset, row.teacher, row.student, row.backend, str(row.seeds),
                      percent(row.mean, row.std), percent(row.teacher_mean),
                      *gain_text(row.gain))  # fmt: skip
    return table

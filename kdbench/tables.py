"""The paper's table layout (Category, Architecture, Dataset, Accuracy, +Δ) from our rows.

Rows are grouped by data-set family (MNIST, FashionMNIST, ...), one table each as in the
paper, with our mean ± std over seeds, the paired gain with its 95 % interval and p-value,
and the paper's own number where the row is one the paper reports.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.table import Table

from kdbench.paper import PAPER, PAPER_STUDENTS
from kdbench.report import Row, gain_text, mean_std, percent

HEADERS = ("Category", "Architecture", "Dataset", "Accuracy (%)", "+Δ for Student",
           "95% CI", "p", "Paper (%)", "Paper +Δ")  # fmt: skip
FAMILIES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
TEACHERS = {"lenet": "LeNet", "alexnet": "AlexNet", "ensemble": "Ensemble",
            "resnet18": "ResNet-18"}  # fmt: skip
CATEGORIES = ("Student", "Teacher", "Distillation")


def dataset_label(params: Mapping[str, str], fallback: str) -> tuple[str, str]:
    """(family, label): ('MNIST', 'MNIST 0-5') for MNIST's classes 0..5, else the instance."""
    family = FAMILIES.get(params.get("dataset.plugin", ""), params.get("dataset.plugin", ""))
    classes = json.loads(params.get("dataset.classes", "null") or "null")
    if family in FAMILIES.values() and classes == list(range(len(classes or []))) and classes:
        return family, f"{family} 0-{len(classes) - 1}"
    return family or fallback, fallback


def student_label(params: Mapping[str, str], name: str) -> str:
    plugin, qubits = params.get("student.plugin", name), params.get("student.qubits", "?")
    if plugin.startswith("released-"):
        return f"Quantum, {qubits} qubit"
    if plugin.startswith("paper-"):
        return f"Quantum, {qubits} qubit (paper text)"
    if plugin == "classical":
        return f"Classical control, {qubits}-qubit outline"
    return f"{name} ({plugin}, {qubits} qubit)"


def teacher_label(params: Mapping[str, str], name: str) -> str:
    label = TEACHERS.get(params.get("teacher.plugin", ""), name)
    return f"{label} (outputs shuffled)" if params.get("teacher.shuffled") == "True" else label


@dataclass(frozen=True)
class TableRow:
    category: str
    architecture: str
    dataset: str
    cells: tuple[str, ...]  # accuracy, Δ, CI, p, paper accuracy, paper Δ


def _paper(dataset: str, params: Mapping[str, str], teacher: str | None,
           qubits: int | None) -> tuple[str, str]:  # fmt: skip
    """The paper's (accuracy, Δ) cells for a row it reports, else dashes."""
    student = params.get("student.plugin")
    if qubits is not None and student not in PAPER_STUDENTS:
        return "–", "–"
    if params.get("teacher.shuffled") == "True":
        return "–", "–"
    found = PAPER.get((dataset, teacher, qubits))
    if found is None:
        return "–", "–"
    accuracy, delta = found
    return f"{accuracy:.2f}", "–" if delta is None else f"{delta:+.2f}"


def paper_tables(rows: Sequence[Row]) -> dict[str, list[TableRow]]:
    """Our rows in the paper's layout, one table per data-set family."""
    backends = {r.backend for r in rows}
    tables: dict[str, dict[str, list[tuple[tuple, TableRow]]]] = {}
    teachers: dict[tuple[str, str], list[Row]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(r.dataset for r in rows))}
    for row in rows:
        params = row.params
        family, dataset = dataset_label(params, row.dataset)
        student = student_label(params, row.student)
        if len(backends) > 1:
            student = f"{student} [{row.backend}]"
        qubits = int(params["student.qubits"]) if "student.qubits" in params else None
        bucket = tables.setdefault(family, {c: [] for c in CATEGORIES})
        if row.teacher == "none":
            cells = (percent(row.mean, row.std), "–", "–", "–",
                     *_paper(dataset, params, None, qubits))  # fmt: skip
            bucket["Student"].append(
                ((order[row.dataset], student), TableRow("Student", student, dataset, cells))
            )
            continue
        teacher = teacher_label(params, row.teacher)
        if params.get("teacher.shuffled") != "True":
            teachers.setdefault((row.teacher, row.dataset), []).append(row)
        cells = (percent(row.mean, row.std), *gain_text(row.gain),
                 *_paper(dataset, params, params.get("teacher.plugin"), qubits))  # fmt: skip
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
        family, dataset = dataset_label(params, dataset_name)
        by_seed = {r.seed: r.teacher_test_accuracy for row in group for r in row.results}
        mean, std = mean_std([a for a in by_seed.values() if a is not None])
        label = f"Classical, {teacher_label(params, name)}"
        cells = (percent(mean, std), "–", "–", "–",
                 *_paper(dataset, params, params.get("teacher.plugin"), None))  # fmt: skip
        tables[family]["Teacher"].append(
            ((label, order[dataset_name]), TableRow("Teacher", label, dataset, cells))
        )
    return {
        family: [
            row
            for category in CATEGORIES
            for _, row in sorted(buckets[category], key=lambda kv: kv[0])
        ]
        for family, buckets in tables.items()
    }


def _records(table: Sequence[TableRow]) -> list[list[str]]:
    return [[r.category, r.architecture, r.dataset, *r.cells] for r in table]


def to_rich(table: Sequence[TableRow], title: str) -> Table:
    rich = Table(title=title)
    for i, header in enumerate(HEADERS):
        rich.add_column(header, justify="right" if i >= 3 else "left")
    previous = None
    for record in _records(table):
        if previous is not None and record[0] != previous:
            rich.add_section()
        previous = record[0]
        rich.add_row(*record)
    return rich


def to_markdown(table: Sequence[TableRow], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---:" if i >= 3 else "---" for i in range(len(HEADERS))) + "|",
    ]
    lines += ["| " + " | ".join(record) + " |" for record in _records(table)]
    return "\n".join(lines) + "\n"


def to_latex(table: Sequence[TableRow], title: str) -> str:
    def escape(text: str) -> str:
        for old, new in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"),
                         ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"),
                         ("–", "--"), ("→", r"$\to$")):  # fmt: skip
            text = text.replace(old, new)
        return text

    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{escape(title)}}}",
             r"\begin{tabular}{lll" + "r" * (len(HEADERS) - 3) + "}", r"\toprule",
             " & ".join(escape(h) for h in HEADERS) + r" \\", r"\midrule"]  # fmt: skip
    previous = None
    for record in _records(table):
        if previous is not None and record[0] != previous:
            lines.append(r"\midrule")
        previous = record[0]
        lines.append(" & ".join(escape(cell) for cell in record) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Sequence[TableRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADERS)
    writer.writerows(_records(table))
    return buffer.getvalue()

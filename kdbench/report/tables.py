"""The report's tables: rows by data-set family and category (`formats` writes them out).

One table per data-set family (MNIST, FashionMNIST, ...) with the categories Student, Teacher
and Distillation: our mean ± std over seeds, the paired gain with its 95 % interval, its
p-value, that p-value Holm-adjusted over the table's comparisons and its Benjamini-Hochberg
q-value, how many seeds collapsed, the sweep point selected on validation (when there was a
sweep), and the reference's own numbers (the config's [report]) where it has the row. The
pooled table sums each teacher's gains up over every student and data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from kdbench.config.report import Number, ReportConfig
from kdbench.constants import DEFAULT_DISTILLER, NO_DISTILLER, NO_TEACHER
from kdbench.matrix import point_text
from kdbench.report.cells import (
    NONE,
    ON_TEST,
    accuracy_text,
    collapsed_text,
    equivalence_text,
    gain_text,
    interval_text,
    p_text,
    percent,
)
from kdbench.report.labels import Labels, dataset_label, student_label, teacher_label
from kdbench.report.stats import MARGIN, Row, adjusted, mean_std, pooled, tests_count

CATEGORIES = ("Student", "Teacher", "Distillation")
ON_TEST_NOTE = (
    f"{ON_TEST} the epoch with the best TEST accuracy was kept (selection on test: optimistic)"
)


@dataclass(frozen=True)
class TableRow:
    category: str
    architecture: str
    dataset: str
    # accuracy, Δ, CI, p, Holm's p, BH q, collapsed, [selected point,] reference accuracy, Δ
    cells: tuple[str, ...]


@dataclass(frozen=True)
class FamilyTable:
    """One data-set family's rows, Student, Teacher then Distillation, under `headers`."""

    headers: tuple[str, ...]
    rows: list[TableRow]
    notes: tuple[str, ...] = ()  # printed under the table


def headers(
    reference: str, tests: int, swept: bool, on_test: bool = False, margin: float = MARGIN
) -> tuple[str, ...]:
    selected = ("Selected on validation",) if swept else ()
    accuracy = f"Accuracy (%, {ON_TEST} selected on test)" if on_test else "Accuracy (%)"
    return (
        "Category",
        "Architecture",
        "Dataset",
        accuracy,
        "+Δ for Student",
        "95% CI",
        "p",
        f"p Holm (m={tests})",
        f"q BH (m={tests})",
        *equivalence_headers(margin),
        "Collapsed",
        *selected,
        f"{reference} (%)",
        f"{reference} +Δ",
    )


def equivalence_headers(margin: float) -> tuple[str, str]:
    return f"TOST p Holm (±{100 * margin:g})", "MDE (80%)"


def _reference(number: Number | None) -> tuple[str, str]:
    """The reference's (accuracy, Δ) cells, or dashes where it lacks the row."""
    if number is None:
        return NONE, NONE
    accuracy, gain = number
    return f"{accuracy:.2f}", NONE if gain is None else f"{gain:+.2f}"


def family_tables(
    rows: Sequence[Row], config: ReportConfig | None = None
) -> dict[str, FamilyTable]:
    """The rows selected on validation in the paper's layout, one table per data-set family;
    each table's p-values Holm-adjusted over its own comparisons."""
    config = config or ReportConfig()
    labels = config.labels
    rows = [r for r in rows if r.selected]
    backends = {r.backend for r in rows}
    named_distillers = names_distillers(rows)
    swept = {dataset_label(r.params, r.dataset, labels)[0] for r in rows if r.points > 1}
    tables: dict[str, dict[str, list[tuple[tuple, TableRow]]]] = {}
    teachers: dict[tuple[str, str], list[Row]] = {}
    order = {name: i for i, name in enumerate(dict.fromkeys(r.dataset for r in rows))}
    families: dict[str, list[Row]] = {}
    for row in rows:
        families.setdefault(dataset_label(row.params, row.dataset, labels)[0], []).append(row)
    for family, members in families.items():
        for row in adjusted(members, config.margin):
            params = row.params
            _, dataset = dataset_label(params, row.dataset, labels)
            student = student_label(params, row.student, labels)
            if len(backends) > 1:
                student = f"{student} [{row.backend}]"
            bucket = tables.setdefault(family, {c: [] for c in CATEGORIES})
            number = (
                config.student_number(row.dataset, row.student, row.teacher)
                if row.distiller in (NO_DISTILLER, DEFAULT_DISTILLER)
                else None
            )
            selected = (point_text(row.point),) if family in swept else ()
            reference = (*selected, *_reference(number))
            if row.teacher == NO_TEACHER and row.distiller == NO_DISTILLER:
                cells = (
                    accuracy_text(row),
                    *gain_text(None),
                    *equivalence_text(None),
                    collapsed_text(row),
                    *reference,
                )
                bucket["Student"].append(
                    ((order[row.dataset], student), TableRow("Student", student, dataset, cells))
                )
                continue
            teacher = teacher_label(params, row.teacher, labels)
            control = "True" in (params.get("teacher.shuffled"), params.get("teacher.class_prior"))
            if row.teacher != NO_TEACHER and not control:
                teachers.setdefault((row.teacher, row.dataset), []).append(row)
            cells = (
                accuracy_text(row),
                *gain_text(row.gain),
                *equivalence_text(row.gain),
                collapsed_text(row),
                *reference,
            )
            architecture = f"Teacher: {teacher}, Student: {student}"
            if named_distillers:
                architecture += f", Distiller: {row.distiller}"
            key = (teacher, row.distiller, order[row.dataset], student)
            bucket["Distillation"].append(
                (key, TableRow("Distillation", architecture, dataset, cells))
            )
    for (name, dataset_name), group in teachers.items():
        by_seed = {
            r.seed: r.teacher_test_accuracy
            for row in group
            for r in row.results
            if r.teacher_test_accuracy is not None
        }
        if not by_seed:
            continue
        params = group[0].params
        family, dataset = dataset_label(params, dataset_name, labels)
        mean, std = mean_std(list(by_seed.values()))
        label = f"Classical, {teacher_label(params, name, labels)}"
        selected = (NONE,) if family in swept else ()
        cells = (
            percent(mean, std),
            *gain_text(None),
            *equivalence_text(None),
            NONE,
            *selected,
            *_reference(config.teacher_number(dataset_name, name)),
        )
        tables[family]["Teacher"].append(
            ((label, order[dataset_name]), TableRow("Teacher", label, dataset, cells))
        )
    tables_out = {}
    for family, buckets in tables.items():
        on_test = any(r.selected_on_test for r in families[family])
        tables_out[family] = FamilyTable(
            headers(
                config.reference,
                tests_count(families[family]),
                family in swept,
                on_test,
                config.margin,
            ),
            [
                row
                for category in CATEGORIES
                for _, row in sorted(buckets[category], key=lambda kv: kv[0])
            ],
            (ON_TEST_NOTE,) if on_test else (),
        )
    return tables_out


def points_table(rows: Sequence[Row], config: ReportConfig | None = None) -> FamilyTable:
    """Every sweep point of the arms that have more than one: validation and test accuracy,
    the gain over the selected baseline, and which point validation selected."""
    labels = (config or ReportConfig()).labels
    records = []
    for row in rows:
        if row.points < 2:
            continue
        architecture, dataset = arm_label(row, labels)
        gain = gain_text(row.gain)
        cells = (
            point_text(row.point),
            str(row.seeds),
            percent(row.val_mean),
            percent(row.mean, row.std),
            gain[0],
            gain[1],
            "✓" if row.selected else "",
        )
        records.append(
            ((row.arm, point_text(row.point)), TableRow("Point", architecture, dataset, cells))
        )
    heading = (
        "Category",
        "Architecture",
        "Dataset",
        "Sweep point",
        "Seeds",
        "Validation (%)",
        "Test (%)",
        "+Δ for Student",
        "95% CI",
        "Selected",
    )
    return FamilyTable(heading, [row for _, row in sorted(records, key=lambda kv: kv[0])])


def pooled_table(rows: Sequence[Row], config: ReportConfig | None = None) -> FamilyTable:
    """Per teacher (and distiller), its selected rows' gains over every student, data set
    and backend pooled: their mean with a 95 % interval across pairs, how often it helps and
    hurts, and a two-sided sign test."""
    labels = (config or ReportConfig()).labels
    params = {(r.teacher, r.distiller): r.params for r in rows}
    named = names_distillers(rows)
    records = []
    for entry in pooled(rows):
        teacher = teacher_label(params[(entry.teacher, entry.distiller)], entry.teacher, labels)
        architecture = f"Teacher: {teacher}" + (f", Distiller: {entry.distiller}" if named else "")
        interval = NONE if entry.pairs < 2 else interval_text(entry.low, entry.high)
        cells = (
            str(entry.pairs),
            percent(entry.mean, signed=True),
            interval,
            f"{entry.wins} / {entry.losses}",
            p_text(entry.sign_p),
        )
        records.append(((teacher, entry.distiller), TableRow("Pooled", architecture, "all", cells)))
    heading = (
        "Category",
        "Architecture",
        "Dataset",
        "Pairs",
        "Mean +Δ (%)",
        "95% CI",
        "Helps / hurts",
        "Sign test p",
    )
    return FamilyTable(heading, [row for _, row in sorted(records, key=lambda kv: kv[0])])


def names_distillers(rows: Sequence[Row]) -> bool:
    """Whether rows need their distiller named: some distiller other than the paper's."""
    distillers = {r.distiller for r in rows if r.distiller != NO_DISTILLER}
    return distillers != {DEFAULT_DISTILLER} and bool(distillers)


def arm_label(row: Row, labels: Labels) -> tuple[str, str]:
    """(architecture, dataset) cells of a row that names its teacher, student and distiller."""
    _, dataset = dataset_label(row.params, row.dataset, labels)
    teacher = teacher_label(row.params, row.teacher, labels)
    student = student_label(row.params, row.student, labels)
    return f"Teacher: {teacher}, Student: {student}, Distiller: {row.distiller}", dataset


def results_table(rows: Sequence[Row], title: str = "Test accuracy (%)") -> Table:
    """A rich table of the rows selected on validation: student accuracy, teacher accuracy,
    the paired gain and its p-value, Holm-adjusted over the table's comparisons."""
    rows = adjusted([r for r in rows if r.selected])
    swept = any(r.points > 1 for r in rows)
    on_test = any(r.selected_on_test for r in rows)
    table = Table(title=title, caption=ON_TEST_NOTE if on_test else None)
    for column in ("dataset", "teacher", "student", "backend", "distiller", "seeds"):
        table.add_column(column)
    if swept:
        table.add_column("selected on validation")
    tests = tests_count(rows)
    for column in (
        "student acc",
        "teacher acc",
        "Δ vs no teacher",
        "95% CI",
        "p",
        f"p Holm (m={tests})",
        f"q BH (m={tests})",
        *equivalence_headers(MARGIN),
        "collapsed",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        selected = (point_text(row.point),) if swept else ()
        table.add_row(
            row.dataset,
            row.teacher,
            row.student,
            row.backend,
            row.distiller,
            str(row.seeds),
            *selected,
            accuracy_text(row),
            percent(row.teacher_mean),
            *gain_text(row.gain),
            *equivalence_text(row.gain),
            collapsed_text(row),
        )
    return table

"""The config's [report] section: a reference's numbers (the paper's) and row labels, as data.

    [report]
    reference = "Paper"            # heading of the reference columns: "Paper (%)", "Paper +Δ"
    [report.reference_students]    # student instance -> the reference column its rows show
    small-q3 = "q3"
    [report.numbers.digits-0-5]    # by data-set instance; accuracies and gains in %
    teachers = { cnn = 99.50 }     # each teacher instance's own accuracy
    q3 = { none = 96.56, cnn = [97.89, 1.33] }   # the student alone; taught: [accuracy, +Δ]
    [report.labels]                # instance -> row label, instead of its plugin's title
    small-q3 = "Small, 3 qubit"
    equivalence_margin = 1.0       # in points: the ±margin of the equivalence tests (TOST)

benchmarks.toml holds the paper's numbers this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kdbench.constants import MARGIN, NO_TEACHER
from kdbench.errors import ConfigError, did_you_mean, one_of

KEYS = ("reference", "reference_students", "numbers", "labels", "equivalence_margin")
TEACHERS = "teachers"  # the column of the teachers' own accuracies

Number = tuple[float, float | None]  # (accuracy %, gain % or None)


@dataclass(frozen=True)
class ReportConfig:
    """What [report] says; empty when the section is absent."""

    reference: str = "Reference"
    students: Mapping[str, str] = field(default_factory=dict)  # student instance -> column
    numbers: Mapping[str, Mapping[str, Mapping[str, Number]]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # instance -> row label
    margin: float = MARGIN  # the equivalence margin, a fraction (1 point: 0.01)

    def student_number(self, dataset: str, student: str, teacher: str) -> Number | None:
        """The reference's (accuracy, gain) of a student row (teacher 'none': alone)."""
        column = self.students.get(student)
        if column is None:
            return None
        return self.numbers.get(dataset, {}).get(column, {}).get(teacher)

    def teacher_number(self, dataset: str, teacher: str) -> Number | None:
        """The reference's accuracy of a teacher on a data set, as (accuracy, None)."""
        return self.numbers.get(dataset, {}).get(TEACHERS, {}).get(teacher)


def parse_report(raw: Any, file: str) -> ReportConfig:
    """Validate a [report] table; raise ConfigError naming the first bad key."""
    _table(
        raw, "report", "reference, reference_students, numbers, labels, equivalence_margin", file
    )
    for key in raw:
        if key not in KEYS:
            raise ConfigError(
                f"unknown key{did_you_mean(key, KEYS)}; allowed: {one_of(KEYS)}",
                file=file,
                key=f"report.{key}",
            )
    reference = raw.get("reference", ReportConfig.reference)
    if not isinstance(reference, str):
        raise ConfigError(
            "expected a string: the heading of the reference columns",
            file=file,
            key="report.reference",
        )
    students = _strings(
        raw.get("reference_students", {}),
        "report.reference_students",
        "student instance = reference column",
        file,
    )
    for name, column in students.items():
        if column == TEACHERS:
            raise ConfigError(
                f"'{TEACHERS}' is the column of the teachers' own accuracies; choose another name",
                file=file,
                key=f"report.reference_students.{name}",
            )
    numbers = _table(
        raw.get("numbers", {}), "report.numbers", "data-set instance = table of columns", file
    )
    columns = {TEACHERS, *students.values()}
    parsed = {
        dataset: _columns(table, f"report.numbers.{dataset}", columns, file)
        for dataset, table in numbers.items()
    }
    labels = _strings(raw.get("labels", {}), "report.labels", "instance = row label", file)
    margin = raw.get("equivalence_margin", 100 * MARGIN)
    if not (_is_number(margin) and 0 < margin <= 100):
        raise ConfigError(
            f"expected a number of points above 0 and at most 100, got {margin!r}",
            file=file,
            key="report.equivalence_margin",
        )
    return ReportConfig(reference, students, parsed, labels, margin / 100)


def _columns(raw: Any, key: str, columns: set[str], file: str) -> dict[str, dict[str, Number]]:
    """One data set's numbers: column -> teacher instance (or 'none') -> number."""
    parsed = {}
    for column, entries in _table(raw, key, "column = table of numbers", file).items():
        where = f"{key}.{column}"
        if column not in columns:
            raise ConfigError(
                f"unknown column{did_you_mean(column, columns)}; columns: {one_of(columns)}"
                f" ('{TEACHERS}', or one that report.reference_students names)",
                file=file,
                key=where,
            )
        teachers = column == TEACHERS
        _table(
            entries,
            where,
            "teacher instance = number"
            if teachers
            else f"teacher instance (or '{NO_TEACHER}') = number",
            file,
        )
        if teachers and NO_TEACHER in entries:
            raise ConfigError(
                f"'{NO_TEACHER}' is no teacher: the student alone goes in its own column",
                file=file,
                key=f"{where}.{NO_TEACHER}",
            )
        parsed[column] = {
            teacher: _number(value, f"{where}.{teacher}", teachers, file)
            for teacher, value in entries.items()
        }
    return parsed


def _number(value: Any, key: str, accuracy_only: bool, file: str) -> Number:
    """An accuracy %; in a student's column also [accuracy %, gain %]."""
    pair = isinstance(value, list) and len(value) == 2 and not accuracy_only
    accuracy, gain = value if pair else (value, None)
    # Written as ranges so that nan (valid TOML) fails them too.
    if (
        _is_number(accuracy)
        and 0 <= accuracy <= 100
        and (gain is None or (_is_number(gain) and -100 <= gain <= 100))
    ):
        return float(accuracy), None if gain is None else float(gain)
    expected = "a number" if accuracy_only else "a number or [accuracy, gain]"
    raise ConfigError(
        f"expected {expected} in % (accuracy 0 to 100, gain -100 to 100), got {value!r}",
        file=file,
        key=key,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(raw: Any, key: str, shape: str, file: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table: {shape}", file=file, key=key)
    return raw


def _strings(raw: Any, key: str, shape: str, file: str) -> dict[str, str]:
    for name, value in _table(raw, key, shape, file).items():
        if not isinstance(value, str):
            raise ConfigError(f"expected a string: {shape}", file=file, key=f"{key}.{name}")
    return raw

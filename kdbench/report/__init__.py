"""`kdbench report`: tables and figures from the cells an experiment logged.

`load_rows` reads the finished cells, `build_report` lays out the tables (one per data-set
family) and draws Figs. 6 and 7, `write` saves them. The config's [report] section
(`ReportConfig`) adds a reference's numbers and row labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kdbench.names import file_name
from kdbench.report.labels import dataset_label, student_label, teacher_label
from kdbench.report.reference import ReportConfig, parse_report
from kdbench.report.stats import Gain, Row, mean_std, paired_gain, summarize
from kdbench.report.tables import (
    FamilyTable,
    TableRow,
    family_tables,
    results_table,
    to_csv,
    to_latex,
    to_markdown,
    to_rich,
)
from kdbench.results import Result

if TYPE_CHECKING:
    from kdbench.report.figures import History
    from kdbench.tracking import Tracker

__all__ = [
    "FamilyTable",
    "Gain",
    "Report",
    "ReportConfig",
    "Row",
    "TableRow",
    "build_report",
    "dataset_label",
    "family_tables",
    "load_rows",
    "mean_std",
    "paired_gain",
    "parse_report",
    "results_table",
    "student_label",
    "summarize",
    "teacher_label",
    "to_csv",
    "to_latex",
    "to_markdown",
    "to_rich",
    "write",
]


@dataclass
class Report:
    """Tables (one per data-set family) and figures, as files by name."""

    rows: list[Row]
    tables: dict[str, FamilyTable]
    files: dict[str, bytes] = field(default_factory=dict)


def build_report(
    rows: Sequence[Row], history: History, experiment: str, config: ReportConfig | None = None
) -> Report:
    """Tables in every format and Figs. 6 and 7 per data-set family."""
    # Here, not at the top: matplotlib loads only when figures are drawn (config parsing
    # imports this package).
    from kdbench.report import figures

    config = config or ReportConfig()
    report = Report(list(rows), family_tables(rows, config))
    for family, table in report.tables.items():
        title = f"{experiment}: {family}"
        stem = file_name(family.lower())
        report.files[f"table-{stem}.md"] = to_markdown(table, title).encode()
        report.files[f"table-{stem}.tex"] = to_latex(table, title).encode()
        report.files[f"table-{stem}.csv"] = to_csv(table).encode()
        family_rows = [r for r in rows if dataset_label(r.params, r.dataset)[0] == family]
        panels = figures.loss_panels(family_rows, history, config.labels)
        if panels:
            report.files[f"fig6-loss-{stem}.png"] = figures.loss_bands(
                panels, f"{title}: distilled students' loss (mean ± std over seeds)"
            )
        report.files[f"fig7-accuracy-{stem}.png"] = figures.accuracy_bars(
            figures.accuracy_groups(family_rows, config.labels),
            f"{title}: test accuracy by teacher",
        )
    return report


def load_rows(tracker: Tracker) -> list[Row]:
    """The rows of every finished cell the tracker's experiment holds."""
    return summarize(Result.from_run(run) for run in tracker.cell_runs())


def write(report: Report, folder: Path) -> list[Path]:
    """Save the report's files in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in report.files.items():
        path = folder / file_name(name)
        path.write_bytes(content)
        paths.append(path)
    return paths

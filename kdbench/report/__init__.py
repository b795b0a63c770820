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

from kdbench.config.report import ReportConfig, parse_report
from kdbench.names import file_name
from kdbench.report.formats import to_csv, to_latex, to_markdown, to_rich
from kdbench.report.labels import dataset_label, student_label, teacher_label
from kdbench.report.noise import noise_curves, noise_rows, noise_table, pooled_noise_table
from kdbench.report.stats import Gain, Row, holm, mean_std, paired_gain, summarize
from kdbench.report.tables import (
    FamilyTable,
    TableRow,
    family_tables,
    points_table,
    pooled_table,
    results_table,
)
from kdbench.results import Result

if TYPE_CHECKING:
    from kdbench.matrix import Cell
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
    "holm",
    "load_rows",
    "mean_std",
    "paired_gain",
    "parse_report",
    "points_table",
    "pooled_table",
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
    points: dict[str, FamilyTable] = field(default_factory=dict)  # every sweep point, by family
    pooled: FamilyTable | None = None  # each teacher's gains over every student and data set
    noise: FamilyTable | None = None  # drops on the cells' test ladders, taught against alone


def build_report(
    rows: Sequence[Row], history: History, experiment: str, config: ReportConfig | None = None
) -> Report:
    """Per data-set family: the table of the points selected on validation in every format,
    Figs. 6 and 7, the gains by distiller and teacher (with more than one distiller), and,
    where arms were swept, the table of every point and accuracy against each swept key."""
    # Here, not at the top: matplotlib loads only when figures are drawn (config parsing
    # imports this package).
    from kdbench.report import figures

    config = config or ReportConfig()
    report = Report(list(rows), family_tables(rows, config))
    pooled = pooled_table(rows, config)
    if pooled.rows:
        report.pooled = pooled
        report.files["pooled.md"] = to_markdown(
            pooled, f"{experiment}: each teacher's gain pooled over students and data sets"
        ).encode()
        report.files["pooled.csv"] = to_csv(pooled).encode()
    noisy = noise_rows(rows)
    if noisy:
        report.noise = noise_table(noisy, config.labels)
        title = f"{experiment}: accuracy drop from {noisy[0].reference}, distilled against alone"
        report.files["noise.md"] = to_markdown(report.noise, title).encode()
        report.files["noise.csv"] = to_csv(report.noise).encode()
        pooled_noise = pooled_noise_table(noisy, config.labels)
        title = f"{experiment}: Δ drop pooled over students, data sets and training backends"
        report.files["noise-pooled.md"] = to_markdown(pooled_noise, title).encode()
        report.files["noise-pooled.csv"] = to_csv(pooled_noise).encode()
        rises = noise_rows(rows, "loss")
        if rises:  # the test cross-entropy sees what the argmax of noisy probabilities hides
            table = noise_table(rises, config.labels)
            title = f"{experiment}: test cross-entropy rise from {rises[0].reference}"
            report.files["noise-loss.md"] = to_markdown(
                table, f"{title}, distilled against alone"
            ).encode()
            report.files["noise-loss.csv"] = to_csv(table).encode()
        curves = noise_curves(rows, f"{experiment}: test accuracy against noise", config.labels)
        if curves is not None:
            report.files["noise-accuracy.png"] = curves
    for family, table in report.tables.items():
        title = f"{experiment}: {family}"
        stem = file_name(family.lower())
        report.files[f"table-{stem}.md"] = to_markdown(table, title).encode()
        report.files[f"table-{stem}.tex"] = to_latex(table, title).encode()
        report.files[f"table-{stem}.csv"] = to_csv(table).encode()
        every = [r for r in rows if dataset_label(r.params, r.dataset, config.labels)[0] == family]
        family_rows = [r for r in every if r.selected]
        panels = figures.loss_panels(family_rows, history, config.labels)
        if panels:
            report.files[f"fig6-loss-{stem}.png"] = figures.loss_bands(
                panels, f"{title}: distilled students' loss (mean ± std over seeds)"
            )
        report.files[f"fig7-accuracy-{stem}.png"] = figures.accuracy_bars(
            figures.accuracy_groups(family_rows, config.labels),
            f"{title}: test accuracy by teacher",
        )
        if len({r.distiller for r in family_rows}) > 2:  # more than the paper's and none
            forest = figures.gain_forest(
                family_rows, f"{title}: gain by distiller and teacher", config.labels
            )
            if forest is not None:
                report.files[f"fig-gain-{stem}.png"] = forest
        points = points_table(every, config)
        if points.rows:
            report.points[family] = points
            report.files[f"points-{stem}.md"] = to_markdown(
                points, f"{title}: every sweep point"
            ).encode()
            report.files[f"points-{stem}.csv"] = to_csv(points).encode()
            for key in dict.fromkeys(k for r in every if r.points > 1 for k in r.point):
                report.files[f"sweep-{stem}-{file_name(key)}.png"] = figures.sweep_curves(
                    every, key, f"{title}: accuracy against {key}", config.labels
                )
    return report


def load_rows(tracker: Tracker, cells: Sequence[Cell] = ()) -> list[Row]:
    """The rows of every finished cell the tracker's experiment holds; those among `cells`
    (a config's) with the distiller and sweep point the config gives them."""
    by_id = {cell.id: cell for cell in cells}
    return summarize(Result.from_run(run).as_in(by_id) for run in tracker.cell_runs())


def write(report: Report, folder: Path) -> list[Path]:
    """Save the report's files in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in report.files.items():
        path = folder / file_name(name)
        path.write_bytes(content)
        paths.append(path)
    return paths

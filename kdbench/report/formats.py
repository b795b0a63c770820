"""A report table written out: rich (the console), Markdown, LaTeX, CSV."""

from __future__ import annotations

import csv
import io

from rich.table import Table

from kdbench.report.tables import FamilyTable


def _records(table: FamilyTable) -> list[list[str]]:
    return [[r.category, r.architecture, r.dataset, *r.cells] for r in table.rows]


def to_rich(table: FamilyTable, title: str) -> Table:
    rich = Table(title=title, caption="\n".join(table.notes) or None)
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
    lines += ["", *table.notes] if table.notes else []
    return "\n".join(lines) + "\n"


def to_latex(table: FamilyTable, title: str) -> str:
    def escape(text: str) -> str:
        for old, new in (
            ("\\", r"\textbackslash{}"),
            ("&", r"\&"),
            ("%", r"\%"),
            ("_", r"\_"),
            ("#", r"\#"),
            ("±", r"$\pm$"),
            ("Δ", r"$\Delta$"),
            ("–", "--"),
            ("→", r"$\to$"),
        ):
            text = text.replace(old, new)
        return text

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{escape(title)}}}",
        r"\begin{tabular}{lll" + "r" * (len(table.headers) - 3) + "}",
        r"\toprule",
        " & ".join(escape(h) for h in table.headers) + r" \\",
        r"\midrule",
    ]
    previous = None
    for record in _records(table):
        if previous is not None and record[0] != previous:
            lines.append(r"\midrule")
        previous = record[0]
        lines.append(" & ".join(escape(cell) for cell in record) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [escape(note) + r"\\" for note in table.notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: FamilyTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.headers)
    writer.writerows(_records(table))
    return buffer.getvalue()

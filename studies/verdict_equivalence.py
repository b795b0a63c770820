"""Equivalence tests for the verdict's gains, from its published tables (results/verdict).

    python studies/verdict_equivalence.py [MARGIN_POINTS]

The verdict's store is not kept in the repository, so this recovers each gain's standard
error from its 95 % interval as the tables print it (n = 10 seeds; rounded to 0.1 point, so
the p-values are approximate) and runs TOST at ±MARGIN (default 1 point), Holm-adjusted over
each table's gains as `kdbench report` now does from the runs themselves. Prints, per
student, how many of its gains are shown to lie within ±MARGIN.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from collections import Counter
from pathlib import Path

from scipy import stats

from kdbench.report.stats import Gain, holm

TABLES = Path(__file__).resolve().parent.parent / "results" / "verdict"
SEEDS = 10


def gain_from_row(row: dict[str, str]) -> Gain:
    """The Gain a table row prints: mean and 95 % interval in points, n = SEEDS."""
    low, high = (float(x) / 100 for x in re.findall(r"[-+][\d.]+", row["95% CI"]))
    half = stats.t.ppf(0.975, SEEDS - 1)
    std = (high - low) / (2 * half) * math.sqrt(SEEDS)
    return Gain(float(row["+Δ for Student"]) / 100, std, SEEDS, low, high, math.nan)


def main(margin_points: str = "1") -> None:
    margin = float(margin_points) / 100
    print(f"| table | student | gains within ±{margin_points} (TOST, Holm) | of |")
    print("|---|---|---:|---:|")
    for table in sorted(TABLES.glob("table-*.csv")):
        with table.open() as f:
            rows = [r for r in csv.DictReader(f) if r["Category"] == "Distillation"]
        adjusted = holm([gain_from_row(r).tost(margin) for r in rows])
        shown, total = Counter(), Counter()
        for row, p in zip(rows, adjusted, strict=True):
            student = row["Architecture"].split("Student: ")[1]
            total[student] += 1
            shown[student] += p < 0.05
        for student in sorted(total):
            print(f"| {table.stem} | {student} | {shown[student]} | {total[student]} |")


if __name__ == "__main__":
    main(*sys.argv[1:])

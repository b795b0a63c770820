"""The verdict's summary tables for RESULTS.md, in Markdown, from its MLflow store.

    python studies/verdict_summary.py [TRACKING_URI] [EXPERIMENT]

1. The main table: each student alone, and its paired gain under each teacher (95 % CI;
   * where Holm's p < 0.05 over the table's gains, as `kdbench report` adjusts them: one
   family of comparisons per data-set family).
2. Does the teacher's knowledge of each image transfer? LeNet against the same LeNet's
   outputs shuffled within each class (label information kept), seed by seed, Holm over rows.
3. Each student's widest 95 % half-width.
4. The spread of the gain under one LeNet per seed against LeNet seed 0 teaching every seed.
5. Each teacher's gain pooled over data sets (and 3/4 qubits) per kind of student, with a
   sign test: released students, trainable circuits and their classical twins apart.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from kdbench.report import load_rows
from kdbench.report.cells import interval_text
from kdbench.report.labels import dataset_label
from kdbench.report.stats import Gain, Row, adjusted, holm, paired_gain, pooled
from kdbench.tracking import Tracker

TEACHERS = ("alexnet", "lenet", "lenet-0", "ensemble", "lenet-shuffled", "lenet-within")


def points(gain: Gain) -> str:
    star = "*" if gain.p_adjusted is not None and gain.p_adjusted < 0.05 else ""
    return f"{100 * gain.mean:+.1f} {interval_text(gain.low, gain.high)}{star}"


def accuracies(row: Row) -> dict[int, float]:
    return {r.seed: r.test_accuracy for r in row.results}


def main(uri: str = "sqlite:///mlflow.db", experiment: str = "verdict") -> None:
    rows = [r for r in load_rows(Tracker(uri, experiment, create=False)) if r.selected]
    by_family = defaultdict(list)
    for row in rows:
        by_family[dataset_label(row.params, row.dataset)[0]].append(row)
    rows = [r for group in by_family.values() for r in adjusted(group)]
    arm = {(r.dataset, r.student, r.teacher): r for r in rows}
    pairs = sorted({(r.dataset, r.student) for r in rows})

    def taught(dataset: str, student: str, *teachers: str) -> list[Row | None]:
        return [arm.get((dataset, student, t)) for t in teachers]

    print("| data set | student | alone (%) | " + " | ".join(TEACHERS) + " |")
    print("|---|---|---:|" + "---:|" * len(TEACHERS))
    for dataset, student in pairs:
        alone = arm.get((dataset, student, "none"))
        if alone is None:
            continue
        gains = taught(dataset, student, *TEACHERS)
        cells = [points(g.gain) if g and g.gain else "–" for g in gains]
        print(f"| {dataset} | {student} | {100 * alone.mean:.1f} ± {100 * alone.std:.1f} | "
              + " | ".join(cells) + " |")  # fmt: skip

    print("\nLeNet against its outputs shuffled within class (points, Holm over rows):")
    tests = []
    for dataset, student in pairs:
        real, within = taught(dataset, student, "lenet", "lenet-within")
        if real and within:
            tests.append((dataset, student, paired_gain(accuracies(within), accuracies(real))))
    for (dataset, student, gain), p in zip(
        tests, holm([g.p_value for *_, g in tests]), strict=True
    ):
        print(f"  {dataset:18} {student:13} {100 * gain.mean:+5.1f}"
              f" {interval_text(gain.low, gain.high)}  p_Holm {p:.3f}")  # fmt: skip

    print("\nwidest 95 % half-width of a gain, points:")
    widest: dict[str, float] = defaultdict(float)
    for row in rows:
        if row.gain:
            widest[row.student] = max(widest[row.student], 50 * (row.gain.high - row.gain.low))
    for student, width in sorted(widest.items()):
        print(f"  {student:14} {width:5.1f}")

    print("\nstd of the gain over seeds (points): one LeNet per seed | LeNet seed 0 | ratio")
    ratios = []
    for dataset, student in pairs:
        per_seed, fixed = taught(dataset, student, "lenet", "lenet-0")
        if per_seed and fixed and per_seed.gain and fixed.gain and fixed.gain.std:
            ratios.append(per_seed.gain.std / fixed.gain.std)
            print(f"  {dataset:18} {student:13} {100 * per_seed.gain.std:5.1f} |"
                  f" {100 * fixed.gain.std:5.1f} | {ratios[-1]:4.2f}")  # fmt: skip
    if ratios:
        print(f"  median ratio {statistics.median(ratios):.2f} over {len(ratios)} rows")

    print("\nmean gain over data sets per kind of student (points), 95 % t interval, sign test:")
    for kind in ("released", "vqc", "twin"):
        for entry in pooled([r for r in rows if r.student.startswith(kind)]):
            print(f"  {kind:9} {entry.teacher:15} {100 * entry.mean:+5.1f}"
                  f" {interval_text(entry.low, entry.high)}"
                  f" helps {entry.wins} / hurts {entry.losses} of {entry.pairs},"
                  f" sign p {entry.sign_p:.3f}")  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])

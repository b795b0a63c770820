"""The knowledge test's tables for RESULTS.md, in Markdown, from its MLflow store.

    python studies/knowledge_summary.py [TRACKING_URI] [EXPERIMENT]

1. How far each control moves the teacher's targets on the students' training images: the
   mean KL (nats) from the real LeNet's distribution to the control's, for the LeNet that
   never saw those images and for the one that did.
2. Real teacher against each control, seed by seed (points, 95 % CI), with Holm's p over
   the table and the equivalence test (TOST, Holm, ±1 point) and minimum detectable effect.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from dataclasses import replace

from kdbench.report import load_rows
from kdbench.report.cells import equivalence_text, gain_text
from kdbench.report.stats import Row, adjusted, paired_gain
from kdbench.tracking import Tracker

CONTROLS = {  # real teacher -> its controls
    "lenet": ("lenet-within", "lenet-prior"),
    "lenet-seen": ("lenet-seen-within",),
}


def accuracies(row: Row) -> dict[int, float]:
    return {r.seed: r.test_accuracy for r in row.results}


def main(uri: str = "sqlite:///mlflow.db", experiment: str = "knowledge") -> None:
    tracker = Tracker(uri, experiment, create=False)
    kl: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in tracker.cell_runs():
        value = run.data.metrics.get("teacher_control_kl")
        if value is not None:
            kl[(run.data.tags["kdbench.dataset"], run.data.tags["kdbench.teacher"])].append(value)
    print("| data set | control | mean KL from the real targets (nats) | cells |")
    print("|---|---|---:|---:|")
    for (dataset, teacher), values in sorted(kl.items()):
        print(f"| {dataset} | {teacher} | {statistics.fmean(values):.3f} | {len(values)} |")

    arms = {r.arm: r for r in load_rows(tracker) if r.selected}
    comparisons = []
    for (dataset, teacher, student, backend, distiller), row in sorted(arms.items()):
        for control in CONTROLS.get(teacher, ()):
            other = arms.get((dataset, control, student, backend, distiller))
            if other is not None:
                gain = paired_gain(accuracies(other), accuracies(row))
                comparisons.append(replace(row, teacher=f"{teacher} − {control}", gain=gain))
    print("\n| data set | student | distiller | real − control | Δ (points) | 95 % CI | p |"
          " p Holm | q BH | TOST p Holm (±1) | MDE (80 %) |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in adjusted(comparisons):
        cells = (row.dataset, row.student, row.distiller, row.teacher, *gain_text(row.gain),
                 *equivalence_text(row.gain))  # fmt: skip
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])

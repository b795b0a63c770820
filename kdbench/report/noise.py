"""The report's noise-sensitivity section, for cells tested on a ladder of backends
(`also_test_on`): each arm's accuracy on every rung, its drop from the first rung (the
noiseless one), and the paired difference, seed by seed, of that drop between the distilled
student and the same student alone, Holm-adjusted over the table.

A negative Δ drop means the distilled student lost less accuracy to noise than the student
alone: what "distillation reduces noise sensitivity" predicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kdbench.config import NO_TEACHER
from kdbench.matrix import NO_DISTILLER
from kdbench.report.labels import NO_LABELS, Labels, dataset_label, student_label, teacher_label
from kdbench.report.stats import Gain, Row, benjamini_hochberg, holm, mean_std, paired_gain
from kdbench.report.tables import FamilyTable, TableRow, gain_text, percent


@dataclass(frozen=True)
class NoiseRow:
    """One taught arm on one rung of its ladder, beside the same student alone."""

    arm: Row  # the taught arm (its backend: the one it trained on)
    alone: Row  # the same student without a teacher, same training backend
    rung: str  # the backend it was tested on
    reference: str  # the ladder's first rung, the drops are measured from
    accuracy: tuple[float, float]  # taught: mean, std on the rung
    alone_accuracy: tuple[float, float]
    drop: float  # taught: mean over seeds of accuracy(reference) - accuracy(rung)
    alone_drop: float
    gain: Gain | None  # taught drop - alone drop, paired by seed


def ladder(row: Row) -> list[str]:
    """The backends the row's cells were also tested on, in their config's order."""
    return list(row.results[0].also) if row.results else []


def accuracy_on(row: Row, rung: str) -> dict[int, float]:
    """Test accuracy by seed on `rung` (one of the row's ladder)."""
    return {r.seed: r.also[rung] for r in row.results if rung in r.also}


def noise_rows(rows: Sequence[Row]) -> list[NoiseRow]:
    """Every taught arm selected on validation that has a ladder, on each rung past the
    first, with its drop compared to its student alone; Holm and BH over all of them."""
    selected = [r for r in rows if r.selected and ladder(r)]
    alone = {
        (r.dataset, r.student, r.backend): r
        for r in selected
        if r.teacher == NO_TEACHER and r.distiller == NO_DISTILLER
    }
    out = []
    for row in selected:
        base = alone.get((row.dataset, row.student, row.backend))
        if base is None or base is row:
            continue
        rungs = ladder(row)
        reference = rungs[0]
        for rung in rungs[1:]:
            drops = _drops(row, reference, rung)
            base_drops = _drops(base, reference, rung)
            if not drops or not base_drops:
                continue
            out.append(NoiseRow(
                row, base, rung, reference,
                mean_std(list(accuracy_on(row, rung).values())),
                mean_std(list(accuracy_on(base, rung).values())),
                mean_std(list(drops.values()))[0], mean_std(list(base_drops.values()))[0],
                paired_gain(base_drops, drops),
            ))  # fmt: skip
    p_values = [r.gain.p_value if r.gain else math.nan for r in out]
    return [
        replace(r, gain=replace(r.gain, p_adjusted=p, q_value=q)) if r.gain else r
        for r, p, q in zip(out, holm(p_values), benjamini_hochberg(p_values), strict=True)
    ]


def _drops(row: Row, reference: str, rung: str) -> dict[int, float]:
    """Seed -> accuracy on `reference` minus accuracy on `rung`."""
    first, second = accuracy_on(row, reference), accuracy_on(row, rung)
    return {s: first[s] - second[s] for s in first if s in second}


def noise_table(rows: Sequence[NoiseRow], labels: Labels = NO_LABELS) -> FamilyTable:
    """The noise rows as a table: rung, arm, data set, both students' accuracy and drop, and
    the paired Δ drop with its interval and (adjusted) p-values."""
    tests = sum(1 for r in rows if r.gain and not math.isnan(r.gain.p_value))
    headers = ("Tested on", "Architecture", "Dataset", "Alone (%)", "Alone drop",
               "Distilled (%)", "Distilled drop", "Δ drop", "95% CI", "p",
               f"p Holm (m={tests})", f"q BH (m={tests})")  # fmt: skip
    records = []
    for r in rows:
        params = r.arm.params
        student = student_label(params, r.arm.student, labels)
        teacher = teacher_label(params, r.arm.teacher, labels)
        distiller = "" if r.arm.distiller == NO_DISTILLER else f", Distiller: {r.arm.distiller}"
        architecture = f"Teacher: {teacher}{distiller}, Student: {student} [{r.arm.backend}]"
        _, dataset = dataset_label(params, r.arm.dataset, labels)
        cells = (
            percent(*r.alone_accuracy),
            percent(r.alone_drop, signed=True),
            percent(*r.accuracy),
            percent(r.drop, signed=True),
            *gain_text(r.gain),
        )
        records.append(TableRow(r.rung, architecture, dataset, cells))
    return FamilyTable(headers, records)


def noise_curves(rows: Sequence[Row], title: str, labels: Labels = NO_LABELS) -> bytes | None:
    """Accuracy against the ladder's rungs, one line per teacher (mean ± std over seeds), one
    panel per data set, student and training backend; None without a ladder."""
    from kdbench.report.figures import arm_label, plt, png

    selected = [r for r in rows if r.selected and ladder(r)]
    panels: dict[tuple[str, str, str], list[Row]] = {}
    for row in selected:
        panels.setdefault((row.dataset, row.student, row.backend), []).append(row)
    if not panels:
        return None
    columns = min(3, len(panels))
    lines = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines),
                                squeeze=False)  # fmt: skip
    for axis, ((dataset, student, backend), members) in zip(
        axes.flat, panels.items(), strict=False
    ):
        rungs = ladder(members[0])
        for index, row in enumerate(members):
            values = [mean_std(list(accuracy_on(row, rung).values())) for rung in rungs]
            axis.errorbar(range(len(rungs)), [100 * m for m, _ in values],
                          yerr=[100 * s for _, s in values], capsize=2, marker="o",
                          label=arm_label(row, selected, labels), color=f"C{index}")  # fmt: skip
        params = members[0].params
        axis.set_xticks(range(len(rungs)), rungs, rotation=30, ha="right", fontsize=7)
        name = dataset_label(params, dataset, labels)[1]
        axis.set_title(f"{name}, {student_label(params, student, labels)} [{backend}]", fontsize=8)
        axis.set_ylabel("test accuracy (%)")
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    legend = {}  # one legend for every panel: the same teachers throughout
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(list(legend.values()), list(legend), loc="lower center", fontsize=8,
                  ncol=min(3, len(legend)))  # fmt: skip
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.03 + 0.012 * math.ceil(len(legend) / 3), 1, 1))
    return png(figure)

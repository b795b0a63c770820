"""The report's noise-sensitivity section, for cells tested on a ladder of backends
(`also_test_on`): each arm's accuracy on every rung, its drop from the first rung (the
noiseless one), and the paired difference, seed by seed, of that drop between the distilled
student and the same student alone, Holm-adjusted over the table.

The same for the test cross-entropy (`measure="loss"`), whose "drop" is its rise: accuracy is
the argmax of the outcome probabilities, which noise that only shrinks them towards uniform
cannot change; the cross-entropy sees every change.

A negative Δ drop means the distilled student lost less to noise than the student alone:
what "distillation reduces noise sensitivity" predicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from kdbench.constants import NO_DISTILLER, NO_TEACHER
from kdbench.report.cells import NONE, gain_text, interval_text, p_text, percent
from kdbench.report.labels import NO_LABELS, Labels, dataset_label, student_label, teacher_label
from kdbench.report.stats import (
    Gain,
    Row,
    benjamini_hochberg,
    holm,
    mean_std,
    paired_gain,
    pool,
)
from kdbench.report.tables import FamilyTable, TableRow

DIGITS = 2  # drops are small: hundredths of a point show what tenths round away
LOSS_DIGITS = 3  # cross-entropies, in nats

Measure = Literal["accuracy", "loss"]


@dataclass(frozen=True)
class NoiseRow:
    """One taught arm on one rung of its ladder, beside the same student alone."""

    arm: Row  # the taught arm (its backend: the one it trained on)
    alone: Row  # the same student without a teacher, same training backend
    rung: str  # the backend it was tested on
    reference: str  # the ladder's first rung, the drops are measured from
    level: tuple[float, float]  # taught: mean, std of the measure on the rung
    alone_level: tuple[float, float]
    drop: float  # taught: mean over seeds of how much worse the measure is than on reference
    alone_drop: float
    gain: Gain | None  # taught drop - alone drop, paired by seed
    measure: Measure = "accuracy"


def ladder(row: Row) -> list[str]:
    """The backends the row's cells were also tested on, in their config's order."""
    return list(row.results[0].also) if row.results else []


def measure_on(row: Row, rung: str, measure: Measure = "accuracy") -> dict[int, float]:
    """Test accuracy (or cross-entropy) by seed on `rung` (one of the row's ladder)."""
    values = (lambda r: r.also) if measure == "accuracy" else (lambda r: r.also_loss)
    return {r.seed: values(r)[rung] for r in row.results if rung in values(r)}


def noise_rows(rows: Sequence[Row], measure: Measure = "accuracy") -> list[NoiseRow]:
    """Every taught arm selected on validation that has a ladder, on each rung past the
    first, with its drop (in accuracy, or its rise in cross-entropy) compared to its
    student alone; Holm and BH over all of them."""
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
            drops = drops_by_seed(row, reference, rung, measure)
            base_drops = drops_by_seed(base, reference, rung, measure)
            if not drops or not base_drops:
                continue
            out.append(
                NoiseRow(
                    row,
                    base,
                    rung,
                    reference,
                    mean_std(list(measure_on(row, rung, measure).values())),
                    mean_std(list(measure_on(base, rung, measure).values())),
                    mean_std(list(drops.values()))[0],
                    mean_std(list(base_drops.values()))[0],
                    paired_gain(base_drops, drops),
                    measure,
                )
            )
    p_values = [r.gain.p_value if r.gain else math.nan for r in out]
    return [
        replace(r, gain=replace(r.gain, p_adjusted=p, q_value=q)) if r.gain else r
        for r, p, q in zip(out, holm(p_values), benjamini_hochberg(p_values), strict=True)
    ]


def drops_by_seed(row: Row, reference: str, rung: str, measure: Measure) -> dict[int, float]:
    """Seed -> how much worse the measure is on `rung` than on `reference`: the accuracy's
    fall, the cross-entropy's rise."""
    first, second = measure_on(row, reference, measure), measure_on(row, rung, measure)
    sign = 1 if measure == "accuracy" else -1
    return {s: sign * (first[s] - second[s]) for s in first if s in second}


def noise_table(rows: Sequence[NoiseRow], labels: Labels = NO_LABELS) -> FamilyTable:
    """The noise rows as a table: rung, arm, data set, both students' accuracy (or
    cross-entropy) and drop (rise), and the paired Δ with its interval and (adjusted)
    p-values."""
    tests = sum(1 for r in rows if r.gain and not math.isnan(r.gain.p_value))
    loss = bool(rows) and rows[0].measure == "loss"
    unit, drop = ("CE", "rise") if loss else ("(%)", "drop")
    digits, scale = (LOSS_DIGITS, 1) if loss else (DIGITS, 100)
    headers = (
        "Tested on",
        "Architecture",
        "Dataset",
        f"Alone {unit}",
        f"Alone {drop}",
        f"Distilled {unit}",
        f"Distilled {drop}",
        f"Δ {drop}",
        "95% CI",
        "p",
        f"p Holm (m={tests})",
        f"q BH (m={tests})",
    )
    records = []
    for r in rows:
        params = r.arm.params
        student = student_label(params, r.arm.student, labels)
        teacher = teacher_label(params, r.arm.teacher, labels)
        distiller = "" if r.arm.distiller == NO_DISTILLER else f", Distiller: {r.arm.distiller}"
        architecture = f"Teacher: {teacher}{distiller}, Student: {student} [{r.arm.backend}]"
        _, dataset = dataset_label(params, r.arm.dataset, labels)
        places = digits if loss else 1  # accuracies themselves to tenths
        cells = (
            percent(*r.alone_level, digits=places, scale=scale),
            percent(r.alone_drop, signed=True, digits=digits, scale=scale),
            percent(*r.level, digits=places, scale=scale),
            percent(r.drop, signed=True, digits=digits, scale=scale),
            *gain_text(r.gain, digits, scale),
        )
        records.append(TableRow(r.rung, architecture, dataset, cells))
    return FamilyTable(headers, records)


def pooled_noise_table(rows: Sequence[NoiseRow], labels: Labels = NO_LABELS) -> FamilyTable:
    """Per rung, teacher and distiller: the mean Δ drop pooled over every student, data set
    and training backend, its interval across them, how often distillation lowered (helps)
    and raised (hurts) the drop, and a two-sided sign test."""
    groups: dict[tuple[str, str, str], list[NoiseRow]] = {}
    for r in rows:
        if r.gain is not None:
            groups.setdefault((r.rung, r.arm.teacher, r.arm.distiller), []).append(r)
    order = {rung: i for i, rung in enumerate(dict.fromkeys(r.rung for r in rows))}
    records = []
    for (rung, teacher, distiller), members in sorted(
        groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])
    ):
        label = teacher_label(members[0].arm.params, teacher, labels)
        pairs, mean, low, high, wins, losses, sign_p = pool([r.gain.mean for r in members])
        interval = NONE if pairs < 2 else interval_text(low, high, DIGITS)
        # A lower drop is the help: wins of the Δ drop are losses of robustness.
        cells = (
            str(pairs),
            percent(mean, signed=True, digits=DIGITS),
            interval,
            f"{losses} / {wins}",
            p_text(sign_p),
        )
        records.append(TableRow(rung, f"Teacher: {label}, Distiller: {distiller}", "all", cells))
    headers = (
        "Tested on",
        "Architecture",
        "Dataset",
        "Pairs",
        "Mean Δ drop",
        "95% CI",
        "Less / more drop",
        "Sign test p",
    )
    return FamilyTable(headers, records)


def noise_curves(rows: Sequence[Row], title: str, labels: Labels = NO_LABELS) -> bytes | None:
    """Accuracy against the ladder's rungs, one line per teacher (mean ± std over seeds), one
    panel per data set, student and training backend; None without a ladder. Rungs that
    differ in one numeric option (depolarizing 0.001 → 0.003) are joined by a line; others
    (one fake device, then another) stand alone."""
    from kdbench.report.figures import arm_label, plt, png

    selected = [r for r in rows if r.selected and ladder(r)]
    panels: dict[tuple[str, str, str], list[Row]] = {}
    for row in selected:
        panels.setdefault((row.dataset, row.student, row.backend), []).append(row)
    if not panels:
        return None
    arms = sorted({(r.teacher != NO_TEACHER, r.teacher, r.distiller) for r in selected})
    colour = {arm[1:]: f"C{i}" for i, arm in enumerate(arms)}  # the same in every panel
    columns = min(3, len(panels))
    lines = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines), squeeze=False)
    legend: dict[str, Any] = {}
    for axis, ((dataset, student, backend), members) in zip(
        axes.flat, panels.items(), strict=False
    ):
        rungs = ladder(members[0])
        segments = _segments(members[0].params, len(rungs))
        for row in sorted(members, key=lambda r: (r.teacher != NO_TEACHER, r.teacher)):
            values = [mean_std(list(measure_on(row, rung).values())) for rung in rungs]
            label = arm_label(row, selected, labels)
            for segment in segments:
                handle = axis.errorbar(
                    segment,
                    [100 * values[i][0] for i in segment],
                    yerr=[100 * values[i][1] for i in segment],
                    capsize=2,
                    marker="o",
                    linestyle="-" if len(segment) > 1 else "none",
                    color=colour[(row.teacher, row.distiller)],
                )
                legend.setdefault(label, handle)
        params = members[0].params
        axis.set_xticks(range(len(rungs)), rungs, rotation=30, ha="right", fontsize=7)
        name = dataset_label(params, dataset, labels)[1]
        axis.set_title(f"{name}, {student_label(params, student, labels)} [{backend}]", fontsize=8)
        axis.set_ylabel("test accuracy (%)")
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.legend(
        list(legend.values()),
        list(legend),
        loc="lower center",
        fontsize=8,
        ncol=min(3, len(legend)),
    )
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.03 + 0.012 * math.ceil(len(legend) / 3), 1, 1))
    return png(figure)


def _segments(params: Mapping[str, str], count: int) -> list[list[int]]:
    """The ladder's rungs in runs to draw as lines: consecutive rungs whose backends differ
    in one numeric (or unset) option; every rung alone if the ladder is not in `params`."""
    try:
        configs = json.loads(params["also_test_on"])
    except (KeyError, ValueError):
        return [[i] for i in range(count)]

    def joined(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        differ = [k for k in {*a, *b} if a.get(k) != b.get(k)]
        numeric = all(
            isinstance(x, (int, float)) or x is None for k in differ for x in (a.get(k), b.get(k))
        )
        return len(differ) == 1 and numeric

    segments = [[0]]
    for i in range(1, min(count, len(configs))):
        if joined(configs[i - 1], configs[i]):
            segments[-1].append(i)
        else:
            segments.append([i])
    return segments

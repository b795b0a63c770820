"""The report's figures as PNG bytes: Fig. 6 loss bands, Fig. 7 accuracy bars, the gains by
distiller and teacher, and accuracy against each swept value."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import numpy as np

from kdbench.constants import DEFAULT_DISTILLER, NO_DISTILLER
from kdbench.report.labels import NO_LABELS, Labels, dataset_label, student_label, teacher_label
from kdbench.report.stats import Row

History = Callable[[str, str], list[float]]  # (run id, metric) -> its value per epoch
Panel = tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]
Group = tuple[str, dict[str, tuple[float, float]]]


def png(figure) -> bytes:
    """The figure as PNG bytes; closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _student(row: Row, labels: Labels) -> str:
    dataset = dataset_label(row.params, row.dataset, labels)[1]
    return f"{dataset}, {student_label(row.params, row.student, labels)}"


def arm_label(row: Row, rows: Sequence[Row], labels: Labels = NO_LABELS) -> str:
    """The teacher's label ("no teacher" alone), with the distiller's name where `rows`
    use more than the paper's."""
    teacher = teacher_label(row.params, row.teacher, labels, alone="no teacher")
    distillers = {r.distiller for r in rows} - {NO_DISTILLER}
    if row.distiller == NO_DISTILLER or distillers <= {DEFAULT_DISTILLER}:
        return teacher
    return f"{teacher} · {row.distiller}"


def loss_panels(rows: Sequence[Row], history: History, labels: Labels = NO_LABELS) -> list[Panel]:
    """Per (data set, student) with a teacher: each teacher's train/val loss curves."""
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for row in rows:
        if row.distiller == NO_DISTILLER:
            continue
        curves = [
            (history(r.run_id, "train_loss"), history(r.run_id, "val_loss"))
            for r in row.results
            if r.run_id
        ]
        epochs = min((min(len(t), len(v)) for t, v in curves), default=0)
        if epochs:
            train = np.array([t[:epochs] for t, _ in curves])
            val = np.array([v[:epochs] for _, v in curves])
            panels[_student(row, labels)][arm_label(row, rows, labels)] = (train, val)
    return list(panels.items())


def accuracy_groups(rows: Sequence[Row], labels: Labels = NO_LABELS) -> list[Group]:
    """Per (data set, student): mean and std test accuracy with each teacher (and none)."""
    groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for row in rows:
        groups[_student(row, labels)][arm_label(row, rows, labels)] = (row.mean, row.std)
    return list(groups.items())


def loss_bands(panels: Sequence[Panel], title: str) -> bytes:
    """Fig. 6: per panel (a data set and student), train (dashed) and validation (solid)
    loss per epoch of each teacher's students: the mean over seeds and a ±1 std band.

    Each panel maps a teacher label to (train, val) arrays of shape [seeds, epochs].
    """
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, (name, curves) in zip(axes.flat, panels, strict=False):
        for index, (teacher, (train, val)) in enumerate(curves.items()):
            color = f"C{index}"
            epochs = np.arange(1, train.shape[1] + 1)
            for values, style, label in ((val, "-", teacher), (train, "--", None)):
                mean, std = values.mean(0), values.std(0)
                axis.plot(epochs, mean, style, color=color, label=label)
                axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
        axis.set(title=name, xlabel="epoch", ylabel="loss (— val, -- train)")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return png(figure)


def accuracy_bars(groups: Sequence[Group], title: str) -> bytes:
    """Fig. 7: test accuracy per student (groups), one bar per teacher, std over seeds."""
    teachers = list(dict.fromkeys(t for _, bars in groups for t in bars))
    width = 0.8 / max(len(teachers), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.5))
    positions = np.arange(len(groups))
    for index, teacher in enumerate(teachers):
        means = [100 * bars.get(teacher, (np.nan, 0))[0] for _, bars in groups]
        stds = [100 * bars.get(teacher, (np.nan, 0))[1] for _, bars in groups]
        axis.bar(
            positions + (index - (len(teachers) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=teacher,
            color=f"C{index}",
        )
    axis.set_xticks(positions, [name for name, _ in groups], rotation=20, ha="right", fontsize=8)
    axis.set(ylabel="test accuracy (%)", title=title)
    low = min((100 * m - 100 * s for _, bars in groups for m, s in bars.values()), default=0)
    axis.set_ylim(max(0, low - 5), 100)
    axis.legend(fontsize=7, ncol=2)
    return png(figure)


def gain_forest(rows: Sequence[Row], title: str, labels: Labels = NO_LABELS) -> bytes | None:
    """Each taught arm's paired gain over its student alone, with its 95 % interval: one
    line per (data set, student, teacher), a marker per distiller; None without gains."""
    gained = [r for r in rows if r.gain is not None and r.gain.n >= 2]
    if not gained:
        return None
    distillers = list(dict.fromkeys(r.distiller for r in gained))
    lines: dict[str, list[str]] = {}  # line -> its distillers, each a marker around it
    for row in gained:
        lines.setdefault(_gain_line(row, labels), []).append(row.distiller)
    widest = max(len(names) for names in lines.values())
    height = 0.8 / widest
    names = list(lines)

    def y_of(row: Row) -> float:
        line = _gain_line(row, labels)
        rank, count = lines[line].index(row.distiller), len(lines[line])
        return names.index(line) + (rank - (count - 1) / 2) * height

    figure, axis = plt.subplots(figsize=(9, 1.2 + 0.22 * len(lines) * widest))
    for index, distiller in enumerate(distillers):
        chosen = [r for r in gained if r.distiller == distiller]
        y = [y_of(r) for r in chosen]
        x = np.array([100 * r.gain.mean for r in chosen])
        low = x - np.array([100 * r.gain.low for r in chosen])
        high = np.array([100 * r.gain.high for r in chosen]) - x
        axis.errorbar(
            x,
            y,
            xerr=[low, high],
            fmt="o",
            ms=4,
            capsize=2,
            color=f"C{index % 10}",
            label=distiller,
        )
    axis.axvline(0, color="black", lw=0.8)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.invert_yaxis()
    axis.set(xlabel="Δ test accuracy over the student alone (points, 95 % CI)", title=title)
    axis.legend(
        fontsize=7, title="distiller", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    return png(figure)


def _gain_line(row: Row, labels: Labels) -> str:
    teacher = teacher_label(row.params, row.teacher, labels, alone="no teacher")
    return f"{_student(row, labels)} ← {teacher}"


def sweep_curves(rows: Sequence[Row], key: str, title: str, labels: Labels = NO_LABELS) -> bytes:
    """Validation (dashed) and test (solid) accuracy against the values of the swept `key`,
    one line per arm that sweeps it, the arm's other swept keys held at its selected point;
    the selected point circled."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    arms: dict[tuple[str, ...], list[Row]] = defaultdict(list)
    for row in rows:
        if key in row.point:
            arms[row.arm].append(row)
    values = sorted({_sortable(r.point[key]) for group in arms.values() for r in group})
    for index, group in enumerate(arms.values()):
        best = next((r for r in group if r.selected), group[0])
        line = sorted(
            (
                r
                for r in group
                if all(r.point.get(k) == v for k, v in best.point.items() if k != key)
            ),
            key=lambda r: _sortable(r.point[key]),
        )
        x = [values.index(_sortable(r.point[key])) for r in line]
        color = f"C{index % 10}"
        name = f"{_student(best, labels)} · {arm_label(best, rows, labels)}"
        axis.plot(x, [100 * r.mean for r in line], "-o", color=color, ms=3, label=name)
        val = [np.nan if r.val_mean is None else 100 * r.val_mean for r in line]
        axis.plot(x, val, "--", color=color, lw=0.8)
        if best in line:
            axis.plot([x[line.index(best)]], [100 * best.mean], "o", ms=10, mfc="none", color=color)
    axis.set_xticks(range(len(values)), [str(v) for _, v in values])
    axis.set(xlabel=key, ylabel="accuracy (%) — test, -- validation", title=title)
    axis.legend(fontsize=6, loc="best")
    return png(figure)


def _sortable(value: object) -> tuple[int, object]:
    """Swept values in one sortable form: numbers by value, then anything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))

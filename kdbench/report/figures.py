"""The report's figures as PNG bytes: Fig. 6 loss bands and Fig. 7 accuracy bars."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import numpy as np

from kdbench.config import NO_TEACHER
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


def loss_panels(rows: Sequence[Row], history: History, labels: Labels = NO_LABELS) -> list[Panel]:
    """Per (data set, student) with a teacher: each teacher's train/val loss curves."""
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
    for row in rows:
        if row.teacher == NO_TEACHER:
            continue
        curves = [(history(r.run_id, "train_loss"), history(r.run_id, "val_loss"))
                  for r in row.results if r.run_id]  # fmt: skip
        epochs = min((min(len(t), len(v)) for t, v in curves), default=0)
        if epochs:
            train = np.array([t[:epochs] for t, _ in curves])
            val = np.array([v[:epochs] for _, v in curves])
            teacher = teacher_label(row.params, row.teacher, labels)
            panels[_student(row, labels)][teacher] = (train, val)
    return list(panels.items())


def accuracy_groups(rows: Sequence[Row], labels: Labels = NO_LABELS) -> list[Group]:
    """Per (data set, student): mean and std test accuracy with each teacher (and none)."""
    groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for row in rows:
        teacher = ("no teacher" if row.teacher == NO_TEACHER
                   else teacher_label(row.params, row.teacher, labels))  # fmt: skip
        groups[_student(row, labels)][teacher] = (row.mean, row.std)
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
        axis.bar(positions + (index - (len(teachers) - 1) / 2) * width, means, width,
                 yerr=stds, capsize=2, label=teacher, color=f"C{index}")  # fmt: skip
    axis.set_xticks(positions, [name for name, _ in groups], rotation=20, ha="right",
                    fontsize=8)  # fmt: skip
    axis.set(ylabel="test accuracy (%)", title=title)
    low = min((100 * m - 100 * s for _, bars in groups for m, s in bars.values()), default=0)
    axis.set_ylim(max(0, low - 5), 100)
    axis.legend(fontsize=7, ncol=2)
    return png(figure)

"""Plots saved as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from kdbench.distill import EpochMetrics


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def loss_curve(history: Sequence[EpochMetrics], title: str) -> bytes:
    """Train and validation loss (and its CE/KD parts) per epoch."""
    epochs = [m.epoch for m in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for attr, style in (
        ("train_loss", "-"),
        ("val_loss", "-"),
        ("train_kd", ":"),
        ("val_ce", "--"),
    ):
        loss_axis.plot(epochs, [getattr(m, attr) for m in history], style, label=attr)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    for attr in ("train_accuracy", "val_accuracy"):
        acc_axis.plot(epochs, [getattr(m, attr) for m in history], label=attr)
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    acc_axis.legend()
    figure.suptitle(title)
    return _png(figure)


def confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], title: str) -> bytes:
    """Counts of (true, predicted) classes on the test set."""
    figure, axis = plt.subplots(figsize=(5, 4.5))
    image = axis.imshow(confusion.numpy(), cmap="Blues")
    ticks = range(len(class_names))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=title)
    axis.set_xticklabels(class_names, rotation=45, ha="right")
    axis.set_yticklabels(class_names)
    for (i, j), count in zip(
        [(i, j) for i in ticks for j in ticks], confusion.flatten().tolist(), strict=True
    ):
        axis.text(j, i, str(count), ha="center", va="center", fontsize=7)
    figure.colorbar(image)
    return _png(figure)


def loss_bands(
    panels: Sequence[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]], title: str
) -> bytes:
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
    return _png(figure)


def accuracy_bars(
    groups: Sequence[tuple[str, dict[str, tuple[float, float]]]], title: str
) -> bytes:
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
    return _png(figure)

"""Figures of one cell, logged with its run: loss and accuracy per epoch, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kdbench.report.figures import plt, png  # pyplot, on the backend chosen there

if TYPE_CHECKING:  # torch is slow to import; annotations only
    import torch

    from kdbench.distill import EpochMetrics


def loss_curve(history: Sequence[EpochMetrics], title: str) -> bytes:
    """Train and validation loss (and the distiller's parts in training, the validation
    cross-entropy) per epoch."""
    epochs = [m.epoch for m in history]
    logged = [m.logged() for m in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    parts = [f"train_{name}" for name in history[0].train if name not in ("loss", "ce", "accuracy")]
    for name, style in (
        ("train_loss", "-"),
        ("val_loss", "-"),
        *((part, ":") for part in parts),
        ("val_ce", "--"),
    ):
        loss_axis.plot(epochs, [m[name] for m in logged], style, label=name)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    for name in ("train_accuracy", "val_accuracy"):
        acc_axis.plot(epochs, [m[name] for m in logged], label=name)
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    acc_axis.legend()
    figure.suptitle(title)
    return png(figure)


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
    return png(figure)

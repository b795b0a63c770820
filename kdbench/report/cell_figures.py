"""The figure of one cell logged with its run: the confusion matrix on the test set.

A matrix draws it for every cell, so it is laid out once per process and class names and
then only gets new numbers: laying out ticks and labels took most of the ~0.12 s it cost a
cell when drawn from scratch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # torch is slow to import; annotations only
    import torch

_DPI = 120


def confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], title: str) -> bytes:
    """Counts of (true, predicted) classes on the test set."""
    figure, axis, image, texts = _confusion_template(tuple(class_names))
    counts = confusion.numpy()
    image.set_data(counts)
    image.set_clim(0, max(int(counts.max()), 1))
    for text, count in zip(texts, counts.flatten().tolist(), strict=True):
        text.set_text(str(count))
    axis.set_title(title)
    return _png(figure)


@cache
def _confusion_template(class_names: tuple[str, ...]) -> tuple[Figure, Any, Any, list]:
    figure = _figure((5, 4.5))
    axis = figure.subplots()
    size = len(class_names)
    image = axis.imshow(np.zeros((size, size)), cmap="Blues", vmin=0, vmax=1)
    ticks = range(size)
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    axis.set_xticklabels(class_names, rotation=45, ha="right")
    axis.set_yticklabels(class_names)
    texts = [
        axis.text(j, i, "", ha="center", va="center", fontsize=7) for i in ticks for j in ticks
    ]
    figure.colorbar(image)
    axis.set_title("title")
    figure.tight_layout()  # once, for these class names; a cell changes only numbers
    return figure, axis, image, texts


def _figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # zlib level 1: a third of the time of the default level 6, for files ~1.3x larger.
    figure.savefig(buffer, format="png", dpi=_DPI, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()

"""The files a cell logs beside its metrics: config, loss curve, confusion matrix, weights."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import torch

from kdbench.distill import EpochMetrics, Evaluation
from kdbench.matrix import Cell
from kdbench.report import cell_figures as figures


def cell_artifacts(
    cell: Cell,
    history: Sequence[EpochMetrics],
    tested: Evaluation,
    class_names: Sequence[str],
    model: torch.nn.Module,
) -> list[tuple[str, bytes]]:
    """(name, content) of every artifact of a finished cell."""
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    return [
        ("config.json", json.dumps(cell.config(), indent=2).encode()),
        ("loss_curve.png", figures.loss_curve(history, cell.label)),
        ("confusion_matrix.png", figures.confusion_matrix(tested.confusion, class_names,
                                                          cell.label)),
        ("confusion_matrix.json", json.dumps(tested.confusion.tolist()).encode()),
        ("student_state_dict.pt", weights.getvalue()),
    ]  # fmt: skip

"""The files a cell logs beside its metrics: config, confusion matrix, weights.

Its loss and accuracy curves are the per-epoch metrics themselves, which the MLflow UI
charts (and `kdbench report` draws as Fig. 6); a PNG of them cost each cell ~70 ms.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import torch

from kdbench.distill import Evaluation
from kdbench.matrix import Cell
from kdbench.report import cell_figures as figures


def cell_artifacts(
    cell: Cell, tested: Evaluation, class_names: Sequence[str], model: torch.nn.Module
) -> list[tuple[str, bytes]]:
    """(name, content) of every artifact of a finished cell."""
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    return [
        ("config.json", json.dumps(cell.config(), indent=2).encode()),
        (
            "confusion_matrix.png",
            figures.confusion_matrix(tested.confusion, class_names, cell.label),
        ),
        ("confusion_matrix.json", json.dumps(tested.confusion.tolist()).encode()),
        ("student_state_dict.pt", weights.getvalue()),
    ]

"""Checks before a run logs anything: data intact, checkpoints loadable, backends usable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdbench.data import load_raw
from kdbench.matrix import Cell
from kdbench.teachers import load_checkpoint


def preflight(cells: Sequence[Cell], data_root: Path) -> None:
    """Raise a one-line KdbenchError for what would make cells fail: a data set missing or
    corrupt, a teacher checkpoint that does not load, a backend that cannot be used (e.g.
    credentials of real hardware)."""
    for dataset in {c.dataset.plugin: c.dataset for c in cells}.values():
        for split in ("train", "test"):
            load_raw(dataset.component, data_root, split)
    checked = set()
    for cell in cells:
        pending = [cell.teacher] if cell.teacher else []
        while pending:
            teacher = pending.pop()
            names = teacher.component.member_names()
            pending += [cell.spec.instance("teachers", name) for name in names]
            path = teacher.component.checkpoint
            if path and (teacher.name, cell.dataset.name) not in checked:
                checked.add((teacher.name, cell.dataset.name))
                classes = len(cell.dataset.component.selected_classes)
                model = teacher.component.build(classes, cell.dataset.component.image_shape)
                load_checkpoint(model, path)
    backends = {b.name: b for c in cells for b in (c.backend, c.eval_backend) if b is not None}
    for backend in backends.values():
        backend.component.preflight()

"""Which cells train stacked (`[train] stacked`), and the tasks a run hands its workers: a
group of cells that differ only in seed, or one cell."""

from __future__ import annotations

import math
from collections.abc import Sequence

from kdbench.matrix import Cell, digest

Task = tuple[Cell, ...]
"""Cells a worker runs together: several seeds of one arm trained stacked, or one cell."""


def why_not_stacked(cell: Cell) -> str | None:
    """Why `cell` cannot train stacked with its other seeds, or None."""
    if not cell.student.component.stackable:
        return f"student plugin '{cell.student.plugin}' does not declare itself stackable"
    if not cell.backend.component.stackable:  # the one it trains on
        return f"backend '{cell.backend.name}' draws shots or runs outside torch"
    if cell.distils_features:
        return "a feature distiller trains a module of its own beside the student"
    return None


def stacks(cell: Cell) -> bool:
    """Whether `cell` trains stacked: `[train] stacked` "on" where it can, "auto" where it
    can and its student says stacking pays at the batch size, "off" never."""
    mode = cell.spec.train.stacked
    if mode == "off" or why_not_stacked(cell) is not None:
        return False
    return mode == "on" or cell.student.component.stacking_pays(cell.spec.train.batch_size)


def tasks(cells: Sequence[Cell], workers: int = 1) -> list[Task]:
    """`cells` as tasks, in their order: the stacking cells of each arm that differ only in
    seed as one task, split so that there are at least `workers` tasks where cells allow."""
    groups: dict[str, list[Cell]] = {}
    order: list[str] = []
    for cell in cells:
        key = _without_seed(cell) if stacks(cell) else cell.id
        if key not in groups:
            groups[key], order = [], [*order, key]
        groups[key].append(cell)
    pieces = max(1, math.ceil(workers / len(order))) if order else 1
    found: list[Task] = []
    for key in order:
        group = groups[key]
        size = math.ceil(len(group) / min(pieces, len(group)))
        found += [tuple(group[i : i + size]) for i in range(0, len(group), size)]
    return found


def _without_seed(cell: Cell) -> str:
    config = cell.config()
    config.pop("seed")
    return digest(config)

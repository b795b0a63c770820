"""Which cells train stacked (`[train] stacked`), and the tasks a run hands its workers: a
group of cells that differ only in seed, learning rate and teacher, or one cell."""

from __future__ import annotations

import math
from collections.abc import Sequence

from kdbench.matrix import Cell, digest

Task = tuple[Cell, ...]
"""Cells a worker runs together: several seeds (and learning rates, and teachers) of one
student trained stacked, or one cell."""


def stacks(cell: Cell) -> bool:
    """Whether `cell` trains stacked: `[train] stacked` "on" where it can, "auto" where it
    can and its student says stacking pays at the batch size, "off" never. It cannot when
    its student does not declare itself stackable, when the backend it trains on draws shots
    or runs outside torch, or when a feature distiller trains a module of its own beside it."""
    mode = cell.spec.train.stacked
    can = (
        cell.student.component.stackable
        and cell.backend.component.stackable
        and not cell.distils_features
    )
    if mode == "off" or not can:
        return False
    return mode == "on" or cell.student.component.stacking_pays(cell.spec.train.batch_size)


def tasks(cells: Sequence[Cell], workers: int = 1) -> list[Task]:
    """`cells` as tasks, in their order: the stacking cells that differ only in seed,
    learning rate and teacher (all taught, or none) as one task, split so that there are at
    least `workers` tasks where cells allow."""
    groups: dict[str, list[Cell]] = {}  # in the order of each group's first cell
    for cell in cells:
        groups.setdefault(_stacking_key(cell) if stacks(cell) else cell.id, []).append(cell)
    pieces = max(1, math.ceil(workers / len(groups))) if groups else 1
    found: list[Task] = []
    for group in groups.values():
        size = math.ceil(len(group) / min(pieces, len(group)))
        found += [tuple(group[i : i + size]) for i in range(0, len(group), size)]
    return found


def _stacking_key(cell: Cell) -> str:
    """The cell's config without what stacked models may differ in: the seed, the learning
    rate (a per-model scale of one optimizer's step) and the teacher (its outputs are each
    model's data; whether there is one decides the loss, and so stays)."""
    config = cell.config()
    config.pop("seed")
    config["train"].pop("lr")
    config["teacher"] = config["teacher"] is not None
    return digest(config)

"""What running cells reports: each cell's outcome, and the events a display draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kdbench.distill import EpochMetrics
from kdbench.matrix import Cell
from kdbench.results import Result


@dataclass
class CellOutcome:
    """How one cell ended, in this invocation or an earlier one."""

    cell: Cell
    run_id: str
    status: str  # FINISHED, FAILED, SKIPPED (finished by another invocation), HELD (running in one)
    result: Result | None = None
    error: str | None = None
    seconds: float = 0.0
    taken_from: str | None = None  # host:pid of an earlier holder whose lease lapsed


class Events:
    """What a runner tells its display; the CLI draws a rich progress from these."""

    def phase(self, cell: Cell, text: str, total: int | None = None) -> None:
        """`cell` entered a phase ("loading data", "teacher NAME"...) of `total` steps."""

    def epoch(self, cell: Cell, metrics: EpochMetrics) -> None:
        """One epoch of the current phase is done."""

    def done(self, outcome: CellOutcome) -> None:
        """A cell finished, failed, or was found finished already."""

    def already_done(self, outcomes: Sequence[CellOutcome]) -> None:
        """The cells an earlier run finished, found at the start (SKIPPED): one event, not
        one per cell, since a resumed sweep may find thousands."""
        for outcome in outcomes:
            self.done(outcome)

"""The rich progress `kdbench run` draws from a run's events: the cells, and the current phase."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdbench.distill import EpochMetrics
from kdbench.matrix import Cell
from kdbench.run.events import CellOutcome, Events


class _Display(Events):
    def __init__(self, progress: Progress, cells: int):
        self.progress = progress
        self.overall = progress.add_task("cells", total=cells)
        self.current = progress.add_task("", total=None)

    def phase(self, cell: Cell, text: str, total: int | None = None) -> None:
        self.progress.reset(self.current, total=total, description=f"  {cell.label}: {text}")

    def epoch(self, cell: Cell, metrics: EpochMetrics) -> None:
        self.progress.advance(self.current)

    def done(self, outcome: CellOutcome) -> None:
        label = escape(outcome.cell.label)
        if outcome.status == "HELD":  # not done: another invocation runs it
            line = f"waiting for {label}: {escape(outcome.error or '')}"
            self.progress.console.print(line, highlight=False, soft_wrap=True)
            return
        if outcome.status == "FAILED":
            line = f"[red]FAILED[/red] {label}: {escape(outcome.error or '')}"
        else:
            how = "already in MLflow" if outcome.status == "SKIPPED" else f"{outcome.seconds:.0f} s"
            assert outcome.result is not None
            line = f"done {label}: test accuracy {100 * outcome.result.test_accuracy:.1f}% ({how})"
        self.progress.console.print(line, highlight=False, soft_wrap=True)
        self.progress.advance(self.overall)

    def already_done(self, outcomes: Sequence[CellOutcome]) -> None:
        if outcomes:  # a line for them all: a resumed sweep's thousands drown what runs
            cells = "1 cell" if len(outcomes) == 1 else f"{len(outcomes)} cells"
            self.progress.console.print(f"{cells} already in MLflow", highlight=False)
            self.progress.advance(self.overall, len(outcomes))


@contextmanager
def progress_display(console: Console, cells: int) -> Iterator[Events]:
    """Events that draw a progress of `cells` cells on `console`, a line per finished cell."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield _Display(progress, cells)

"""One cell's lifecycle: its child run, its params, and a failure recorded rather than raised."""

from __future__ import annotations

import platform
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

import torch

import kdbench
from kdbench.errors import KdbenchError
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.results import ERROR_TAG, cell_tags
from kdbench.run.events import CellOutcome, Events
from kdbench.run.training import train_cell
from kdbench.tracking import CELL_ID_TAG, ROLE_TAG, Tracker, flatten


def versions(cell: Cell, registry: Registry) -> dict[str, str]:
    """kdbench's version and that of each plugin the cell uses."""
    found = {
        "kdbench.version": kdbench.__version__,
        "torch.version": torch.__version__,
        "python.version": platform.python_version(),
    }
    for instance in (cell.dataset, cell.teacher, cell.student, cell.encoder, cell.backend):
        if instance is not None:
            owner = registry.owner(instance.kind, instance.plugin)
            found[f"plugin.{owner.name}.version"] = owner.version
    return found


def run_cell(
    cell: Cell,
    *,
    registry: Registry,
    tracker: Tracker,
    parent_id: str,
    data_root: Path,
    cache: Path,
    events: Events,
) -> CellOutcome:
    """Train and evaluate one cell into its own child run; a failure is recorded, not raised."""
    tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **cell_tags(cell)}
    run_id = tracker.start_run(cell.label, tags, parent=parent_id)
    started = time.perf_counter()
    try:
        tracker.log_params(run_id, {**flatten(cell.config()), **versions(cell, registry)})
        with ExitStack() as opened:  # the cell's circuits close even when it fails
            result = train_cell(cell, tracker, run_id, data_root, cache, events, opened)
    except (Exception, KeyboardInterrupt) as exc:
        reason = str(exc) if isinstance(exc, KdbenchError) else f"{type(exc).__name__}: {exc}"
        tracker.set_tag(run_id, ERROR_TAG, reason[:5000])
        if not isinstance(exc, (KdbenchError, KeyboardInterrupt)):
            tracker.log_files(run_id, [("traceback.txt", traceback.format_exc().encode())])
        tracker.finish(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return CellOutcome(
            cell, run_id, "FAILED", error=reason, seconds=time.perf_counter() - started
        )
    seconds = time.perf_counter() - started
    tracker.log_metrics(run_id, {"wall_seconds": seconds})
    tracker.finish(run_id)
    return CellOutcome(cell, run_id, "FINISHED", result, seconds=seconds)

"""One cell's lifecycle: its child run, its params, and a failure recorded rather than raised."""

from __future__ import annotations

import platform
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

import torch

import kdbench
from kdbench.errors import KdbenchError, TrackingError
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.results import ERROR_TAG, Result, cell_tags
from kdbench.run.events import CellOutcome, Events
from kdbench.run.training import train_cell
from kdbench.tracking import CELL_ID_TAG, ROLE_TAG, Tracker, flatten


def versions(cell: Cell, registry: Registry) -> dict[str, str]:
    """kdbench's version and that of each plugin the cell uses, and the shape of the data
    set's inputs (logged, not part of the cell's id: the plugin's version decides it)."""
    found = {
        "dataset.input_shape": cell.dataset.component.shape_text(),
        "kdbench.version": kdbench.__version__,
        "torch.version": torch.__version__,
        "python.version": platform.python_version(),
    }
    instances = (cell.dataset, cell.teacher, cell.student, cell.encoder, cell.distiller,
                 *(backend for backend, _ in cell.tested_on))  # fmt: skip
    for instance in instances:
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
    since_ms: int = 0,
) -> CellOutcome:
    """Train and evaluate one cell into its own child run; a failure is recorded, not raised.

    The run is claimed first: a cell another run finished (since `since_ms`) is SKIPPED, one
    another live process is running is HELD, and neither is run twice.
    """
    tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **cell_tags(cell)}
    claim = tracker.claim(cell.id, cell.label, tags, parent_id, since_ms)
    if claim.state == "finished":
        return CellOutcome(cell, claim.run_id, "SKIPPED", Result.from_run(claim.run))
    if claim.state == "held":
        return CellOutcome(cell, claim.run_id, "HELD", error=claim.owner)
    run_id = claim.run_id
    started = time.perf_counter()
    try:
        tracker.log_params(run_id, {**flatten(cell.config()), **versions(cell, registry)})
        with ExitStack() as opened:  # the cell's circuits close even when it fails
            result = train_cell(cell, tracker, run_id, data_root, cache, events, opened)
    except TrackingError:
        raise  # the store itself failed: nothing can be recorded in it
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

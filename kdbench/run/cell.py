"""One cell's lifecycle: its child run, its params, and a failure recorded rather than raised."""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import torch

import kdbench
from kdbench.distill import FitResult
from kdbench.errors import KdbenchError, TrackingError
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.results import ERROR_TAG, STACKED_TAG, Result, cell_tags
from kdbench.run.events import CellOutcome, Events
from kdbench.run.stacking import Task, stacks
from kdbench.run.training import CellTraining, train_stacked
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
    instances = (
        cell.dataset,
        cell.teacher,
        cell.student,
        cell.encoder,
        cell.distiller,
        *(backend for backend, _ in cell.tested_on),
    )
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
    run_id = _claim(cell, tracker, parent_id, since_ms)
    if isinstance(run_id, CellOutcome):
        return run_id
    started = time.perf_counter()
    training = None
    try:
        with ExitStack() as opened:  # the cell's circuits close even when it fails
            training = _start(cell, run_id, registry, tracker, data_root, cache, events, opened)
            result = training.finish(training.fit(), started)
    except (Exception, KeyboardInterrupt) as exc:
        tags = training.tags if training else {}
        return _failed(tracker, cell, run_id, exc, time.perf_counter() - started, tags)
    return _finished(tracker, cell, run_id, result, time.perf_counter() - started)


def run_task(
    task: Task,
    *,
    registry: Registry,
    tracker: Tracker,
    parent_id: str,
    data_root: Path,
    cache: Path,
    events: Events,
    since_ms: int = 0,
) -> Iterator[CellOutcome]:
    """Run a task's cells, yielding each one's outcome: one cell alone (`run_cell`), or the
    seeds of one arm trained stacked, each claimed, logged and failing in its own run.

    A stacked cell's `wall_seconds` is its share of the group's time and its own testing and
    logging (a cell's last store writes are not in it). Stopped, every claimed cell not
    finished yet is marked KILLED.
    """
    if len(task) == 1 and not stacks(task[0]):
        yield run_cell(
            task[0],
            registry=registry,
            tracker=tracker,
            parent_id=parent_id,
            data_root=data_root,
            cache=cache,
            events=events,
            since_ms=since_ms,
        )
        return
    started = time.perf_counter()
    claimed: list[tuple[Cell, str]] = []
    for cell in task:
        run_id = _claim(cell, tracker, parent_id, since_ms, {STACKED_TAG: str(len(task))})
        if isinstance(run_id, CellOutcome):
            yield run_id
        else:
            claimed.append((cell, run_id))
    ended: list[CellOutcome] = []  # outcomes of the claimed cells, as they end
    try:
        with ExitStack() as group:  # every cell's circuits close, whatever happens
            trainings: list[tuple[CellTraining, str]] = []
            for cell, run_id in claimed:
                try:
                    opened = group.enter_context(ExitStack())
                    training = _start(
                        cell, run_id, registry, tracker, data_root, cache, events, opened
                    )
                    trainings.append((training, run_id))
                except Exception as exc:
                    ended.append(_failed(tracker, cell, run_id, exc, 0.0))
                    yield ended[-1]
            if not trainings:
                return
            try:
                fitted: list[FitResult | Exception] = list(
                    train_stacked([training for training, _ in trainings])
                )
            except Exception as exc:  # the group's training itself failed: each cell did
                fitted = [exc] * len(trainings)
            share = (time.perf_counter() - started) / len(trainings)
            for (training, run_id), fit_result in zip(trainings, fitted, strict=True):
                finishing = time.perf_counter()
                try:
                    if isinstance(fit_result, Exception):
                        raise fit_result
                    result = training.finish(fit_result, finishing - share)
                except Exception as exc:
                    failed = _failed(tracker, training.cell, run_id, exc, share, training.tags)
                    ended.append(failed)
                else:
                    seconds = share + time.perf_counter() - finishing
                    ended.append(_finished(tracker, training.cell, run_id, result, seconds))
                yield ended[-1]
    except KeyboardInterrupt as exc:
        done = {outcome.run_id for outcome in ended}
        for _, run_id in claimed:
            if run_id not in done:
                _record_failure(tracker, run_id, exc)
        raise


def _claim(
    cell: Cell, tracker: Tracker, parent_id: str, since_ms: int, tags: dict[str, str] | None = None
) -> str | CellOutcome:
    """Claim the cell's child run: its id when the cell is ours to run, else its outcome (a
    cell another run finished since `since_ms` is SKIPPED, one another live process runs is
    HELD: neither is run twice)."""
    tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **(tags or {}), **cell_tags(cell)}
    claim = tracker.claim(cell.id, cell.label, tags, parent_id, since_ms)
    if claim.state == "finished":
        return CellOutcome(cell, claim.run_id, "SKIPPED", Result.from_run(claim.run))
    if claim.state == "held":
        return CellOutcome(
            cell, claim.run_id, "HELD", error=f"another kdbench run has it ({claim.owner})"
        )
    return claim.run_id


def _start(
    cell: Cell,
    run_id: str,
    registry: Registry,
    tracker: Tracker,
    data_root: Path,
    cache: Path,
    events: Events,
    opened: ExitStack,
) -> CellTraining:
    """Log the claimed cell's params and prepare its training (data, teacher, student)."""
    tracker.log_params(run_id, {**flatten(cell.config()), **versions(cell, registry)})
    return CellTraining(cell, tracker, run_id, data_root, cache, events, opened)


def _record_failure(
    tracker: Tracker, run_id: str, exc: BaseException, tags: Mapping[str, str] | None = None
) -> str:
    """Record why a cell's run ended early (KILLED when stopped, else FAILED), with the
    `tags` its training had gathered; its reason."""
    reason = str(exc) if isinstance(exc, KdbenchError) else f"{type(exc).__name__}: {exc}"
    tracker.set_tags(run_id, {**(tags or {}), ERROR_TAG: reason[:5000]})
    if not isinstance(exc, (KdbenchError, KeyboardInterrupt)):
        trace = "".join(traceback.format_exception(exc)).encode()
        tracker.log_files(run_id, [("traceback.txt", trace)])
    tracker.finish(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
    return reason


def _failed(
    tracker: Tracker,
    cell: Cell,
    run_id: str,
    exc: BaseException,
    seconds: float,
    tags: Mapping[str, str] | None = None,
) -> CellOutcome:
    """A cell's failure recorded (with `tags`): its outcome; raised again if the store
    failed (nothing can be recorded in it) or the run was stopped (its run marked KILLED)."""
    if isinstance(exc, TrackingError):
        raise exc
    if not isinstance(exc, KeyboardInterrupt) and not tracker.holds(run_id):
        # Its lease lapsed and another run has the cell: this failure is not the cell's end.
        return CellOutcome(cell, run_id, "HELD", error="its lease lapsed and another run took it")
    reason = _record_failure(tracker, run_id, exc, tags)
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    return CellOutcome(cell, run_id, "FAILED", error=reason, seconds=seconds)


def _finished(
    tracker: Tracker, cell: Cell, run_id: str, result: Result, seconds: float
) -> CellOutcome:
    if not tracker.finish(run_id):  # slow past its lease: another invocation has the cell
        return CellOutcome(cell, run_id, "HELD", error="its lease lapsed and another run took it")
    return CellOutcome(cell, run_id, "FINISHED", result, seconds=seconds)

"""One `kdbench run` over a matrix: stale runs, resume, the parent run, the fail-fast loop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing, suppress
from pathlib import Path

from kdbench.config import Spec
from kdbench.errors import TrackingError
from kdbench.leases import LEASE_TAG, LeaseWatch
from kdbench.ledger import finished_results, write_ledger
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.results import Result
from kdbench.run.events import CellOutcome, Events
from kdbench.run.executors import Executor, Job, processes, ray_tasks, serial
from kdbench.run.stacking import Task, tasks
from kdbench.stores import redact_passwords
from kdbench.teachers import checkpoint_path, networks_to_train
from kdbench.tracking import ROLE_TAG, Tracker


def run_matrix(
    spec: Spec,
    cells: Sequence[Cell],
    *,
    registry: Registry,
    tracker: Tracker,
    data_root: Path,
    cache: Path,
    events: Events,
    rerun: bool = False,
    fail_fast: bool = False,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
) -> list[CellOutcome]:
    """Run the cells under one parent run, skipping cells an earlier invocation finished.

    A cell is finished when a FINISHED child run carries its id, and the id is the hash of
    the resolved config, so a changed option reruns it. Runs left RUNNING by a process that
    died are marked KILLED first. With `jobs` > 1, cells run in that many processes; with
    `executor="ray"`, each cell is a Ray task on the cluster at `address` (or a local one).
    Cells that differ only in seed, learning rate and teacher train stacked, as one task, where
    `[train] stacked` says so (`kdbench.run.stacking`).
    """
    tracker.close_stale()
    finished = {} if rerun else finished_results(tracker)
    parent = tracker.start_run(
        Path(spec.file).name, {ROLE_TAG: "invocation", "kdbench.config_file": spec.file}
    )
    config = redact_passwords(
        Path(spec.file).read_bytes(), tracker.uri, spec.experiment.tracking_uri
    )
    tracker.log_files(parent, [(Path(spec.file).name, config)])
    since_ms = tracker.client.get_run(parent).info.start_time if rerun else 0
    job = Job(
        tracker.uri, tracker.experiment_name, parent, data_root, cache, since_ms, tracker.lease
    )
    outcomes: list[CellOutcome] = []
    taken: dict[str, str] = {}  # cell id -> host:pid of the holder whose lease lapsed
    watch = LeaseWatch(POLL_S)  # one for the invocation: its clocks run across rounds
    todo = []
    for cell in cells:
        if cell.id in finished:
            result = finished[cell.id]
            outcomes.append(CellOutcome(cell, result.run_id or "", "SKIPPED", result))
        else:
            todo.append(cell)
    events.already_done(outcomes)
    execute: Executor
    if executor == "ray":
        execute, todo = ray_tasks(address), teachers_first(todo, spec, cache)
    elif jobs > 1 and len(todo) > 1:
        execute, todo = processes(jobs), teachers_first(todo, spec, cache)
    else:
        execute = serial(registry, tracker, events)
    try:
        while todo:
            held = _run_round(execute, tasks(todo, jobs), job, outcomes, events, fail_fast)
            todo = _wait_for(held, tracker, since_ms, outcomes, events, taken, watch)
    except BaseException:
        # Stopped: the workers are stopped by now; what they left RUNNING is marked KILLED
        # here (unless the store is what failed).
        with suppress(TrackingError):
            tracker.close_children(parent)
        with suppress(TrackingError):  # a ledger is a speed-up: without one, runs are read
            write_ledger(tracker, parent, _finished_here(outcomes))
        with suppress(TrackingError):
            tracker.finish(parent, "KILLED")
        raise
    for outcome in outcomes:
        outcome.taken_from = taken.get(outcome.cell.id)
    failed = any(o.status == "FAILED" for o in outcomes)
    with suppress(TrackingError):  # a ledger is a speed-up: without one, runs are read
        write_ledger(tracker, parent, _finished_here(outcomes))
    tracker.finish(parent, "FAILED" if failed else "FINISHED")
    order = {cell.id: i for i, cell in enumerate(cells)}
    return sorted(outcomes, key=lambda o: order[o.cell.id])


def _finished_here(outcomes: Sequence[CellOutcome]) -> list[Result]:
    """The results of the cells this invocation finished (not those found done)."""
    return [o.result for o in outcomes if o.status == "FINISHED" and o.result is not None]


def _run_round(
    execute: Executor,
    todo: Sequence[Task],
    job: Job,
    outcomes: list[CellOutcome],
    events: Events,
    fail_fast: bool,
) -> list[CellOutcome]:
    """Run the tasks, adding their cells' outcomes; return those held by another invocation."""
    held = []
    completed = execute(todo, job)
    # One loop whatever the executor; leaving it closes the generator, whose cleanup
    # cancels the cells not yet started (and stops the running ones).
    with closing(completed):
        for outcome in completed:
            events.done(outcome)
            if outcome.status == "HELD":
                held.append(outcome)
                continue
            outcomes.append(outcome)
            if outcome.status == "FAILED" and fail_fast:
                return []
    return held


# How often a run waiting for cells that another invocation runs looks at them again.
POLL_S = 2.0


def _wait_for(
    held: list[CellOutcome],
    tracker: Tracker,
    since_ms: int,
    outcomes: list[CellOutcome],
    events: Events,
    taken: dict[str, str],
    watch: LeaseWatch,
) -> list[Cell]:
    """Wait for the cells that other invocations run, here or on other hosts; return those
    whose holder is gone, to run here: a process of this host that died, or one elsewhere
    whose lease lapsed (its run marked KILLED, its host:pid kept in `taken`)."""
    waiting, free = [outcome.cell for outcome in held], []
    first = True
    while waiting:
        if not first:
            time.sleep(POLL_S)
        first, still, invocations = False, [], {}
        for cell in waiting:
            claim = tracker.holder(cell.id, since_ms)
            if claim is None:  # its process died: the cell is ours to run
                free.append(cell)
            elif claim.state == "finished":
                outcomes.append(
                    CellOutcome(cell, claim.run_id, "SKIPPED", Result.from_run(claim.run))
                )
                events.done(outcomes[-1])
            elif claim.local:  # its process lives: waited for
                still.append(cell)
            elif LEASE_TAG not in claim.run.data.tags:  # an older kdbench's: left to it, said
                outcomes.append(CellOutcome(cell, claim.run_id, "HELD", error=claim.owner))
            elif lapsed := watch.lapsed(claim.run, tracker.heartbeat(claim, invocations)):
                if tracker.take_over(claim, lapsed):
                    taken[cell.id] = claim.owner
                free.append(cell)
            else:
                still.append(cell)
        if free:  # run these now; the others are waited for again after them
            return free + still
        waiting = still
    return free


def teachers_first(cells: Sequence[Cell], spec: Spec, cache: Path) -> list[Cell]:
    """`cells` with, first, one cell for each teacher network not trained yet.

    For parallel executors: the workers then train different teachers side by side, instead
    of one training while the others wait on its cache lock.
    """
    leading, rest, seen = [], [], set()
    for cell in cells:
        keys = []
        if cell.teacher is not None:
            members = cell.spec.instances["teachers"].__getitem__  # the cell's own config
            keys = [k for _, k in networks_to_train(cell.teacher, cell.dataset, cell.seed, members)]
        untrained = [k for k in keys if k not in seen and not checkpoint_path(cache, k).exists()]
        seen.update(keys)
        (leading if untrained else rest).append(cell)
    return leading + rest

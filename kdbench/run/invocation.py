"""One `kdbench run` over a matrix: stale runs, resume, the parent run, the fail-fast loop."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from kdbench.config import Spec
from kdbench.matrix import Cell
from kdbench.plugins import Registry
from kdbench.results import Result
from kdbench.run.events import CellOutcome, Events
from kdbench.run.executors import Executor, Job, processes, ray_tasks, serial
from kdbench.teachers import checkpoint_path, keys_to_train
from kdbench.tracking import ROLE_TAG, Tracker, redact_passwords


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
    """
    tracker.close_stale()
    finished = {} if rerun else tracker.finished_cells()
    parent = tracker.start_run(
        Path(spec.file).name, {ROLE_TAG: "invocation", "kdbench.config_file": spec.file}
    )
    config = redact_passwords(
        Path(spec.file).read_bytes(), tracker.uri, spec.experiment.tracking_uri
    )
    tracker.log_files(parent, [(Path(spec.file).name, config)])
    outcomes: list[CellOutcome] = []
    todo = []
    for cell in cells:
        if cell.id in finished:
            run = finished[cell.id]
            outcomes.append(CellOutcome(cell, run.info.run_id, "SKIPPED", Result.from_run(run)))
            events.done(outcomes[-1])
        else:
            todo.append(cell)
    execute: Executor
    if executor == "ray":
        execute, todo = ray_tasks(address), teachers_first(todo, spec, cache)
    elif jobs > 1 and len(todo) > 1:
        execute, todo = processes(jobs), teachers_first(todo, spec, cache)
    else:
        execute = serial(registry, tracker, events)
    completed = execute(todo, Job(tracker.uri, tracker.experiment_name, parent, data_root, cache))
    try:
        # One loop whatever the executor; leaving it closes the generator, whose cleanup
        # cancels the cells not yet started.
        with closing(completed):
            for outcome in completed:
                outcomes.append(outcome)
                events.done(outcome)
                if outcome.status == "FAILED" and fail_fast:
                    break
    except BaseException:
        tracker.finish(parent, "KILLED")
        raise
    failed = any(o.status == "FAILED" for o in outcomes)
    tracker.finish(parent, "FAILED" if failed else "FINISHED")
    order = {cell.id: i for i, cell in enumerate(cells)}
    return sorted(outcomes, key=lambda o: order[o.cell.id])


def teachers_first(cells: Sequence[Cell], spec: Spec, cache: Path) -> list[Cell]:
    """`cells` with, first, one cell for each teacher network not trained yet.

    For parallel executors: the workers then train different teachers side by side, instead
    of one training while the others wait on its cache lock.
    """
    leading, rest, seen = [], [], set()
    for cell in cells:
        keys = []
        if cell.teacher is not None:
            keys = keys_to_train(cell.teacher, cell.dataset, cell.seed,
                                 lambda name: spec.instance("teachers", name))  # fmt: skip
        untrained = [k for k in keys if k not in seen and not checkpoint_path(cache, k).exists()]
        seen.update(keys)
        (leading if untrained else rest).append(cell)
    return leading + rest

"""Each invocation's ledger of the cells it finished, so that a resume through a tracking
server need not read every cell's run.

A server answers each run it finds whole (its tags, params and metrics: ~3.5 ms a run here),
so a resume of 10,000 finished cells spent 35 s of its 50 s reading them (perf/README.md).
An invocation therefore logs, as it ends, the results of the cells it finished as one
artifact (`LEDGER_FILE`), then tags itself with their count (`LEDGER_TAG`: the ledger is
whole); a resume reads the invocation runs (a few) and their ledgers.

A ledger need only be sound, not complete: a finished cell no ledger lists is claimed like
any other, and its claim finds the FINISHED run (one search; the cell is not run again).
For an invocation without a ledger (killed outright, still running, an older kdbench's) its
finished cell runs are read instead. Runs deleted since (MLflow's UI) are read too, being
few, and their cells are not done. Not seen: a run purged since (`mlflow gc`), whose cell
stays done until `--rerun`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdbench.errors import TrackingError
from kdbench.results import CELL_ID_TAG, Result
from kdbench.stores import is_server
from kdbench.tracking import OLDEST_FIRST, ROLE_TAG, SERVER_SEARCH_THREADS, Tracker

LEDGER_TAG = "kdbench.ledger"  # on an invocation run: how many cells its ledger lists
LEDGER_FILE = "kdbench-ledger.json"
LEDGER_VERSION = 1  # a ledger of another version is not read: its children are


def write_ledger(tracker: Tracker, invocation: str, finished: Iterable[Result]) -> None:
    """Log the results of the cells `invocation` finished as its ledger, then its tag."""
    cells = [asdict(result) for result in finished]
    content = json.dumps({"version": LEDGER_VERSION, "cells": cells})
    tracker.log_files(invocation, [(LEDGER_FILE, content.encode())])
    tracker.set_tags(invocation, {LEDGER_TAG: str(len(cells))})


def finished_results(tracker: Tracker) -> dict[str, Result]:
    """The result of each finished cell of the experiment, by cell id: its latest run's.

    Through a tracking server, from the invocations' ledgers; from a SQLite store (read
    table by table, fast) or another store, from the cell runs themselves."""
    if not is_server(tracker.uri):
        return {run.data.tags[CELL_ID_TAG]: Result.from_run(run) for run in tracker.cell_runs()}
    invocations = tracker.search(f"tags.`{ROLE_TAG}` = 'invocation'", order_by=OLDEST_FIRST)
    with ThreadPoolExecutor(SERVER_SEARCH_THREADS) as pool:
        listed = list(pool.map(lambda run: _finished_by(tracker, run), invocations))
    finished = f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'"
    deleted = {run.info.run_id for run in tracker.search(finished, deleted=True)}
    latest: dict[str, Result] = {}
    for results in listed:  # oldest invocation first: the newest run wins
        for result in results:
            if result.run_id not in deleted and result.cell_id is not None:
                latest[result.cell_id] = result
    return latest


def _finished_by(tracker: Tracker, invocation: Any) -> list[Result]:
    """The results of the cells `invocation` finished: its ledger's, else its cell runs'."""
    run_id = invocation.info.run_id
    if LEDGER_TAG in invocation.data.tags:
        try:
            return _read_ledger(tracker, run_id)
        except (TrackingError, OSError, ValueError, TypeError, KeyError):
            pass  # unreadable (its artifact gone, another version): its runs are read
    return [Result.from_run(run) for run in tracker.cell_runs(parent=run_id)]


def _read_ledger(tracker: Tracker, run_id: str) -> list[Result]:
    with tempfile.TemporaryDirectory() as folder:
        path = tracker.client.download_artifacts(run_id, LEDGER_FILE, folder)
        content = json.loads(Path(path).read_text())
    if content["version"] != LEDGER_VERSION:
        raise ValueError(f"ledger version {content['version']}")
    return [Result(**cell) for cell in content["cells"]]

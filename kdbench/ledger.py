"""Each invocation's ledger of the cells it finished, so that a resume through a tracking
server need not read every cell's run.

A server answers each run it finds whole (its tags, params and metrics: ~3.5 ms a run here),
so a resume of 10,000 finished cells spent 35 s of its 50 s reading them (perf/README.md).
An invocation therefore logs, as it ends or is stopped, the results of the cells it
finished as one artifact (`LEDGER_FILE`), then tags itself with their count (`LEDGER_TAG`:
the ledger is whole); a resume reads the invocation runs (a few) and their ledgers.

A ledger need only be sound, not complete: a finished cell no ledger lists is claimed like
any other, and its claim finds the FINISHED run (one search; the cell is not run again).
For an invocation without a ledger (killed outright, still running, an older kdbench's) its
finished cell runs are read instead, as for one whose ledger cannot be read or disagrees
with its tag. The cell runs deleted since (MLflow's UI) are read too (usually few: each is
read whole) and are not done. Not seen: a run purged since (`mlflow gc`), whose cell stays
done until `--rerun`, or until its invocation's `LEDGER_TAG` is deleted (its cell runs are
then read).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from kdbench.errors import TrackingError
from kdbench.results import Result
from kdbench.stores import is_server
from kdbench.tracking import (
    FINISHED_CELLS,
    INVOCATIONS,
    OLDEST_FIRST,
    SERVER_SEARCH_THREADS,
    Tracker,
)

LEDGER_TAG = "kdbench.ledger"  # on an invocation run: how many cells its ledger lists
LEDGER_FILE = "kdbench-ledger.json"
# Raised whenever Result's fields change (tests/run/test_ledger.py pins them): a ledger of
# another version is not read (its invocation's cell runs are).
LEDGER_VERSION = 1


def write_ledger(tracker: Tracker, invocation: str, finished: Iterable[Result]) -> None:
    """Log the results of the cells `invocation` finished as its ledger, then its tag."""
    cells = [asdict(result) for result in finished]
    content = json.dumps({"version": LEDGER_VERSION, "cells": cells})
    tracker.log_files(invocation, [(LEDGER_FILE, content.encode())])
    tracker.set_tags(invocation, {LEDGER_TAG: str(len(cells))})


def finished_results(tracker: Tracker) -> dict[str, Result]:
    """The result of each finished cell of the experiment, by cell id: its newest
    invocation's (its newest run's, on a store read run by run).

    Through a tracking server, from the invocations' ledgers; from a SQLite store (read
    table by table, fast) or another store, from the cell runs themselves."""
    if not is_server(tracker.uri):
        return {result.cell_id: result for result in _results(tracker.cell_runs())}
    invocations = list(tracker.search(INVOCATIONS, order_by=OLDEST_FIRST))
    with ThreadPoolExecutor(SERVER_SEARCH_THREADS) as pool:
        ledgers = list(pool.map(lambda run: _ledger(tracker, run), invocations))
    deleted = {run.info.run_id for run in tracker.search(FINISHED_CELLS, deleted=True)}
    latest = {}
    for invocation, ledger in zip(invocations, ledgers, strict=True):  # oldest first
        if ledger is None:  # none, or unreadable: its cell runs (in shards, side by side)
            ledger = list(_results(tracker.cell_runs(parent=invocation.info.run_id)))
        for result in ledger:
            if result.run_id not in deleted:
                latest[result.cell_id] = result
    return latest


def _ledger(tracker: Tracker, invocation: Any) -> list[Result] | None:
    """The results the ledger of `invocation` lists; None if it has none it can read."""
    count = invocation.data.tags.get(LEDGER_TAG)
    if count is None:
        return None
    try:
        content = json.loads(tracker.read_file(invocation.info.run_id, LEDGER_FILE))
        if content["version"] != LEDGER_VERSION:
            raise ValueError(f"version {content['version']}, not {LEDGER_VERSION}")
        results = [Result(**cell) for cell in content["cells"]]
        if str(len(results)) != count:
            raise ValueError(f"{len(results)} cells, its tag says {count}")
    except (TrackingError, ValueError, TypeError, KeyError) as exc:
        logging.getLogger(__name__).warning(
            "the ledger of invocation %s is not read (%s): its cell runs are",
            invocation.info.run_id,
            exc,
        )
        return None
    return results


def _results(runs: Iterable[Any]) -> Iterator[Result]:
    """The result each finished cell run records; a run that does not decode as one (not
    kdbench's, or damaged) is left out: its cell's claim still finds it."""
    for run in runs:
        try:
            result = Result.from_run(run)
        except (KeyError, ValueError, TypeError):
            continue
        if result.cell_id is not None:
            yield result

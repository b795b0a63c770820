"""A SQLite store's finished cell runs (and a run's status), read with one query per table
instead of MLflow's ORM.

MLflow's `search_runs` builds an ORM object for every tag, param and metric: for a store of
10,000 cells (~54 each) that took 19 s of a 32 s resume (perf/README.md). The same rows,
read from MLflow's tables (runs, tags, params, latest_metrics, unchanged since MLflow 1.x),
take a fraction of that; a run's status is one row, where `get_run` reads the whole run. The
runs come back as light objects with the attributes kdbench reads: `info.run_id`,
`info.start_time`, `info.status`, `data.tags`, `data.params`, `data.metrics` (each metric's
latest value, as MLflow gives it).
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from types import SimpleNamespace

# The FINISHED, active runs of an experiment that carry a tag key = value, oldest first.
_RUNS = """
SELECT r.run_uuid, r.start_time, r.status FROM runs r
JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = :key AND t.value = :value
WHERE r.experiment_id = :experiment AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'
"""


def _read_only(path: str) -> closing[sqlite3.Connection]:
    """The SQLite file at `path`, opened read-only (closed with the block)."""
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30))


def finished_runs(path: str, experiment_id: str, key: str, value: str) -> list[SimpleNamespace]:
    """The FINISHED runs of `experiment_id` tagged `key` = `value`, oldest first (ties by
    run id), from the SQLite file at `path` (opened read-only); sqlite3.Error if its tables
    are not MLflow's as kdbench knows them."""
    args = {"key": key, "value": value, "experiment": int(experiment_id)}
    with _read_only(path) as db:
        found = {
            run_id: SimpleNamespace(
                info=SimpleNamespace(run_id=run_id, start_time=start, status=status),
                data=SimpleNamespace(tags={}, params={}, metrics={}),
            )
            for run_id, start, status in db.execute(_RUNS, args)
        }
        # Each query reads the store as it is then: a run that finished since the first is
        # left for the next read (its rows skipped), not half read.
        chosen = f"SELECT run_uuid FROM ({_RUNS})"
        for table, field in (("tags", "tags"), ("params", "params")):
            query = f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({chosen})"
            for run_id, name, content in db.execute(query, args):
                if run_id in found:
                    getattr(found[run_id].data, field)[name] = content
        query = (
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({chosen})"
        )
        for run_id, name, number, is_nan in db.execute(query, args):
            if run_id in found:
                found[run_id].data.metrics[name] = math.nan if is_nan else float(number)
    return sorted(found.values(), key=lambda run: (run.info.start_time, run.info.run_id))


def run_status(path: str, run_id: str) -> str | None:
    """The status of run `run_id` (None if there is none) in the SQLite file at `path`;
    sqlite3.Error if its tables are not MLflow's as kdbench knows them."""
    with _read_only(path) as db:
        row = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    return None if row is None else row[0]

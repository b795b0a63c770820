"""A store of any size: every search pages through MLflow's results (nothing is cut at a
page), and a SQLite store gets the index that keeps a cell's lookup from reading every run."""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading

import pytest

import kdbench.tracking
from kdbench.config import load_spec
from kdbench.ledger import finished_results
from kdbench.matrix import expand
from kdbench.results import cell_tags
from kdbench.sqlite_runs import run_status
from kdbench.stores import sqlite_path
from kdbench.tracking import CELL_ID_TAG, ROLE_TAG, Tracker
from tests.helpers import TINY


def finished_store(uri, write_config, registry, seeds=7):
    """A real store at `uri` with `seeds` FINISHED cell runs (of a config with as many
    seeds), made as run_cell does."""
    seeds_line = f"seeds = {list(range(seeds))}"
    text = TINY.format(name="pages").replace("seeds = [0]", seeds_line)
    cells = [c for c in expand(load_spec(write_config(text), registry)) if c.teacher is None]
    tracker = Tracker(uri, "pages")
    parent = tracker.start_run("pages", {ROLE_TAG: "invocation"})
    for cell in cells:
        tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **cell_tags(cell)}
        claim = tracker.claim(cell.id, cell.label, tags, parent)
        tracker.log_metrics(claim.run_id, {"test_accuracy": 0.5})
        tracker.finish(claim.run_id)
    return tracker, cells


@pytest.fixture
def store(tmp_path, write_config, registry):
    """A SQLite store with 7 FINISHED cell runs."""
    return finished_store(f"sqlite:///{tmp_path / 'mlflow.db'}", write_config, registry)


def serial_cell_runs(tracker):
    """The finished cell runs as one MLflow search reads them, page after page."""
    return list(
        tracker.search(
            f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )
    )


def test_searches_page_through_every_run(store, monkeypatch):
    tracker, cells = store
    monkeypatch.setattr(kdbench.tracking, "SEARCH_PAGE", 2)  # 7 runs: 4 pages
    found = list(tracker.search(f"tags.`{ROLE_TAG}` = 'cell'"))
    assert len(found) == 7
    # A cell whose finished runs span pages is still found finished.
    assert tracker.holder(cells[-1].id).state == "finished"


def test_a_sqlite_store_is_read_as_mlflow_reads_it(store):
    """cell_runs reads a SQLite store's tables directly: the same runs, in the same order,
    with the same tags, params and metrics as MLflow's search gives."""
    tracker, cells = store
    for i, cell in enumerate(cells):  # params and metrics, as a finished cell has them
        run_id = tracker.holder(cell.id).run_id
        tracker.log_params(run_id, {"seed": str(cell.seed), "student.qubits": "2"})
        tracker.log_steps(
            run_id,
            [
                (1, {"val_accuracy": 0.25}),
                (2, {"val_accuracy": 0.5}),
                (0, {"test_accuracy": i / 10, "odd": float("nan")}),
            ],
        )
    fast = tracker.cell_runs()
    slow = serial_cell_runs(tracker)
    assert [r.info.run_id for r in fast] == [r.info.run_id for r in slow]
    assert len(fast) == 7
    for mine, theirs in zip(fast, slow, strict=True):
        assert mine.data.tags == theirs.data.tags
        assert mine.data.params == theirs.data.params
        assert mine.data.metrics.keys() == theirs.data.metrics.keys()
        assert mine.data.metrics["val_accuracy"] == theirs.data.metrics["val_accuracy"] == 0.5
        assert mine.data.metrics["test_accuracy"] == theirs.data.metrics["test_accuracy"]
        assert math.isnan(mine.data.metrics["odd"]) and math.isnan(theirs.data.metrics["odd"])
    assert set(finished_results(tracker)) == {cell.id for cell in cells}


def test_a_sqlite_store_s_run_status_is_read_as_mlflow_reads_it(store):
    """`holds` reads a SQLite run's status from its row: as get_run gives it, whatever it is."""
    tracker, cells = store
    parent = tracker.start_run("statuses", {ROLE_TAG: "invocation"})
    runs = [tracker.start_run(f"run {i}", {ROLE_TAG: "cell"}, parent=parent) for i in range(3)]
    tracker.client.set_terminated(runs[1], status="KILLED")
    tracker.client.set_terminated(runs[2], status="FAILED")
    finished = tracker.holder(cells[0].id).run_id
    for run_id in (*runs, finished):
        status = tracker.client.get_run(run_id).info.status
        assert status == run_status(sqlite_path(tracker.uri), run_id)
        assert tracker.holds(run_id) == (status == "RUNNING")
    assert [tracker.holds(run_id) for run_id in (*runs, finished)] == [True] + [False] * 3
    assert run_status(sqlite_path(tracker.uri), "no-such-run") is None


def test_a_server_is_read_in_shards_that_together_are_every_run(
    server, write_config, registry, monkeypatch
):
    """On a tracking server the finished cells are read as 16 shards side by side (by their
    ids' first hex digit): together, the very runs, in the order, one search gives."""
    tracker, cells = finished_store(server, write_config, registry, seeds=40)
    monkeypatch.setattr(kdbench.tracking, "SERVER_SEARCH_PAGE", 2)  # shards of 1-6: pages
    sharded, serial = tracker.cell_runs(), serial_cell_runs(tracker)
    assert len({cell.id[0] for cell in cells}) > 8, "the cells fall in many shards"
    assert [r.info.run_id for r in sharded] == [r.info.run_id for r in serial]
    assert len(sharded) == len(cells) == 40
    assert set(finished_results(tracker)) == {cell.id for cell in cells}


def test_a_sqlite_store_has_the_tag_index_and_lookups_use_it(store, tmp_path):
    _, cells = store
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "kdbench_tags_key_value" in names
        plan = " ".join(
            str(row)
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT run_uuid FROM tags WHERE key = ? AND value = ?",
                (CELL_ID_TAG, cells[0].id),
            )
        )
    assert "kdbench_tags_key_value" in plan


def test_a_sqlite_store_read_while_cells_finish_gives_whole_runs(store):
    """`kdbench report` beside a running study: runs that finish while the store is read are
    left for the next read, never half read (this read failed with a KeyError)."""
    tracker, cells = store
    writer = Tracker(tracker.uri, "pages")
    parent = writer.start_run("writer", {ROLE_TAG: "invocation"})
    stop = threading.Event()

    def finish_runs() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            tags = {ROLE_TAG: "cell", CELL_ID_TAG: f"extra-{n}"}
            run_id = writer.start_run(f"extra-{n}", tags, parent=parent)
            writer.log_metrics(run_id, {"test_accuracy": 0.5})
            writer.finish(run_id)

    thread = threading.Thread(target=finish_runs)
    thread.start()
    try:
        reads = [tracker.cell_runs() for _ in range(30)]
    finally:
        stop.set()
        thread.join()
    assert len(reads[-1]) > len(reads[0]) >= len(cells), "runs finished during the reads"
    for runs in reads:
        assert all(CELL_ID_TAG in run.data.tags for run in runs)

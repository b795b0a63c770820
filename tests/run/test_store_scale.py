"""A store of any size: every search pages through MLflow's results (nothing is cut at a
page), and a SQLite store gets the index that keeps a cell's lookup from reading every run."""

from __future__ import annotations

import sqlite3

import pytest

import kdbench.tracking
from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.results import cell_tags
from kdbench.tracking import CELL_ID_TAG, ROLE_TAG, Tracker
from tests.helpers import TINY


@pytest.fixture
def store(tmp_path, write_config, registry):
    """A real store with 7 FINISHED cell runs (of a 7-seed config), made as run_cell does."""
    text = TINY.format(name="pages").replace("seeds = [0]", "seeds = [0, 1, 2, 3, 4, 5, 6]")
    cells = [c for c in expand(load_spec(write_config(text), registry)) if c.teacher is None]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "pages")
    parent = tracker.start_run("pages", {ROLE_TAG: "invocation"})
    for cell in cells:
        tags = {ROLE_TAG: "cell", CELL_ID_TAG: cell.id, **cell_tags(cell)}
        claim = tracker.claim(cell.id, cell.label, tags, parent)
        tracker.finish(claim.run_id)
    return tracker, cells


def test_searches_page_through_every_run(store, monkeypatch):
    tracker, cells = store
    monkeypatch.setattr(kdbench.tracking, "SEARCH_PAGE", 2)  # 7 runs: 4 pages
    assert len(tracker.cell_runs()) == 7
    assert set(tracker.finished_cells()) == {cell.id for cell in cells}
    # A cell whose finished runs span pages is still found finished.
    assert tracker.holder(cells[-1].id).state == "finished"


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

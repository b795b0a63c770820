"""Tracking stores that cannot be used, keep nothing or stop answering: refused up front in one
line with exit 2 and nothing written, or the run ends in bounded time with one line and exit 2,
never a hang."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

from kdbench.tracking import ROLE_TAG, Tracker
from tests.helpers import TINY, assert_clean_failure

VALID = TINY.format(name="stores")


@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_a_store_that_keeps_nothing_is_refused(write_config, invoke, isolated, uri):
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, "names no database file", isolated)


def test_the_store_in_the_config_is_checked_too(write_config, invoke, isolated):
    text = VALID.replace('name = "stores"', 'name = "stores"\ntracking_uri = "sqlite:///"')
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(result, "names no database file", isolated)


def test_tracking_server_unreachable_fails_fast(write_config, invoke, isolated):
    started = time.monotonic()
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", "http://127.0.0.1:9")
    assert_clean_failure(result, "tracking server http://127.0.0.1:9 is unreachable", isolated)
    assert time.monotonic() - started < 20, "must not wait for MLflow's retries"


def test_tracking_store_in_a_missing_directory(write_config, invoke, isolated):
    uri = "sqlite:////proc/nope/mlflow.db"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)


def test_tracking_store_inside_a_file(write_config, invoke, isolated, tmp_path):
    (tmp_path / "afile").write_text("")
    uri = f"sqlite:///{tmp_path}/afile/mlflow.db"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)
    assert (tmp_path / "afile").read_text() == ""


def test_tracking_store_that_is_not_a_database(write_config, invoke, isolated, tmp_path):
    store = tmp_path / "store.db"
    store.write_text("not sqlite\n" * 100)
    uri = f"sqlite:///{store}"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)
    assert store.read_text() == "not sqlite\n" * 100


def test_report_on_no_store_creates_none(invoke, isolated):
    result = invoke("report", "--experiment", "nope")
    assert_clean_failure(result, "no experiment 'nope' in sqlite:///", isolated)


def test_existing_store_gets_no_new_runs(write_config, invoke, isolated, data_copy):
    """A store that already exists is not touched by a run that fails its checks."""
    from mlflow.tracking import MlflowClient

    root, own = data_copy
    store = isolated / "store.db"
    uri = f"sqlite:///{store}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("stores")
    before = store.read_bytes()
    path = own("t10k-labels-idx1-ubyte")
    path.write_bytes(path.read_bytes()[:-1])
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root), "--tracking-uri", uri)
    assert (
        result.exit_code == 2 and "corrupt (md5 mismatch) t10k-labels-idx1-ubyte" in result.stderr
    )
    experiment = client.get_experiment_by_name("stores").experiment_id
    assert client.search_runs([experiment]) == []
    assert store.read_bytes() == before


class HangingProxy:
    """A TCP proxy on 127.0.0.1 to `target` that, once `hang` is set, stops passing bytes
    either way (connections stay open, requests get no answer): a server gone silent. With
    `drop_answer_to`, the first request whose bytes hold it reaches the server, and its answer
    is dropped with the connection: a server that did the work, then restarted."""

    def __init__(self, target: tuple[str, int], drop_answer_to: bytes | None = None):
        self.target, self.hang = target, threading.Event()
        self.drop_answer_to, self.dropped = drop_answer_to, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        ends = {client: upstream, upstream: client}
        drop = False  # this connection's next answer is dropped
        while True:
            ready, _, _ = select.select(list(ends), [], [], 0.2)
            if self.hang.is_set():
                time.sleep(0.2)  # hold the connection open, pass nothing
                continue
            for end in ready:
                data = end.recv(65536)
                if not data:
                    return
                if end is upstream and drop:
                    self.dropped.set()
                    client.close()
                    upstream.close()
                    return
                if self.drop_answer_to and not self.dropped.is_set():
                    drop = drop or (end is client and self.drop_answer_to in data)
                ends[end].sendall(data)


def test_a_run_the_server_made_without_answering_is_not_made_twice(server):
    """A server that restarts drops the requests it is doing, done or not: `create_run`
    tried again finds the run the unanswered attempt made, rather than make a second."""
    from mlflow.tracking import MlflowClient

    host, port = server.removeprefix("http://").split(":")
    proxy = HangingProxy((host, int(port)), drop_answer_to=b"/runs/create")
    tracker = Tracker(f"http://127.0.0.1:{proxy.port}", "dropped-answer")
    run_id = tracker.start_run("a cell", {ROLE_TAG: "cell"})
    assert proxy.dropped.is_set(), "the first answer was dropped"
    runs = MlflowClient(server).search_runs([tracker.experiment_id])
    assert [run.info.run_id for run in runs] == [run_id]


@pytest.mark.slow
def test_a_server_that_stalls_ends_the_run_within_a_minute(
    write_config,
    isolated,
    server,
):
    host, port = server.removeprefix("http://").split(":")
    proxy = HangingProxy((host, int(port)))
    config = write_config(VALID.replace("seeds = [0]", "seeds = [0, 1]"))
    env = {**os.environ, "KDBENCH_CACHE": str(isolated / "cache")}  # kdbench's own timeouts
    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        env.pop(key, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(config),
         "--tracking-uri", f"http://127.0.0.1:{proxy.port}"],
        cwd=isolated, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in process.stderr:  # the server goes silent once the first cell is logged
        lines.append(line)
        if line.startswith("done "):
            proxy.hang.set()
            started = time.monotonic()
            break
    assert proxy.hang.is_set(), "".join(lines)
    _, rest = process.communicate(timeout=120)
    took = time.monotonic() - started
    assert process.returncode == 2, rest
    assert "Traceback" not in rest
    errors = [line for line in rest.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "stopped answering (stalled)" in errors[0], rest
    # One request's timeout and one health check, not a timeout per try or per request.
    assert took < 45, f"told within a minute: {took:.0f} s"


# -- kdbench ui: refused in one line rather than by the server --


def store(tmp_path) -> str:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).create_experiment("exists")
    return uri


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_ui_on_a_port_that_cannot_be_refuses_it(invoke, isolated, port):
    result = invoke("ui", "--port", port)
    assert_clean_failure(result, "--port", isolated)


def test_ui_on_a_port_in_use_says_so(invoke, isolated, tmp_path):
    uri = store(tmp_path / "other") if (tmp_path / "other").mkdir() is None else None
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = invoke("ui", "--tracking-uri", uri, "--port", str(port))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"cannot serve the UI on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_ui_on_a_missing_store_creates_none(invoke, isolated):
    result = invoke("ui")
    assert_clean_failure(result, "no tracking store at sqlite:///", isolated)


@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite:///:memory:"])
def test_ui_on_a_store_that_keeps_nothing_is_refused(invoke, isolated, uri):
    assert_clean_failure(invoke("ui", "--tracking-uri", uri), "names no database file", isolated)


def test_a_run_name_longer_than_mlflow_s_column_is_shortened(isolated):
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "long-names")
    run = tracker.client.get_run(tracker.start_run("x" * 400, {ROLE_TAG: "cell"}))
    assert len(run.info.run_name) == 250 and run.info.run_name.endswith("…")


def test_a_store_another_process_keeps_locked_is_named_in_one_line(tmp_path, monkeypatch):
    """SQLite's lock held for good (a process stopped inside a write): the call fails with
    a line that says so, not SQLAlchemy's first line ("raised as a result of autoflush")."""
    import sqlite3
    from contextlib import closing

    from kdbench import stores
    from kdbench.errors import TrackingError

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "locked")
    monkeypatch.setattr(stores, "LOCKED_RETRIES", 0)  # a try waits out SQLite's busy timeout
    with closing(sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)) as db:
        db.execute("BEGIN EXCLUSIVE")
        with pytest.raises(TrackingError, match="stayed locked by another process"):
            tracker.start_run("a cell", {ROLE_TAG: "cell"})

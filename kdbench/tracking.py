"""MLflow: one experiment per config name, a parent run per invocation, a child run per cell."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kdbench.errors import KdbenchError, TrackingError
from kdbench.locks import exclusive

DEFAULT_URI = "sqlite:///mlflow.db"
CELL_ID_TAG = "kdbench.cell_id"
ROLE_TAG = "kdbench.role"
PARENT_TAG = "mlflow.parentRunId"
HOST_TAG = "kdbench.host"
PID_TAG = "kdbench.pid"


def absolute_uri(uri: str) -> str:
    """A relative SQLite store made absolute, so that it names one file wherever it is used."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = uri.removeprefix(prefix)
        if path and path != ":memory:":
            return prefix + str(Path(path).resolve())
    return uri


def redact_uri(uri: str) -> str:
    """The URI as it may be shown: a password in it (http://user:pw@host) becomes ***."""
    password = _password(uri)
    return uri.replace(f":{password}@", ":***@") if password else uri


def _password(uri: str | None) -> str | None:
    try:
        return urlsplit(uri).password if uri else None
    except ValueError:
        return None


def _redacted(text: str, uri: str) -> str:
    """`text` without the password of `uri`, if any."""
    password = _password(uri)
    return text.replace(password, "***") if password else text


def redact_passwords(content: bytes, *uris: str | None) -> bytes:
    """`content` (a config file, logged as an artifact) without the passwords of `uris`."""
    for password in filter(None, map(_password, uris)):
        content = content.replace(password.encode(), b"***")
    return content


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'student': {'qubits': 3}} -> {'student.qubits': '3'}; lists as JSON."""
    flat: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            flat.update(flatten(item, f"{name}."))
        else:
            flat[name] = json.dumps(item) if isinstance(item, (list, tuple)) else str(item)
    return flat


class Tracker:
    """A thin layer over MlflowClient that speaks in kdbench's terms."""

    def __init__(self, uri: str, experiment: str, *, create: bool = True):
        from mlflow.tracking import MlflowClient

        # MLflow sets its loggers to INFO on import; its schema chatter is not for our users.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # Nor its "View run ... at: URL" on stdout after each run on a server: the URL would
        # show a password the tracking URI holds (workers inherit the setting).
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.uri, self.experiment_name = uri, experiment
        shown = redact_uri(uri)
        if not create and _missing_sqlite(uri):  # reading must not create an empty store
            raise KdbenchError(f"no experiment '{experiment}' in {shown}: no such store")
        if uri.startswith(("http://", "https://")) and not _reachable(uri):
            raise TrackingError(
                f"tracking server {shown} is unreachable (no connection within "
                f"{FIRST_CONTACT_TIMEOUT_S} s)"
            )
        try:
            with _store_lock(uri), _first_contact(uri):
                self.client = MlflowClient(tracking_uri=uri)
                found = self.client.get_experiment_by_name(experiment)
                if found is None and create:
                    self.experiment_id = self.client.create_experiment(experiment)
            if found is None and not create:
                raise KdbenchError(f"no experiment '{experiment}' in {shown}")
            if found is not None:
                self.experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(self.experiment_id)
        except KdbenchError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrackingError(
                f"tracking store {shown!r} cannot be used: {_redacted(first, uri)}"
            ) from None

    def start_run(self, name: str, tags: Mapping[str, str], parent: str | None = None) -> str:
        """A RUNNING run tagged with this process, so that a later run can tell it is stale."""
        tags = {**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        if parent is not None:
            tags[PARENT_TAG] = parent
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def close_stale(self) -> int:
        """Mark KILLED the RUNNING runs whose process on this host is gone; return how many."""
        host, closed = socket.gethostname(), 0
        for run in self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50000
        ):
            tags = run.data.tags
            if tags.get(HOST_TAG) == host and not _alive(int(tags.get(PID_TAG, "0"))):
                self.client.set_tag(run.info.run_id, "kdbench.error", "process ended mid-run")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                closed += 1
        return closed

    def finished_cells(self) -> dict[str, Any]:
        """The latest FINISHED child run of each cell id."""
        latest: dict[str, Any] = {}
        for run in self.cell_runs():  # oldest first, so the newest wins
            latest[run.data.tags[CELL_ID_TAG]] = run
        return latest

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_files(
        self, run_id: str, files: Iterable[tuple[str, bytes]], folder: str | None = None
    ) -> None:
        """Write (name, content) pairs as the run's artifacts (under `folder`)."""
        with tempfile.TemporaryDirectory() as local:
            for name, content in files:
                (Path(local) / name).write_bytes(content)
            self.client.log_artifacts(run_id, local, artifact_path=folder)

    def latest_invocation(self) -> str | None:
        """The run id of the experiment's newest invocation (parent) run."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'invocation'",
            max_results=1, order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        return runs[0].info.run_id if runs else None

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def cell_runs(self) -> list[Any]:
        """Every finished child run of the experiment, oldest first."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'",
            max_results=50000,
            order_by=["attributes.start_time ASC"],
        )


# A tracking server that does not answer fails the run in seconds, before anything is
# written, not after MLflow's retries (minutes); later requests keep MLflow's settings.
FIRST_CONTACT_TIMEOUT_S = 5
_FIRST_CONTACT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(FIRST_CONTACT_TIMEOUT_S),
}


def _reachable(uri: str) -> bool:
    from kdbench.fetch import reachable

    return reachable(uri, timeout=FIRST_CONTACT_TIMEOUT_S)


@contextmanager
def _first_contact(uri: str):
    """MLflow's HTTP requests without retries and with a short timeout, for the first contact."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    saved = {key: os.environ.get(key) for key in _FIRST_CONTACT_ENV}
    os.environ.update(_FIRST_CONTACT_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _missing_sqlite(uri: str) -> bool:
    path = uri.removeprefix("sqlite:///")
    return uri.startswith("sqlite:///") and path != ":memory:" and not Path(path).exists()


@contextmanager
def _store_lock(uri: str):
    """Serialize the first use of a local SQLite store: MLflow creates its tables then, and
    two processes doing it at once leave the schema migration half done."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with exclusive(Path(uri.removeprefix("sqlite:///") + ".lock")):
        yield


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

"""MLflow: one experiment per config name, a parent run per invocation, a child run per cell."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError, TrackingError, first_line
from kdbench.layering import dotted
from kdbench.leases import LEASE_TAG, Heartbeat, Lease, heartbeat_tag
from kdbench.results import CELL_ID_TAG, ERROR_TAG
from kdbench.sqlite_runs import finished_runs, run_status
from kdbench.stores import (
    FIRST_CONTACT_TIMEOUT_S,
    LATER_REQUESTS_ENV,
    GuardedClient,
    check_uri,
    first_contact,
    index_tags,
    is_server,
    missing_sqlite,
    redact_uri,
    redacted,
    server_reachable,
    sqlite_path,
    store_lock,
)

ROLE_TAG = "kdbench.role"
PARENT_TAG = "mlflow.parentRunId"
HOST_TAG = "kdbench.host"
PID_TAG = "kdbench.pid"
MAX_RUN_NAME = 250
SEARCH_PAGE = 50_000  # MLflow's most runs per search call
# A tracking server answers a page of runs in one response, built whole: 50,000 cells took
# longer than the client's 30 s read timeout (perf/store_scale.py at 100,000 cells). Smaller
# pages keep each answer to a few seconds.
SERVER_SEARCH_PAGE = 2_000
# A server builds every run it answers whole (~3 ms a run: its tags, params and metrics), and
# `mlflow server` runs 4 workers unless told otherwise: the finished cells are read as 16
# shards, one per first hex digit of their ids (sha256 digests: the shards come out even),
# this many at a time.
SERVER_SEARCH_THREADS = 4
HEX_DIGITS = "0123456789abcdef"
OLDEST_FIRST = ["attributes.start_time ASC", "attributes.run_id ASC"]  # a search's order
FINISHED_CELLS = f"tags.`{ROLE_TAG}` = 'cell' and attributes.status = 'FINISHED'"
INVOCATIONS = f"tags.`{ROLE_TAG}` = 'invocation'"


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'student': {'qubits': 3}} -> {'student.qubits': '3'}; lists as JSON."""
    return {
        name: json.dumps(item) if isinstance(item, (list, tuple)) else str(item)
        for name, item in dotted(value, prefix).items()
    }


@dataclass(frozen=True)
class Claim:
    """A cell's run: the one just started for this process ("ours"), or the run that already
    "finished" it or "held" it (running elsewhere); `run` is that other run."""

    run_id: str
    state: str
    run: Any = None

    @property
    def local(self) -> bool:
        """Whether the run's process is on this host."""
        return self.run is not None and self.run.data.tags.get(HOST_TAG) == socket.gethostname()

    @property
    def owner(self) -> str:
        """host:pid of the process that started the run."""
        tags = self.run.data.tags if self.run is not None else {}
        return f"{tags.get(HOST_TAG, '?')}:{tags.get(PID_TAG, '?')}"


class Tracker:
    """A thin layer over MlflowClient that speaks in kdbench's terms."""

    def __init__(
        self, uri: str, experiment: str, *, create: bool = True, lease: Lease | None = None
    ):
        from mlflow.tracking import MlflowClient

        # MLflow sets its loggers to INFO on import; its schema chatter is not for our users.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # It logs each database error with its traceback before raising it, which kdbench
        # then reports in one line (or retries, for a locked SQLite store).
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        # Nor its "View run ... at: URL" on stdout after each run on a server: the URL would
        # show a password the tracking URI holds (workers inherit the setting).
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.uri, self.experiment_name = uri, experiment
        shown = redact_uri(uri)
        check_uri(uri)
        if not create and missing_sqlite(uri):  # reading must not create an empty store
            raise KdbenchError(f"no experiment '{experiment}' in {shown}: no such store")
        if is_server(uri) and not server_reachable(uri):
            raise TrackingError(
                f"tracking server {shown} is unreachable (no connection within "
                f"{FIRST_CONTACT_TIMEOUT_S} s)"
            )
        try:
            with store_lock(uri), first_contact(uri):
                self.client = GuardedClient(MlflowClient(tracking_uri=uri), uri)
                found = self.client.get_experiment_by_name(experiment)
                if found is None and create:
                    self.experiment_id = self.client.create_experiment(experiment)
                index_tags(uri)
            if found is None and not create:
                raise KdbenchError(f"no experiment '{experiment}' in {shown}")
            if found is not None:
                self.experiment_id = found.experiment_id
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(self.experiment_id)
        except KdbenchError as exc:
            if not isinstance(exc, TrackingError):
                raise
            raise TrackingError(f"tracking store {shown!r} cannot be used: {exc}") from None
        except Exception as exc:  # MlflowClient itself, e.g. a scheme it does not know
            raise TrackingError(
                f"tracking store {shown!r} cannot be used: {redacted(first_line(exc), uri)}"
            ) from None
        for key, value in LATER_REQUESTS_ENV.items():
            os.environ.setdefault(key, value)
        self.lease = lease or Lease()
        beat = heartbeat_tag(socket.gethostname(), str(os.getpid()))
        self._heartbeat = Heartbeat(
            lambda parent, value: self.client.set_tag(parent, beat, value), self.lease.heartbeat_s
        )

    def start_run(self, name: str, tags: Mapping[str, str], parent: str | None = None) -> str:
        """A RUNNING run tagged with this process, so that a later run can tell it is stale."""
        tags = {**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        if parent is not None:
            tags[PARENT_TAG] = parent
        # MLflow's runs.name column holds 250 characters (a cell's label can be longer).
        run_name = name if len(name) <= MAX_RUN_NAME else name[: MAX_RUN_NAME - 1] + "…"
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def close_stale(self) -> int:
        """Mark KILLED the RUNNING runs whose process on this host is gone; return how many."""
        closed = 0
        for run in list(self.search("attributes.status = 'RUNNING'")):  # read, then closed
            if self._stale(run):
                self._close(run.info.run_id)
                closed += 1
        return closed

    def close_children(self, parent: str) -> None:
        """Mark KILLED the runs of `parent` still RUNNING: its invocation stopped them (a
        worker force-stopped, a Ray task's process, may not have had the time to)."""
        running = f"tags.`{PARENT_TAG}` = '{parent}' and attributes.status = 'RUNNING'"
        self._close_all(running, "stopped with its invocation")

    def close_own(self) -> None:
        """Mark KILLED the runs this process started that are still RUNNING. For a worker
        stopped with no invocation left to do it (its parent was killed): a stop that comes
        while a cell is being claimed leaves a run the cell's own cleanup does not know."""
        own = (
            f"tags.`{HOST_TAG}` = '{socket.gethostname()}' and tags.`{PID_TAG}` = '{os.getpid()}'"
            " and attributes.status = 'RUNNING'"
        )
        self._close_all(own, "stopped with its worker")

    def _close_all(self, selected: str, reason: str) -> None:
        """Mark KILLED, for `reason`, every run the filter `selected` finds."""
        for run in list(self.search(selected)):  # read, then closed
            self._close(run.info.run_id, reason)

    @staticmethod
    def _stale(run: Any) -> bool:
        """Started by a process of this host that is gone."""
        tags = run.data.tags
        pid = tags.get(PID_TAG, "0")
        return tags.get(HOST_TAG) == socket.gethostname() and not _alive(
            int(pid) if pid.isdigit() else 0
        )

    def _close(self, run_id: str, reason: str = "process ended mid-run") -> None:
        self._heartbeat.release(run_id)
        self.client.set_tag(run_id, ERROR_TAG, reason)
        self.client.set_terminated(run_id, status="KILLED")

    def heartbeat(self, claim: Claim, invocations: dict[str, dict[str, str]]) -> str:
        """The heartbeat the holder of `claim` last wrote ('' if none); `invocations` keeps
        the tags of the invocation runs read so far, so that a round reads each once."""
        tags = claim.run.data.tags
        parent = tags.get(PARENT_TAG)
        if parent is None:
            return ""
        if parent not in invocations:
            invocations[parent] = self.client.get_run(parent).data.tags
        key = heartbeat_tag(tags.get(HOST_TAG, "?"), tags.get(PID_TAG, "?"))
        return invocations[parent].get(key, "")

    def take_over(self, claim: Claim, lease_s: float) -> bool:
        """Mark KILLED the run of `claim`, whose lease lapsed: its cell is free to run. False
        if the run ended meanwhile (the next look at the cell sees how)."""
        if not self.holds(claim.run_id):
            return False
        why = f"lease lapsed: no heartbeat from {claim.owner} for {lease_s:g} s"
        self._close(claim.run_id, why)
        return True

    def claim(
        self, cell_id: str, name: str, tags: Mapping[str, str], parent: str, since_ms: int = 0
    ) -> Claim:
        """Start the cell's RUNNING child run, unless another run finished it (since
        `since_ms`) or holds it (RUNNING, its process alive); then that run is returned.

        Check and start happen under one lock, so two invocations on one machine never both
        start a cell. Across machines (a shared server) the lock does not reach: of two runs
        started at once, the one started first keeps the cell and the other is withdrawn. A
        SQLite store's lock is a file beside it, shared by whoever opens the store: there the
        lock is enough, and the second look (two store calls a cell) is skipped.
        """
        with store_lock(self.uri):
            found = self.holder(cell_id, since_ms)
            if found is not None:
                return found
            tags = {**tags, LEASE_TAG: f"{self.lease.timeout_s:g}"}
            run_id = self.start_run(name, tags, parent=parent)
            self._heartbeat.hold(run_id, parent)
        if sqlite_path(self.uri) is not None:
            return Claim(run_id, "ours")
        mine = self.client.get_run(run_id)
        rival = self.holder(cell_id, since_ms, before=mine)
        if rival is not None:
            self._heartbeat.release(run_id)
            self.client.set_tag(run_id, ERROR_TAG, f"withdrawn: run {rival.run_id} has the cell")
            self.client.set_terminated(run_id, status="KILLED")
            self.client.delete_run(run_id)
            return rival
        return Claim(run_id, "ours")

    def holder(self, cell_id: str, since_ms: int = 0, before: Any = None) -> Claim | None:
        """The run that finished the cell since `since_ms`, else one that is running it with
        its process alive (only runs that started before run `before`, if given); runs left
        RUNNING by a dead process on this host are marked KILLED on the way."""
        runs = self.search(
            f"tags.`{CELL_ID_TAG}` = '{cell_id}' and tags.`{ROLE_TAG}` = 'cell'"
            " and attributes.status != 'FAILED' and attributes.status != 'KILLED'",
            order_by=OLDEST_FIRST,
        )
        running = None
        for run in runs:
            info = run.info
            if before is not None and (info.start_time, info.run_id) >= (
                before.info.start_time,
                before.info.run_id,
            ):
                continue
            if info.status == "FINISHED" and info.start_time >= since_ms:
                return Claim(info.run_id, "finished", run)
            if info.status in ("RUNNING", "SCHEDULED") and running is None:
                if self._stale(run):
                    self._close(info.run_id)
                else:
                    running = Claim(info.run_id, "held", run)
        return running

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        # MLflow's client splits a batch into the store's limits (100 params a call).
        self.client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_steps(run_id, [(step, metrics)])

    def log_steps(
        self,
        run_id: str,
        steps: Iterable[tuple[int, Mapping[str, float]]],
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log (step, metrics) pairs, and `tags`, in as few store calls as MLflow allows
        (1000 metrics a call; its client splits larger batches): a cell's whole history
        costs one call, not one per epoch."""
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        items = [Metric(k, float(v), now, n) for n, metrics in steps for k, v in metrics.items()]
        labels = [RunTag(k, v) for k, v in (tags or {}).items()]
        self.client.log_batch(run_id, metrics=items, tags=labels)

    def log_files(
        self, run_id: str, files: Iterable[tuple[str, bytes]], folder: str | None = None
    ) -> None:
        """Write (name, content) pairs as the run's artifacts (under `folder`)."""
        with tempfile.TemporaryDirectory() as local:
            for name, content in files:
                (Path(local) / name).write_bytes(content)
            self.client.log_artifacts(run_id, local, artifact_path=folder)

    def read_file(self, run_id: str, name: str) -> bytes:
        """The content of the run's artifact `name`."""
        with tempfile.TemporaryDirectory() as local:
            return Path(self.client.download_artifacts(run_id, name, local)).read_bytes()

    def latest_invocation(self) -> str | None:
        """The run id of the experiment's newest invocation (parent) run."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=INVOCATIONS,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set the run's `tags`, in one store call."""
        self.log_steps(run_id, [], tags)

    def holds(self, run_id: str) -> bool:
        """Whether the run is still RUNNING: not taken over after its lease lapsed."""
        path = sqlite_path(self.uri)
        if path is not None:
            with suppress(sqlite3.Error):  # tables not as kdbench knows them: MLflow's way
                return run_status(path, run_id) == "RUNNING"
        return self.client.get_run(run_id).info.status == "RUNNING"

    def finish(self, run_id: str, status: str = "FINISHED") -> bool:
        """End the run with `status`; False, and the run left as it is, if it was not
        RUNNING any more (its lease lapsed and another invocation took the cell over)."""
        self._heartbeat.release(run_id)
        if not self.holds(run_id):
            return False
        self.client.set_terminated(run_id, status=status)
        return True

    def cell_runs(self, parent: str | None = None) -> list[Any]:
        """Every finished child run of the experiment (of invocation `parent` only, if
        given), oldest first (ties by run id)."""
        path = sqlite_path(self.uri)
        if path is not None and parent is None:
            with suppress(sqlite3.Error):  # tables not as kdbench knows them: MLflow's way
                return finished_runs(path, self.experiment_id, ROLE_TAG, "cell")
        finished = FINISHED_CELLS
        if parent is not None:
            finished += f" and tags.`{PARENT_TAG}` = '{parent}'"
        if not is_server(self.uri):
            return list(self.search(finished, order_by=OLDEST_FIRST))
        shards = [f"{finished} and tags.`{CELL_ID_TAG}` LIKE '{digit}%'" for digit in HEX_DIGITS]
        with ThreadPoolExecutor(SERVER_SEARCH_THREADS) as pool:
            found = pool.map(lambda shard: list(self.search(shard, order_by=OLDEST_FIRST)), shards)
            # by run id: a store whose LIKE ignores case would give a run to two shards
            runs = {run.info.run_id: run for shard in found for run in shard}
        return sorted(runs.values(), key=lambda run: (run.info.start_time, run.info.run_id))

    def search(
        self, filter_string: str, order_by: list[str] | None = None, deleted: bool = False
    ) -> Iterator[Any]:
        """Every run of the experiment that `filter_string` selects (of the deleted runs
        instead, if `deleted`), page by page: MLflow returns at most SEARCH_PAGE runs a
        call, and kdbench never stops at a page."""
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=filter_string,
                run_view_type=ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY,
                max_results=SERVER_SEARCH_PAGE if is_server(self.uri) else SEARCH_PAGE,
                order_by=order_by,
                page_token=token,
            )
            yield from page
            token = page.token
            if not token:
                return


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

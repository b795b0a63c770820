"""Leases on claimed cells, so that a cell held by a process on a host that died is run again.

A process renews one heartbeat for all the cells it holds: a tag on their invocation's run,
`kdbench.heartbeat.HOST.PID`, rewritten every `heartbeat_s` (one store call a period, however
many cells a stacked group holds). Each cell's run says how long its lease lasts. Any
invocation that waits for a cell held on another host watches that heartbeat and, once it has
stayed the same for the lease's length, takes the cell as abandoned. The length is measured
on the watcher's own clock, so the hosts' clocks need not agree; a watcher that arrives after
the holder died waits one lease before taking over.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

LEASE_TAG = "kdbench.lease_s"


def heartbeat_tag(host: str, pid: str) -> str:
    """The tag of the invocation's run that a process on `host` with `pid` renews (a host
    name too long for MLflow's 250-character keys is hashed)."""
    tag = f"kdbench.heartbeat.{host}.{pid}"
    if len(tag) > 250:
        tag = f"kdbench.heartbeat.{hashlib.sha256(host.encode()).hexdigest()[:16]}.{pid}"
    return tag


@dataclass(frozen=True)
class Lease:
    """How often a holder renews its heartbeat, and how long a still one is trusted."""

    heartbeat_s: float = 10.0
    timeout_s: float = 60.0


class Heartbeat:
    """A daemon thread that renews this process's heartbeat on the invocation runs whose
    cells it holds, while it holds any."""

    def __init__(self, write: Callable[[str, str], None], period_s: float):
        self._write, self._period = write, period_s  # write(invocation run, heartbeat)
        self._held: dict[str, str] = {}  # cell run -> its invocation's run
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._beats = 0

    def hold(self, run_id: str, parent: str) -> None:
        """Renew the lease of `run_id` (a cell run of invocation `parent`) from now on."""
        with self._lock:
            first = parent not in self._held.values()
            self._held[run_id] = parent
        if first:
            self._renew([parent])
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="kdbench-heartbeat", daemon=True)
            self._thread.start()

    def release(self, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._period)
            with self._lock:
                parents = sorted(set(self._held.values()))
            self._renew(parents)

    def _renew(self, parents: list[str]) -> None:
        self._beats += 1
        beat = f"{self._beats} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        for parent in parents:
            # A store that fails here fails the cell's own next call, which says so.
            with suppress(Exception):
                self._write(parent, beat)


class LeaseWatch:
    """Tells, by this process's clock, whether a held run's heartbeat has stood still for its
    lease's length. Only runs that carry a lease (`kdbench.lease_s`) have one: a run an older
    kdbench started is never taken over."""

    def __init__(self, poll_s: float):
        self._poll = poll_s  # how often the watcher looks, when nothing holds it up
        # run -> (heartbeat, when it was first seen with that value, when last looked at)
        self._seen: dict[str, tuple[str, float, float]] = {}

    def lapsed(self, run: Any, heartbeat: str) -> float | None:
        """The lease's length if `run`'s lease lapsed, else None; `heartbeat` is the value
        its holder's heartbeat has now ('' if none was written yet)."""
        try:
            timeout = float(run.data.tags[LEASE_TAG])
        except (KeyError, ValueError):
            return None
        now, key = time.monotonic(), run.info.run_id
        beat, since, looked = self._seen.get(key, (None, now, now))
        # The clock restarts when the value changes, and when this watcher itself could not
        # look for a while (a store that was down held the holder's renewals back too).
        if beat != heartbeat or now - looked > max(timeout / 2, 3 * self._poll):
            since = now
        self._seen[key] = (heartbeat, since, now)
        return timeout if now - since >= timeout else None

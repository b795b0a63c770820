"""Claims that expire: a cell held by a process on another host is run again once that
process's lease lapses, and a holder that was only slow withdraws instead of finishing it twice.

A second host is a real one as far as kdbench can tell (tests/services.py: its own hostname
and process ids, the files shared).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.tracking import HOST_TAG, Tracker
from tests.helpers import TINY, run_here
from tests.run.test_concurrency import cell_runs, claim_of, finished_per_cell, kdbench_run
from tests.services import as_host, can_make_hosts

LEASE = ("--set", "experiment.lease_s=4", "--set", "experiment.heartbeat_s=1")


needs_hosts = pytest.mark.skipif(
    not can_make_hosts(), reason="making a second host needs unshare with root's rights"
)


def on_host(host: str, config: Path, cwd: Path, *args: str) -> subprocess.Popen:
    """`kdbench run config` as a process of another host named `host`."""
    env = {**os.environ, "KDBENCH_CACHE": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "kdbench", "run", str(config), *args]
    return subprocess.Popen(
        as_host(host, command),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def config_of(write_config, name: str, epochs: int) -> Path:
    """Six cells: three seeds, with and without a teacher, one at a time."""
    text = TINY.format(name=name).replace("seeds = [0]", "seeds = [0, 1, 2]")
    text = text.replace("epochs = 2", f"epochs = {epochs}")
    return write_config(text.replace("batch_size = 16", 'batch_size = 16\nstacked = "off"'))


def wait_running_on(uri: str, experiment: str, host: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        try:
            runs = cell_runs(uri, experiment)
        except Exception:  # the store is being created
            runs = []
        if any(r.info.status == "RUNNING" and r.data.tags.get(HOST_TAG) == host for r in runs):
            return
        time.sleep(0.2)
    raise AssertionError(f"{host} never started a cell")


@needs_hosts
def test_a_dead_host_s_cells_are_run_by_another_once_its_lease_lapses(write_config, isolated):
    """Host A is SIGKILLed while it runs a cell; host B, on the same store, runs every cell
    that is not finished, the dead host's among them once its lease lapses, and exits 0."""
    config = config_of(write_config, "dead-host", epochs=60)
    uri = f"sqlite:///{isolated}/mlflow.db"
    host_a = on_host("host-a", config, isolated, *LEASE)
    wait_running_on(uri, "dead-host", "host-a", host_a)
    host_a.send_signal(signal.SIGKILL)  # --kill-child: everything in its namespace dies
    host_a.wait(timeout=30)
    held = [r for r in cell_runs(uri, "dead-host") if r.info.status == "RUNNING"]
    assert held, "host A died holding a cell"

    host_b = kdbench_run(config, isolated, *LEASE)
    stdout, stderr = host_b.communicate(timeout=600)
    assert host_b.returncode == 0, stderr[-2000:]
    assert sorted(finished_per_cell(uri, "dead-host").values()) == [1] * 6
    assert f"({len(held)} taken over from host-a:" in stdout and "lease lapsed" in stdout
    for run in held:
        after = next(r for r in cell_runs(uri, "dead-host") if r.info.run_id == run.info.run_id)
        assert after.info.status == "KILLED"
        assert after.data.tags["kdbench.error"].startswith("lease lapsed: no heartbeat from")


@needs_hosts
def test_a_holder_that_was_only_slow_withdraws_and_the_cell_finishes_once(write_config, isolated):
    """Host A stops (SIGSTOP) mid-cell for longer than its lease; host B takes the cell over
    and finishes it. A, resumed, finds its claim taken: it logs no second FINISHED run, waits
    for B's result and exits 0."""
    config = config_of(write_config, "slow-host", epochs=30)
    uri = f"sqlite:///{isolated}/mlflow.db"
    host_a = on_host("host-a", config, isolated, *LEASE)
    wait_running_on(uri, "slow-host", "host-a", host_a)
    stopped = [host_a.pid, *children(host_a.pid)]
    freeze_between_store_calls(isolated / "mlflow.db", stopped)
    try:
        host_b = kdbench_run(config, isolated, *LEASE)
        _, stderr = host_b.communicate(timeout=600)
        assert host_b.returncode == 0, stderr[-2000:]
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    _, stderr_a = host_a.communicate(timeout=600)
    assert host_a.returncode == 0, stderr_a[-2000:]
    assert sorted(finished_per_cell(uri, "slow-host").values()) == [1] * 6
    taken = [r for r in cell_runs(uri, "slow-host") if r.info.status == "KILLED"]
    assert [r.data.tags[HOST_TAG] for r in taken] == ["host-a"]
    assert taken[0].data.tags["kdbench.error"].startswith("lease lapsed")


def freeze_between_store_calls(store: Path, pids: list[int]) -> None:
    """SIGSTOP `pids` while none of them is inside a call to the SQLite store: one frozen
    holding the database's lock (a heartbeat's write, a read) would lock every other host
    out, which SQLite cannot help and a lease cannot either. Holding the lock ourselves while
    they stop, they hold none of it."""
    with closing(sqlite3.connect(store, timeout=60, isolation_level=None)) as db:
        db.execute("BEGIN EXCLUSIVE")  # waits until no one else holds any lock
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        db.execute("COMMIT")


def children(pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def test_a_cell_held_elsewhere_without_a_lease_is_left_to_its_holder_and_said(
    write_config, registry, isolated
):
    """A run an older kdbench left RUNNING on another host carries no lease: it is never
    taken over (its holder could be alive); the cell is reported HELD, the others run."""
    spec = load_spec(write_config(TINY.format(name="no-lease")), registry)
    cells = expand(spec)
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "no-lease")
    old = claim_of(tracker, cells[1].id, 1, host="elsewhere")
    outcomes = run_here(spec, registry, tracker, isolated / "cache")
    assert [o.status for o in outcomes] == ["FINISHED", "HELD"]
    assert outcomes[1].error == "elsewhere:1"
    assert tracker.client.get_run(old).info.status == "RUNNING"

"""A Ray cluster of several nodes on this machine, one of them lost mid-run.

The head runs no task; each worker node is a host of its own as far as kdbench can tell:
`unshare` gives it its own hostname (UTS namespace) and its own process ids (PID namespace),
and it shares the files, as hosts share a store and a data directory. Killing a node's
namespace SIGKILLs its raylet and its workers at once, as a host that dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdbench.tracking import HOST_TAG
from tests.helpers import TINY
from tests.run.test_concurrency import cell_runs, finished_per_cell
from tests.run.test_leases import wait_running_on
from tests.services import TOKEN_AUTH, Cluster, can_make_hosts, ray_cluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not can_make_hosts(), reason="hosts of their own need unshare (root)"),
]
LEASE = ("--set", "experiment.lease_s=4", "--set", "experiment.heartbeat_s=1")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with ray_cluster({"node-a": 1, "node-b": 1}) as made:
        yield made


def config_of(write_config, name: str) -> Path:
    """Six cells: three seeds, with and without a teacher, each a task of its own."""
    text = TINY.format(name=name).replace("seeds = [0]", "seeds = [0, 1, 2]")
    return write_config(text.replace("epochs = 2", 'epochs = 40\nstacked = "off"'))


def driver(config: Path, cwd: Path, address: str) -> subprocess.Popen:
    env = {**os.environ, "KDBENCH_CACHE": str(cwd / "cache"), **TOKEN_AUTH}
    env.pop("MLFLOW_TRACKING_URI", None)
    store = f"sqlite:///{cwd}/mlflow.db"
    command = [sys.executable, "-m", "kdbench", "run", str(config), "--executor", "ray",
               "--address", address, "--tracking-uri", store, *LEASE]  # fmt: skip
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_node_lost_mid_run_has_its_cells_run_on_the_survivor(cluster, tmp_path, write_config):
    config = config_of(write_config, "node-lost")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = driver(config, tmp_path, cluster.address)
    wait_running_on(uri, "node-lost", "node-b", run)
    cluster.kill("node-b")
    stdout, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr[-3000:]
    assert sorted(finished_per_cell(uri, "node-lost").values()) == [1] * 6
    assert "taken over from node-b:" in stdout and "lease lapsed" in stdout, stdout[-2000:]
    finished_on = {
        r.data.tags[HOST_TAG] for r in cell_runs(uri, "node-lost") if r.info.status == "FINISHED"
    }
    assert "node-a" in finished_on


def test_a_killed_driver_is_resumed_and_two_drivers_share_the_work(cluster, tmp_path, write_config):
    """The driver is SIGKILLed while the cluster runs its cells: a new one finishes every
    cell once. Then two drivers at once on a rerun share the cells, neither runs one twice."""
    config = config_of(write_config, "drivers")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = driver(config, tmp_path, cluster.address)
    wait_running_on(uri, "drivers", "node-a", first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    resumed = driver(config, tmp_path, cluster.address)
    _, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-3000:]
    assert sorted(finished_per_cell(uri, "drivers").values()) == [1] * 6

    shared = config_of(write_config, "shared")
    both = [driver(shared, tmp_path, cluster.address) for _ in range(2)]
    for each in both:
        _, stderr = each.communicate(timeout=900)
        assert each.returncode == 0, stderr[-3000:]
    assert sorted(finished_per_cell(uri, "shared").values()) == [1] * 6

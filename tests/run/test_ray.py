"""Cells as Ray tasks on a real local Ray instance that the test starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import TINY
from tests.services import RAY, TOKEN, TOKEN_AUTH, free_port


@pytest.fixture
def ray_cluster():
    """`ray start --head` on this machine with 2 CPUs and token authentication; its address.

    No --node-ip-address 127.0.0.1: a client's ray.init turns a loopback address into the
    machine's own IP (wherever there is a network route), which a head bound to 127.0.0.1
    does not answer. RAY_AUTH_MODE=token, as a client must then set it too (`ray start`
    turns token authentication on by itself once ~/.ray/auth_token exists).
    """
    assert RAY, "ray is a dev dependency"
    port = free_port()
    # Ray's socket paths must stay short: not under pytest's long tmp_path.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, **TOKEN_AUTH}
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "2",
                    "--include-dashboard", "false", "--temp-dir", temp],
                   check=True, env=env, timeout=300,
                   # Ray's daemons inherit the pipes: capturing would wait for them forever
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    yield f"127.0.0.1:{port}"
    subprocess.run(
        [RAY, "stop", "--force"],
        env=env,
        timeout=300,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_cells_run_as_ray_tasks(ray_cluster, tmp_path, write_config):
    config = write_config(TINY.format(name="on-ray").replace("seeds = [0]", "seeds = [0, 1]"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache"), **TOKEN_AUTH}
    command = [sys.executable, "-m", "kdbench", "run", str(config), "--executor", "ray",
               "--address", ray_cluster, "--tracking-uri", uri]  # fmt: skip
    without_token = subprocess.run(
        command,
        cwd=tmp_path,
        env={**env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert without_token.returncode == 2
    assert without_token.stderr.strip().splitlines() == [
        f"Error: the Ray cluster at {ray_cluster} refused this client: it wants token "
        "authentication; set RAY_AUTH_MODE=token, with the cluster's token in "
        "~/.ray/auth_token or RAY_AUTH_TOKEN"
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 cells finished, 0 already done, 0 failed" in result.stdout
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("on-ray").experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if r.data.tags["kdbench.role"] == "invocation"]
    cells = [r for r in runs if r.data.tags["kdbench.role"] == "cell"]
    assert len(parents) == 1 and len(cells) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
    assert {r.data.tags["kdbench.pid"] for r in cells} - {parents[0].data.tags["kdbench.pid"]}, (
        "cells ran in Ray worker processes"
    )
    # one teacher per seed, each trained once even with workers racing for it
    assert len(list((tmp_path / "cache" / "teachers").glob("*[0-9a-f].pt"))) == 2
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if TOKEN.encode() in p.read_bytes()], (
        "the Ray token reached the store, the artifacts or the cache"
    )


def test_unreachable_ray_cluster_is_one_clear_line(write_config, invoke, isolated):
    config = write_config(TINY.format(name="no-ray"))
    result = invoke("run", str(config), "--executor", "ray", "--address", "127.0.0.1:9")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: cannot reach the Ray cluster at 127.0.0.1:9")
    assert not (isolated / "mlflow.db").exists()

"""A real MLflow tracking server (SQL backend, proxied artifacts) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`mlflow server` with a SQLite backend store, serving artifacts; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert process.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    else:
        raise AssertionError("mlflow server did not come up within 2 minutes")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_a_matrix_runs_against_a_tracking_server(server, tmp_path, write_config):
    config = write_config(TINY.format(name="served"))
    env = {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(config), "--tracking-uri", server],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists(), "nothing may go to a local store"
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("served").experiment_id
    cells = client.search_runs([experiment], "tags.`kdbench.role` = 'cell'")
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)
    artifacts = {a.path for a in client.list_artifacts(cells[0].info.run_id)}
    assert "confusion_matrix.png" in artifacts
    assert any((tmp_path / "artifacts").rglob("confusion_matrix.png")), (
        "artifacts went to the server"
    )

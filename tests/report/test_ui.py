"""`kdbench ui` serves the MLflow UI on the store kdbench writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from tests.helpers import free_port


def test_ui_serves_the_experiments_of_the_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(tracking_uri=uri).create_experiment("seen-by-the-ui")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kdbench", "ui", "--tracking-uri", uri, "--port", str(port)],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the UI did not answer within 2 minutes"
        assert "seen-by-the-ui" in body
    finally:
        server.terminate()
        server.wait(timeout=30)

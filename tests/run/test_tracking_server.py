"""A real MLflow tracking server (SQL backend, proxied artifacts) on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import TINY


@pytest.mark.slow
def test_a_matrix_runs_against_a_tracking_server(server, tmp_path, write_config):
    config = write_config(TINY.format(name="served"))
    env = {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(config), "--tracking-uri", server],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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

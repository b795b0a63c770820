"""A real MLflow tracking server (SQL backend, proxied artifacts) on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


def served_run(config, cwd, url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "KDBENCH_CACHE": str(cwd / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(config), "--tracking-uri", url, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_once(url: str, experiment: str, cells: int) -> None:
    client = MlflowClient(tracking_uri=url)
    found = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([found], "tags.`kdbench.role` = 'cell'", max_results=1000)
    counts: dict[str, int] = {}
    for run in runs:
        assert run.info.status != "RUNNING"
        if run.info.status == "FINISHED":
            cell = run.data.tags["kdbench.cell_id"]
            counts[cell] = counts.get(cell, 0) + 1
    assert sorted(counts.values()) == [1] * cells, counts


@pytest.mark.slow
def test_two_jobs_2_invocations_at_once_share_the_server_s_cells(served, tmp_path, write_config):
    """Two `--jobs 2` runs of one config against one server: every cell finished once."""
    text = TINY.format(name="shared").replace("seeds = [0]", "seeds = [0, 1, 2]")
    config = write_config(text.replace("epochs = 2", 'epochs = 6\nstacked = "off"'))
    runs = [served_run(config, tmp_path, served.url, "--jobs", "2") for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, stderr[-2000:]
    finished_once(served.url, "shared", 6)


@pytest.mark.slow
def test_a_server_restarted_mid_run_is_waited_for_and_nothing_is_lost(
    served, tmp_path, write_config
):
    """The server stops after the first cell and is back 8 s later: the run's requests in
    between wait for it (kdbench asks /health), and the run ends with every cell once."""
    text = TINY.format(name="restart").replace("seeds = [0]", "seeds = [0, 1]")
    config = write_config(text.replace("epochs = 2", 'epochs = 20\nstacked = "off"'))
    run = served_run(config, tmp_path, served.url)
    for line in run.stderr:
        if line.startswith("done "):
            break
    served.stop()
    time.sleep(8)
    served.start()
    _, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    finished_once(served.url, "restart", 4)

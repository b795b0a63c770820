"""The example plugin package in examples/ installs with pip and runs from TOML."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import ROOT

PACKAGE = ROOT / "examples" / "kdbench-example-plugin"


@pytest.mark.slow
def test_pip_installed_example_plugin_runs_from_toml(tmp_path):
    target = tmp_path / "site"
    # Built from a copy: pip leaves build/ and *.egg-info beside the sources it builds.
    source = shutil.copytree(PACKAGE, tmp_path / "source")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target), "KDBENCH_CACHE": str(tmp_path / "cache")}

    listed = subprocess.run(
        [sys.executable, "-m", "kdbench", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    plugin = next(p for p in json.loads(listed.stdout) if p["name"] == "example")
    assert plugin["distribution"] == "kdbench-example-plugin" and not plugin["problems"]
    assert plugin["registered"] == {
        "teachers": [
            {
                "name": "relu-mlp",
                "summary": plugin["registered"]["teachers"][0]["summary"],
                "options": plugin["registered"]["teachers"][0]["options"],
            }
        ],
        "backends": plugin["registered"]["backends"],
        "distillers": plugin["registered"]["distillers"],
    }
    assert plugin["registered"]["backends"][0]["name"] == "depolarized-statevector"
    [top_k] = plugin["registered"]["distillers"]
    assert top_k["name"] == "top-k" and top_k["summary"].startswith("Top-k KD: ")
    options = {o["name"]: (o["type"], o["default"], o["minimum"]) for o in top_k["options"]}
    assert options == {
        "k": ("integer", 2, 2),
        "temperature": ("number", 2.0, 0),
        "kd_weight": ("number", 1.0, 0),
    }

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(PACKAGE / "example.toml"),
         "--tracking-uri", uri],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 cells finished" in run.stdout
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("example-plugin").experiment_id
    runs = client.search_runs([experiment], "tags.`kdbench.role` = 'cell'")
    assert {r.data.params["backend.plugin"] for r in runs} == {"depolarized-statevector"}
    assert {r.data.params.get("teacher.plugin") for r in runs} == {None, "relu-mlp"}
    # The taught student ran through the paper's loss and through the plugin's top-k KD.
    by_distiller = {r.data.tags["kdbench.distiller"]: r for r in runs}
    assert sorted(by_distiller) == ["none", "paper", "top-2"]
    top2 = by_distiller["top-2"].data
    assert top2.params["distill.plugin"] == "top-k" and top2.params["distill.k"] == "2"
    assert top2.params.get("teacher.plugin") == "relu-mlp"
    assert {"train_kd", "val_kd"} <= top2.metrics.keys() and top2.metrics["train_kd"] >= 0
    assert all(r.data.params["plugin.example.version"] == "0.1.0" for r in runs)

"""The example configs run end to end into MLflow (smaller data and fewer epochs, same code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import ROOT

EXAMPLES = ROOT / "examples"


def run_example(name: str, tmp_path: Path, *overrides: str, config: Path | None = None) -> list:
    """Run examples/NAME.toml (or `config`, its experiment NAME) with overrides; return its
    finished child runs."""
    env = {**os.environ, "KDBENCH_CACHE": str(tmp_path / "cache")}
    args = [arg for override in overrides for arg in ("--set", override)]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(config or EXAMPLES / f"{name}.toml"),
         "--tracking-uri", uri, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`kdbench.role` = 'cell'")
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    return runs


def small(dataset: str, per_class: int = 4) -> list[str]:
    return [
        f"datasets.{dataset}.train_per_class={per_class}",
        f"datasets.{dataset}.val_per_class=3",
        f"datasets.{dataset}.test_per_class=3",
        "train.epochs=1",
    ]


@pytest.mark.slow
def test_every_teacher_and_student_preset_on_statevector(tmp_path):
    teachers = ("lenet", "alexnet", "resnet18")
    runs = run_example(
        "paper-students",
        tmp_path,
        *small("mnist-0-7"),
        *(f"teachers.{t}.train_per_class=6" for t in teachers),
        *(f"teachers.{t}.epochs=1" for t in teachers),
    )
    seen = {(r.data.tags["kdbench.teacher"], r.data.tags["kdbench.student"]) for r in runs}
    assert len(seen) == 5 * 6
    ensemble = next(r for r in runs if r.data.tags["kdbench.teacher"] == "ensemble")
    members = json.loads(ensemble.data.params["teacher.members"])
    assert [m["plugin"] for m in members] == ["lenet", "alexnet"]
    assert "teacher_test_accuracy" in ensemble.data.metrics
    paper = next(r for r in runs if r.data.tags["kdbench.student"] == "paper-q4")
    assert paper.data.params["encoder.plugin"] == "amplitude"
    assert paper.data.metrics["circuit_width"] == 4


@pytest.mark.slow
def test_aer_with_shots_and_noise_and_an_exact_model_tested_on_noise(tmp_path):
    runs = run_example("aer-noisy", tmp_path, *small("mnist-0-5", per_class=3))
    by_backend = {r.data.tags["kdbench.backend"]: r.data for r in runs}
    noisy = by_backend["manila-5000"]
    assert noisy.params["backend.shots"] == "5000"
    assert noisy.params["backend.noise"] == "FakeManilaV2"
    assert noisy.metrics["circuit_shots"] == 5000 * noisy.metrics["circuit_executions"]
    # Released-code student: 3 input slots -> 1 + 2*3 circuits per training image.
    transferred = by_backend["statevector→manila-5000"]
    assert "train_backend_test_accuracy" in transferred.metrics
    assert transferred.metrics["eval_circuit_shots"] > 0
    assert transferred.metrics["circuit_shots"] == 0


@pytest.mark.slow
def test_ibm_runtime_local_testing_mode_with_a_fake_device(tmp_path):
    (run,) = run_example("ibm-fake", tmp_path, *small("mnist-0-3"))
    assert run.data.params["backend.backend"] == "fake_manila"
    assert run.data.metrics["circuit_width"] >= 2
    assert run.data.metrics["circuit_shots"] > 0


@pytest.mark.slow
def test_the_noise_study_tests_every_student_on_its_ladder(tmp_path):
    # One data set, one teacher and one loss: each cell compiles the 9 rungs (two of them
    # transpiled to 127- and 133-qubit devices), so the whole matrix would take minutes.
    text = (EXAMPLES / "noise.toml").read_text()
    for whole, part in (
        ('["mnist-0-5", "fashion-mnist-0-5"]', '["mnist-0-5"]'),
        ('["none", "lenet", "lenet-within"]', '["none", "lenet"]'),
        ('["paper", "dist"]', '["paper"]'),
    ):
        assert whole in text
        text = text.replace(whole, part)
    config = tmp_path / "noise.toml"
    config.write_text(text)
    runs = run_example(
        "noise",
        tmp_path,
        "experiment.seeds=[0]",
        *small("mnist-0-5", per_class=3),
        "teachers.lenet.train_per_class=6",
        "teachers.lenet.epochs=1",
        config=config,
    )
    assert len(runs) == 8  # (2 exact students + the circuit on 2 noisy backends) x 2 arms
    ladder = [
        "clean",
        "dep-0.001",
        "dep-0.003",
        "dep-0.01",
        "dep-0.03",
        "dep-0.1",
        "manila",
        "brisbane",
        "torino",
    ]
    for run in runs:
        assert json.loads(run.data.tags["kdbench.also_tested_on"]) == ladder
        assert all(f"test_accuracy/{rung}" in run.data.metrics for rung in ladder)
    backends = {r.data.tags["kdbench.backend"] for r in runs}
    assert backends == {"exact", "dep-0.01", "manila"}

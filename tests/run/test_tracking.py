"""End to end: a real matrix on real MNIST into a real MLflow store, read back with MlflowClient."""

from __future__ import annotations

import json

import torch
from mlflow.tracking import MlflowClient

from kdbench.config import load_spec
from kdbench.matrix import expand
from tests.helpers import TINY


def test_run_logs_parent_and_children_with_everything(write_config, invoke, isolated, registry):
    config = write_config(TINY.format(name="e2e"))
    result = invoke("run", str(config))
    assert result.exit_code == 0, result.output
    assert "2 cells finished, 0 already done, 0 failed" in result.stdout
    assert "lenet" in result.stdout and "Δ vs no teacher" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{isolated}/mlflow.db")
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kdbench.role") == "invocation"]
    children = [r for r in runs if r.data.tags.get("kdbench.role") == "cell"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert artifacts == ["config.toml", "kdbench-ledger.json"]  # its config, and its ledger
    assert parent.data.tags["kdbench.ledger"] == "2"

    expected_ids = {c.id for c in expand(load_spec(config, registry))}
    assert {r.data.tags["kdbench.cell_id"] for r in children} == expected_ids
    for run in children:
        run_id, data = run.info.run_id, run.data
        assert run.info.status == "FINISHED"
        assert data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert data.params["student.qubits"] == "2"
        assert data.params["dataset.classes"] == "[0, 1, 2]"
        assert data.params["seed"] == "0"
        assert "kdbench.version" in data.params and "plugin.students.version" in data.params
        history = client.get_metric_history(run_id, "val_accuracy")
        assert [m.step for m in history] == [1, 2]
        for name in ("train_loss", "train_ce", "val_loss", "val_ce", "train_accuracy"):
            assert len(client.get_metric_history(run_id, name)) == 2
        assert 0.0 <= data.metrics["test_accuracy"] <= 1.0
        assert data.metrics["circuit_width"] == 2 and data.metrics["wall_seconds"] > 0
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {
            "config.json",
            "confusion_matrix.png",
            "confusion_matrix.json",
            "student_state_dict.pt",
        } <= artifacts
        folder = client.download_artifacts(run_id, "", str(isolated / run_id))
        resolved = json.loads((isolated / run_id / "config.json").read_text())
        assert resolved["student"]["qubits"] == 2 and resolved["seed"] == 0
        confusion = json.loads((isolated / run_id / "confusion_matrix.json").read_text())
        assert sum(map(sum, confusion)) == 30  # 10 test images for each of 3 classes
        state = torch.load(f"{folder}/student_state_dict.pt", weights_only=True)
        assert "weights" in state
        distilled = data.tags["kdbench.teacher"] == "lenet"
        assert ("teacher_test_accuracy" in data.metrics) == distilled
        kd = [m.value for m in client.get_metric_history(run_id, "train_kd")]
        assert (len(kd) == 2 and min(kd) > 0) == distilled, "the KD term: distilled cells only"
        assert data.tags["kdbench.distiller"] == ("paper" if distilled else "none")

    # Markdown: a rich table squeezed into the runner's 80 columns wraps its cells.
    report = invoke("report", "--experiment", "e2e", "--format", "markdown")
    assert report.exit_code == 0 and "Teacher: LeNet, Student:" in report.stdout


def test_report_of_unknown_experiment(invoke, isolated):
    result = invoke("report", "--experiment", "nothing-here")
    assert result.exit_code == 2 and "no experiment 'nothing-here'" in result.stderr
    assert invoke("report").exit_code == 2

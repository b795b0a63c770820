"""The report's arithmetic on runs in a real (temporary) MLflow store, and the paper matrix."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest

from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.paper import PAPER, PAPER_STUDENTS
from kdbench.reporting import load_rows
from kdbench.tables import dataset_label, paper_tables, to_csv, to_latex, to_markdown
from kdbench.tracking import Tracker, flatten

BASELINE = [0.80, 0.84, 0.90, 0.78, 0.86]
Z = [-math.sqrt(1.6), -math.sqrt(0.4), 0.0, math.sqrt(0.4), math.sqrt(1.6)]  # mean 0, sd 1
T_975_DF4 = 2.776445  # the 97.5 % quantile of Student's t with 4 degrees of freedom
SD = 0.02
MEAN = T_975_DF4 * SD / math.sqrt(5)  # a gain whose two-sided p-value is exactly 0.05
DISTILLED = [b + MEAN + SD * z for b, z in zip(BASELINE, Z, strict=True)]


def log_cells(tracker: Tracker) -> None:
    """Ten finished cells (5 seeds, with and without LeNet) the way kdbench logs them."""
    parent = tracker.start_run("fake", {"kdbench.role": "invocation"})
    for teacher, accuracies in (("none", BASELINE), ("lenet", DISTILLED)):
        for seed, accuracy in enumerate(accuracies):
            tags = {"kdbench.role": "cell", "kdbench.cell_id": f"{teacher}{seed}",
                    "kdbench.dataset": "mnist-0-5", "kdbench.teacher": teacher,
                    "kdbench.student": "released-q3", "kdbench.backend": "statevector",
                    "kdbench.seed": str(seed)}  # fmt: skip
            run = tracker.start_run(f"{teacher} {seed}", tags, parent=parent)
            config = {"dataset": {"plugin": "mnist", "classes": [0, 1, 2, 3, 4, 5]},
                      "student": {"plugin": "released-q3", "qubits": 3},
                      "teacher": None if teacher == "none"
                      else {"plugin": "lenet", "shuffled": False}}  # fmt: skip
            tracker.log_params(run, flatten(config))
            metrics = {"test_accuracy": accuracy}
            if teacher != "none":
                metrics["teacher_test_accuracy"] = 0.99 - 0.001 * seed
            for epoch in (1, 2, 3):
                tracker.log_metrics(run, {"train_loss": 2.0 / epoch, "val_loss": 2.1 / epoch},
                                    epoch)  # fmt: skip
            tracker.log_metrics(run, metrics)
            tracker.finish(run)
    tracker.finish(parent)


@pytest.fixture
def tracker(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "arithmetic")
    log_cells(tracker)
    return tracker


def test_mean_std_paired_gain_interval_and_p_value(tracker):
    rows = {r.teacher: r for r in load_rows(tracker)}
    base, distilled = rows["none"], rows["lenet"]
    assert base.seeds == distilled.seeds == 5
    assert base.mean == pytest.approx(statistics.fmean(BASELINE))
    assert base.std == pytest.approx(statistics.stdev(BASELINE))
    assert distilled.teacher_mean == pytest.approx(0.99 - 0.002)
    gain = distilled.gain
    assert gain.n == 5
    assert gain.mean == pytest.approx(MEAN)
    assert gain.std == pytest.approx(SD)
    assert gain.low == pytest.approx(MEAN - T_975_DF4 * SD / math.sqrt(5), abs=1e-6)
    assert gain.high == pytest.approx(2 * MEAN, abs=1e-6)
    assert gain.p_value == pytest.approx(0.05, abs=1e-5)
    assert base.gain is None


def test_tables_in_every_format(tracker):
    (table,) = paper_tables(load_rows(tracker)).values()
    assert [(r.category, r.architecture) for r in table] == [
        ("Student", "Quantum, 3 qubit"),
        ("Teacher", "Classical, LeNet"),
        ("Distillation", "Teacher: LeNet, Student: Quantum, 3 qubit"),
    ]
    distillation = table[-1]
    assert distillation.dataset == "MNIST 0-5"
    assert distillation.cells[1] == f"{100 * MEAN:+.1f}"
    assert distillation.cells[4:] == ("97.89", "+1.33"), "the paper's own numbers beside ours"
    records = list(csv.reader(io.StringIO(to_csv(table))))
    assert records[0][0] == "Category" and len(records) == 4
    assert "| Distillation | Teacher: LeNet" in to_markdown(table, "t")
    latex = to_latex(table, "t")
    assert r"$\pm$" in latex and r"\toprule" in latex and "±" not in latex


def test_report_command_writes_and_logs_tables_and_figures(tracker, invoke, tmp_path):
    result = invoke("report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri,
                    "--format", "markdown", "--output", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| Student | Quantum, 3 qubit | MNIST 0-5 |" in result.stdout
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"table-mnist.md", "table-mnist.tex", "table-mnist.csv", "fig6-loss-mnist.png",
            "fig7-accuracy-mnist.png"} <= written  # fmt: skip
    assert (tmp_path / "out" / "fig6-loss-mnist.png").read_bytes()[:4] == b"\x89PNG"
    parent = tracker.latest_invocation()
    logged = {a.path for a in tracker.client.list_artifacts(parent, "report")}
    assert "report/fig7-accuracy-mnist.png" in logged


@pytest.mark.parametrize("profile", [None, "quick"])
def test_the_matrix_expands_every_row_of_the_papers_tables(registry, profile):
    spec = load_spec("benchmarks.toml", registry, profile=profile)
    cells = expand(spec)
    covered = set()
    for cell in cells:
        params = flatten(cell.config())
        dataset = dataset_label(params, cell.dataset.name)[1]
        if (
            params["student.plugin"] not in PAPER_STUDENTS
            or params.get("teacher.shuffled") == "True"
        ):
            continue
        teacher = params.get("teacher.plugin")
        covered.add((dataset, None if teacher is None else teacher, int(params["student.qubits"])))
        if teacher is not None:
            covered.add((dataset, teacher, None))  # the teacher's own row
    assert set(PAPER) <= covered
    seeds = {cell.seed for cell in cells}
    assert len(seeds) >= 5
    if profile == "quick":
        assert {cell.backend.plugin for cell in cells} == {"statevector"}
    else:
        assert {(cell.backend.plugin, cell.backend.component.shots) for cell in cells} == {
            ("aer", 5000)
        }

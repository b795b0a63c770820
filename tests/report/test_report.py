"""The report's arithmetic on runs in a real (temporary) MLflow store, its labels and [report]
section, and the paper matrix."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest
from scipy import stats

from kdbench.config import NO_TEACHER, load_spec
from kdbench.errors import ConfigError
from kdbench.matrix import expand
from kdbench.report import (
    ReportConfig,
    dataset_label,
    family_tables,
    load_rows,
    paired_gain,
    student_label,
    summarize,
    teacher_label,
    to_csv,
    to_latex,
    to_markdown,
)
from kdbench.results import Result
from kdbench.tracking import Tracker
from tests.helpers import (
    BASELINE,
    DISTILLED,
    MEAN,
    ROOT,
    SD,
    T_975_DF4,
    TINY,
    log_cells,
)


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


def test_tables_in_every_format(tracker, registry):
    paper = load_spec(ROOT / "benchmarks.toml", registry).report
    (table,) = family_tables(load_rows(tracker), paper).values()
    assert [(r.category, r.architecture) for r in table.rows] == [
        ("Student", "Quantum, 3 qubit"),
        ("Teacher", "Classical, LeNet"),
        ("Distillation", "Teacher: LeNet, Student: Quantum, 3 qubit"),
    ]
    distillation = table.rows[-1]
    assert distillation.dataset == "MNIST 0-5"
    assert distillation.cells[1] == f"{100 * MEAN:+.1f}"
    assert distillation.cells[9:] == ("97.89", "+1.33"), "the paper's own numbers beside ours"
    assert distillation.cells[5] == "0.050", "one comparison: BH's q is the p-value"
    # TOST at ±1 point: the larger one-sided p is the upper test's, P(t4 <= (Δ - 0.01) / se)
    upper = stats.t.cdf((MEAN - 0.01) / (SD / math.sqrt(5)), 4)
    assert distillation.cells[6] == f"{upper:.3f}", "+2.5 is not shown to lie within ±1"
    assert distillation.cells[8] == "–", "these runs did not record whether they collapsed"
    records = list(csv.reader(io.StringIO(to_csv(table))))
    assert records[0][0] == "Category" and len(records) == 4
    assert records[0][-2:] == ["Paper (%)", "Paper +Δ"]
    assert "| Distillation | Teacher: LeNet" in to_markdown(table, "t")
    latex = to_latex(table, "t")
    assert r"$\pm$" in latex and r"\toprule" in latex and "±" not in latex


def test_report_command_writes_and_logs_tables_and_figures(tracker, invoke, tmp_path):
    result = invoke("report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri,
                    "--format", "markdown", "--output", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| Student | Quantum, 3 qubit | MNIST 0-5 |" in result.stdout
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {
        "table-mnist.md",
        "table-mnist.tex",
        "table-mnist.csv",
        "fig6-loss-mnist.png",
        "fig7-accuracy-mnist.png",
    } <= written
    assert (tmp_path / "out" / "fig6-loss-mnist.png").read_bytes()[:4] == b"\x89PNG"
    parent = tracker.latest_invocation()
    logged = {a.path for a in tracker.client.list_artifacts(parent, "report")}
    assert "report/fig7-accuracy-mnist.png" in logged


def test_report_command_shows_the_configs_reference(tracker, invoke, tmp_path):
    result = invoke("report", str(ROOT / "benchmarks.toml"), "--experiment", "arithmetic",
                    "--tracking-uri", tracker.uri, "--format", "csv", "--output",
                    str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [r for r in csv.reader(io.StringIO(result.stdout)) if r]
    assert records[0][-2:] == ["Paper (%)", "Paper +Δ"]
    distilled = [r for r in records if r[0] == "Distillation"]
    assert distilled[0][-2:] == ["97.89", "+1.33"]
    assert [r[0] for r in records if r[0] == "Pooled"] == ["Pooled"]


def test_without_a_reference_the_reference_columns_are_dashes(tracker):
    (table,) = family_tables(load_rows(tracker)).values()
    assert table.headers[-2:] == ("Reference (%)", "Reference +Δ")
    assert all(row.cells[9:] == ("–", "–") for row in table.rows)


@pytest.mark.parametrize("profile", [None, "quick"])
def test_the_matrix_expands_every_row_of_the_papers_tables(registry, profile):
    spec = load_spec(ROOT / "benchmarks.toml", registry, profile=profile)
    cells = expand(spec)
    reference = spec.report
    # (data set, column, teacher) of every number the paper gives, and of every matrix row
    numbers = {
        (dataset, column, teacher)
        for dataset, columns in reference.numbers.items()
        for column, by_teacher in columns.items()
        for teacher in by_teacher
    }
    covered = set()
    for cell in cells:
        column = reference.students.get(cell.student.name)
        if column is not None:
            covered.add((cell.dataset.name, column, cell.teacher_name))
        if cell.teacher is not None:
            covered.add((cell.dataset.name, "teachers", cell.teacher_name))  # its own row
    assert len(numbers) == 36 and numbers <= covered
    seeds = {cell.seed for cell in cells}
    assert len(seeds) >= 5
    backends = {
        (c.backend.plugin, c.backend.component.shots, c.backend.component.gradient) for c in cells
    }
    if profile == "quick":  # exact: the profile's backend table starts from the defaults
        assert backends == {("statevector", None, "autograd")}
    else:
        assert backends == {("statevector", 5000, "parameter-shift")}


def test_labels_come_from_titles_and_fall_back_to_the_instance():
    params = {
        "dataset.plugin": "mnist",
        "dataset.classes": "[0, 1, 2]",
        "teacher.plugin": "lenet",
        "teacher.shuffled": "True",
        "student.plugin": "released-q3",
        "student.qubits": "3",
    }
    assert dataset_label(params, "digits") == ("MNIST", "MNIST 0-2")
    assert dataset_label({**params, "dataset.classes": "[1, 2]"}, "digits") == ("MNIST", "digits")
    assert teacher_label(params, "t") == "LeNet (outputs shuffled)"
    assert student_label(params, "s") == "Quantum, 3 qubit"
    assert student_label({"student.plugin": "pqc"}, "s") == "s (pqc, ? qubit)"
    # The benchmark's separable ablation of a model is named apart from the model.
    iqp = {"student.plugin": "iqp", "student.layers": "10", "student.entangle": "True"}
    assert student_label(iqp, "iqp") == "IQP variational (10 layers)"
    ablation = {**iqp, "student.entangle": "False"}
    assert student_label(ablation, "iqp-x") == "IQP variational (10 layers), no entanglement"
    assert student_label(ablation, "iqp-x", {"iqp-x": "IQP, CZ gone"}) == "IQP, CZ gone"
    # A plugin that is not installed (or has no title): its instance's name.
    third_party = {
        "dataset.plugin": "acme-images",
        "dataset.classes": "[0, 1]",
        "teacher.plugin": "acme-net",
        "student.plugin": "acme-student",
    }
    assert dataset_label(third_party, "acme-0-1") == ("acme-images", "acme-0-1")
    assert teacher_label(third_party, "acme") == "acme"
    assert student_label(third_party, "acme-q3") == "acme-q3"
    labels = {"digits": "Digits", "t": "My LeNet", "s": "Mine"}
    assert dataset_label(params, "digits", labels) == ("MNIST", "Digits")
    assert teacher_label(params, "t", labels) == "My LeNet (outputs shuffled)"
    assert student_label(params, "s", labels) == "Mine"


def test_a_student_without_a_title_is_named_by_its_instance(tracker):
    rows = load_rows(tracker)
    for row in rows:  # as if logged by a third-party student plugin
        for result in row.results:
            result.params["student.plugin"] = "acme-student"
    (table,) = family_tables(rows, ReportConfig(labels={"lenet": "LeNet-5"})).values()
    assert [r.architecture for r in table.rows] == [
        "released-q3",
        "Classical, LeNet-5",
        "Teacher: LeNet-5, Student: released-q3",
    ]


REPORT_OK = """
[report]
reference = "Paper"
[report.reference_students]
q2 = "q2"
[report.numbers.mnist-0-2]
teachers = { lenet = 99 }
q2 = { none = 60.5, lenet = [70, 9.5] }
[report.labels]
q2 = "Two qubits"
"""

BAD_REPORT = [
    ("report = 1", "expected a table", "report"),
    ("[report]\nrefrence = 'x'", "unknown key (did you mean 'reference'?)", "report.refrence"),
    ("[report]\nreference = 1", "expected a string", "report.reference"),
    ("[report]\nreference_students = ['q2']", "expected a table", "report.reference_students"),
    ("[report.reference_students]\nq2 = 2", "expected a string", "report.reference_students.q2"),
    ("[report.reference_students]\nq2 = 'teachers'", "choose another name",
     "report.reference_students.q2"),
    ("[report]\nnumbers = 1", "expected a table", "report.numbers"),
    ("[report.numbers]\nmnist-0-2 = 99", "expected a table", "report.numbers.mnist-0-2"),
    ("[report.numbers.mnist-0-2]\nq3 = { none = 1 }", "unknown column",
     "report.numbers.mnist-0-2.q3"),
    ("[report.numbers.mnist-0-2]\nteachers = 99", "expected a table",
     "report.numbers.mnist-0-2.teachers"),
    ("[report.numbers.mnist-0-2]\nteachers = { lenet = [99, 1] }", "expected a number in %",
     "report.numbers.mnist-0-2.teachers.lenet"),
    ("[report.numbers.mnist-0-2]\nteachers = { none = 99 }", "'none' is no teacher",
     "report.numbers.mnist-0-2.teachers.none"),
    ("[report.reference_students]\nq2 = 'q2'\n[report.numbers.mnist-0-2]\nq2 = { none = 101 }",
     "accuracy 0 to 100", "report.numbers.mnist-0-2.q2.none"),
    ("[report.reference_students]\nq2 = 'q2'\n[report.numbers.mnist-0-2]\nq2 = { lenet = nan }",
     "got nan", "report.numbers.mnist-0-2.q2.lenet"),
    ("[report.reference_students]\nq2 = 'q2'\n[report.numbers.mnist-0-2]\n"
     "q2 = { lenet = [70, 1, 2] }", "or [accuracy, gain]", "report.numbers.mnist-0-2.q2.lenet"),
    ("[report.labels]\nq2 = true", "expected a string", "report.labels.q2"),
]  # fmt: skip


def test_the_report_section_is_parsed(write_config, registry):
    report = load_spec(write_config(TINY.format(name="r") + REPORT_OK), registry).report
    assert report.reference == "Paper" and report.labels == {"q2": "Two qubits"}
    assert report.student_number("mnist-0-2", "q2", NO_TEACHER) == (60.5, None)
    assert report.student_number("mnist-0-2", "q2", "lenet") == (70.0, 9.5)
    assert report.teacher_number("mnist-0-2", "lenet") == (99.0, None)
    assert report.student_number("mnist-0-2", "other", "lenet") is None
    assert load_spec(write_config(TINY.format(name="r")), registry).report == ReportConfig()


@pytest.mark.parametrize(("text", "message", "key"), BAD_REPORT)
def test_a_bad_report_section_is_one_line_naming_the_key(
    write_config, registry, text, message, key
):
    path = write_config(text + "\n" + TINY.format(name="r"))  # before TINY's [[matrix]]
    with pytest.raises(ConfigError) as caught:
        load_spec(path, registry)
    assert message in caught.value.message
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert "\n" not in str(caught.value)


def test_a_bad_report_section_exits_2(write_config, invoke, isolated):
    path = write_config(TINY.format(name="r") + "\n[report.labels]\nq2 = 2\n")
    result = invoke("report", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: {path}: report.labels.q2: expected a string: instance = row label"
    )


def test_benjamini_hochberg_matches_scipy():
    from scipy.stats import false_discovery_control

    from kdbench.report.stats import benjamini_hochberg

    p_values = [0.01, 0.04, 0.03, 0.005, 0.5, 0.2]
    expected = false_discovery_control(p_values, method="bh")
    assert benjamini_hochberg(p_values) == pytest.approx(list(expected))
    with_untested = benjamini_hochberg([0.01, math.nan, 0.04])
    assert math.isnan(with_untested[1])
    assert with_untested[0] == pytest.approx(0.02) and with_untested[2] == pytest.approx(0.04)


def test_identical_differences_have_no_p_value_not_p_zero():
    from kdbench.report.cells import NO_SPREAD, gain_text

    gain = paired_gain({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.55, 1: 0.65, 2: 0.75})
    assert gain.no_spread and math.isnan(gain.p_value)
    assert gain.mean == pytest.approx(0.05)
    assert gain_text(gain)[2] == NO_SPREAD


def results(dataset: str, teacher: str, accuracies: list[float], collapsed: list[bool]):
    return [
        Result(
            dataset,
            teacher,
            "q3",
            "sim",
            "none" if teacher == "none" else "paper",
            seed,
            accuracy,
            collapsed=flag,
        )
        for seed, (accuracy, flag) in enumerate(zip(accuracies, collapsed, strict=True))
    ]


def test_pooled_gains_and_collapsed_seeds():
    from kdbench.report import pooled_table
    from kdbench.report.stats import pooled

    everything = []
    for dataset, gain in (("a", 0.01), ("b", 0.02), ("c", -0.01)):
        base = [0.5, 0.6, 0.7]
        everything += results(dataset, "none", base, [False, True, False])
        everything += results(dataset, "lenet", [b + gain for b in base], [False] * 3)
    rows = summarize(everything)
    (entry,) = pooled(rows)
    assert (entry.teacher, entry.pairs, entry.wins, entry.losses) == ("lenet", 3, 2, 1)
    assert entry.mean == pytest.approx(0.02 / 3)
    assert entry.sign_p == pytest.approx(1.0)  # 2 of 3: no evidence either way
    assert entry.low < 0 < entry.high
    (row,) = pooled_table(rows).rows
    assert row.cells == ("3", "+0.7", row.cells[2], "2 / 1", "1.000")
    baseline = next(r for r in rows if r.teacher == "none")
    assert baseline.collapsed == 1


def test_a_run_collapses_when_validation_falls_back_to_chance():
    from kdbench.distill import collapsed

    assert collapsed([0.2, 0.64, 0.5, 0.11], num_classes=6)  # the audit's run
    assert not collapsed([0.2, 0.3, 0.19], num_classes=6)  # never above chance
    assert not collapsed([0.5, 0.9, 0.4], num_classes=6)  # worse, not at chance


def test_against_a_second_run_marks_which_verdicts_hold(tracker, invoke, tmp_path):
    """A rerun with the same gain holds; a rerun whose gain is far larger does not (p = 0.05
    is not below 0.05: 'no evidence' once, 'helps' the other time)."""
    rerun = Tracker(tracker.uri, "rerun")
    log_cells(rerun)
    log_cells(Tracker(tracker.uri, "stronger"), [d + 0.05 for d in DISTILLED])
    for other, mark, second in (("rerun", "✓", "no evidence"), ("stronger", "✗", "helps")):
        result = invoke("report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri,
                        "--format", "csv", "--against", other,
                        "--output", str(tmp_path / other))  # fmt: skip
        assert result.exit_code == 0, result.output
        (row,) = [r for r in csv.reader(io.StringIO(result.stdout)) if r and r[0] == "Stability"]
        assert row[5] == "no evidence" and row[8] == second and row[9] == mark
        assert (tmp_path / other / f"stability-{other}.csv").exists()
    missing = invoke("report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri,
                     "--against", "nowhere")  # fmt: skip
    assert missing.exit_code == 2 and "nowhere" in missing.stderr


def test_a_partial_rerun_is_judged_over_the_arms_both_runs_have():
    """Holm's m counts the common arms in each run: a rerun of one arm of two faces m = 1,
    and so does the first run, whatever else it compared."""
    from kdbench.report.stability import stability_table

    def run(teachers):
        base = [0.5, 0.6, 0.7, 0.8]
        everything = results("a", "none", base, [False] * 4)
        for teacher in teachers:
            taught = [b + g for b, g in zip(base, [0.02, 0.03, 0.025, 0.035], strict=True)]
            everything += results("a", teacher, taught, [False] * 4)
        return summarize(everything)

    table = stability_table(run(["lenet", "alexnet"]), run(["lenet"]))
    assert [h for h in table.headers if "Holm" in h] == [
        "verdict (1st, Holm m=1)",
        "verdict (2nd, Holm m=1)",
    ]
    (row,) = table.rows
    assert row.cells[2] == row.cells[5] == "helps" and row.cells[6] == "✓"

"""The released notebooks' protocol as configuration: their softmax head, their loss, their
first-N split, selection on the best test epoch (flagged by the report), and the report's
equivalence tests."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from kdbench.api import DistillBatch
from kdbench.distill import Split, fit
from kdbench.losses import probabilities_to_log
from kdbench.plugins import load_registry
from kdbench.report import load_rows
from kdbench.report.stats import paired_gain
from kdbench_plugins.datasets import Mnist
from kdbench_plugins.students import ReadOut
from tests.helpers import TEST_PER_CLASS, log_cells, tiny_student


def outcome_probabilities(batch: int, qubits: int) -> torch.Tensor:
    return torch.softmax(torch.randn(batch, 2**qubits, dtype=torch.float64) * 3, dim=1)


def test_the_softmax_head_is_the_fashionmnist_baselines_cross_entropy():
    """`F.softmax(x, dim=1)` over all 8 outcome probabilities, fed to CrossEntropyLoss with
    the label as index (fashionmnist 0-5 3qubits): a softmax over probabilities."""
    probs, labels = outcome_probabilities(7, 3), torch.randint(0, 6, (7,))
    head = ReadOut("softmax", qubits=3, num_classes=6)
    ours = F.nll_loss(probabilities_to_log(head(probs)), labels)
    theirs = torch.nn.CrossEntropyLoss()(F.softmax(probs, dim=1), labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    assert torch.all(head(probs).sum(1) < 1), "the rest of the softmax sits on no class"


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
def test_hinton_at_the_notebooks_settings_is_the_notebooks_loss():
    """CE over the 2^(n+1) sigmoid-pair entries plus
    KLDivLoss()(log_softmax(y/T), softmax(t/T))·T²·C·α on y = its first C entries."""
    registry = load_registry(environ={})
    hinton = registry.get("distillers", "hinton")(temperature=3.0, kd_weight=0.9, ce_weight=1.0)
    probs, labels = outcome_probabilities(5, 3), torch.randint(0, 6, (5,))
    teacher = torch.randn(5, 6, dtype=torch.float64) * 4
    log_probs = probabilities_to_log(ReadOut("sigmoid-pair", qubits=3, num_classes=6)(probs))
    ours = hinton.loss(DistillBatch(log_probs, labels, teacher)).total

    high = torch.sigmoid(probs)
    y = torch.cat((high, 1 - high), -1)
    T, alpha, C = 3.0, 0.9, 6
    kd = torch.nn.KLDivLoss(reduction="mean")(
        F.log_softmax(y[:, :C] / T, dim=1), F.softmax(teacher / T, dim=1)
    )
    theirs = torch.nn.CrossEntropyLoss()(y, labels) + kd * (T * T * C * alpha)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)


def test_order_first_takes_each_class_in_file_order_whatever_the_seed(fake):
    root, arrays = fake
    dataset = Mnist(
        classes=[3, 1],
        order="first",
        train_per_class=4,
        val_per_class=3,
        test_per_class=TEST_PER_CLASS - 1,
    )
    from kdbench.data import make_splits

    a, b = make_splits(dataset, root, seed=0), make_splits(dataset, root, seed=7)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    test_x, test_y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]

    def ids(x: torch.Tensor, y: torch.Tensor, label: int) -> list[int]:
        return (x[y == label][:, 0, 0, 0] * 255).round().long().tolist()

    for label, c in enumerate([3, 1]):
        index = (train_y == c).nonzero().flatten()
        assert ids(a.train_x, a.train_y, label) == train_x[index[:4], 0, 0].tolist()
        assert ids(a.val_x, a.val_y, label) == train_x[index[4:7], 0, 0].tolist()
        test_index = (test_y == c).nonzero().flatten()[: TEST_PER_CLASS - 1]
        assert ids(a.test_x, a.test_y, label) == test_x[test_index, 0, 0].tolist()


def test_best_test_selection_keeps_the_best_test_epoch_and_says_what_validation_kept():
    torch.manual_seed(0)
    model = tiny_student()
    train = Split(torch.rand(48, 1, 28, 28), torch.randint(0, 3, (48,)))
    val = Split(torch.rand(24, 1, 28, 28), torch.randint(0, 3, (24,)))
    test = Split(torch.rand(30, 1, 28, 28), torch.randint(0, 3, (30,)))
    result = fit(
        model,
        lambda m, x: probabilities_to_log(m(x)),
        train,
        val,
        num_classes=3,
        epochs=6,
        batch_size=8,
        lr=0.1,
        seed=0,
        test=test,
    )
    test_accuracies = [m.test["accuracy"] for m in result.history]
    assert result.best_epoch == 1 + test_accuracies.index(max(test_accuracies))
    by_validation = max(result.history, key=lambda m: (m.val_accuracy, -m.val["ce"]))
    assert result.val_epoch == by_validation.epoch
    assert "epoch_test_accuracy" in result.history[0].logged()


NOTEBOOKS = """
[experiment]
name = "notebooks-tiny"
seeds = [0, 1]

[train]
epochs = 2
batch_size = 1
selection = "best-test"

[datasets.mnist-0-2]
plugin = "mnist"
classes = [0, 1, 2]
order = "first"
train_per_class = 6
val_per_class = 4
test_per_class = 5

[students.soft]
plugin = "released-q3"
readout = "softmax"

[[matrix]]
datasets = ["mnist-0-2"]
teachers = ["none"]
students = ["soft", "released-q3"]
backends = ["statevector"]
"""


def test_selection_on_test_is_flagged_wherever_its_accuracy_shows(write_config, invoke, isolated):
    config = write_config(NOTEBOOKS)
    ran = invoke("run", str(config))
    assert ran.exit_code == 0, ran.output
    assert "best TEST accuracy was kept" in " ".join(ran.stdout.split())
    shown = invoke("report", str(config), "--format", "csv", "--output", str(isolated / "out"))
    assert shown.exit_code == 0, shown.output
    records = [r for r in csv.reader(io.StringIO(shown.stdout)) if r]
    assert records[0][3] == "Accuracy (%, † selected on test)"
    assert all(r[3].endswith("†") for r in records[1:] if r[0] == "Student")
    markdown = (isolated / "out" / "table-mnist.md").read_text()
    assert "the epoch with the best TEST accuracy was kept" in markdown
    from kdbench.tracking import Tracker

    # An absolute URI: MLflow keeps one store per URI, and a relative one names another
    # test's folder once that test has opened it.
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "notebooks-tiny", create=False)
    for run in tracker.cell_runs():
        metrics = run.data.metrics
        assert metrics["test_accuracy"] >= metrics["val_selected_test_accuracy"]
        assert run.data.params["train.selection"] == "best-test"
    assert all(row.selected_on_test for row in load_rows(tracker))


def test_defaults_leave_the_ids_and_params_of_existing_configs_alone(write_config, registry):
    from kdbench.config import load_spec
    from kdbench.matrix import expand

    selection, order = 'selection = "best-test"', 'order = "first"'
    plain = write_config(NOTEBOOKS.replace(selection, "").replace(order, ""))
    explicit = write_config(
        NOTEBOOKS.replace(selection, 'selection = "validation"').replace(order, 'order = "random"'),
        "explicit.toml",
    )
    ids = [[c.id for c in expand(load_spec(p, registry))] for p in (plain, explicit)]
    assert ids[0] == ids[1]


def test_tost_and_the_minimum_detectable_effect():
    diffs = [0.004, -0.002, 0.006, 0.001, 0.003, -0.001, 0.005, 0.002]
    gain = paired_gain(dict.fromkeys(range(8), 0.5), {s: 0.5 + d for s, d in enumerate(diffs)})
    lower = stats.ttest_1samp(diffs, -0.01, alternative="greater").pvalue
    upper = stats.ttest_1samp(diffs, 0.01, alternative="less").pvalue
    assert gain.tost(0.01) == pytest.approx(max(lower, upper), rel=1e-9)
    assert gain.tost(0.001) > 0.05, "a margin inside the spread shows nothing"
    # At the MDE, a two-sided paired t-test at 5 % has about 80 % power (noncentral t).
    n, critical = gain.n, stats.t.ppf(0.975, gain.n - 1)
    shift = gain.mde / (gain.std / math.sqrt(n))
    power = stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift)
    assert power == pytest.approx(0.8, abs=0.03)


def test_the_report_prints_tost_and_mde_and_takes_a_margin(tracker_with_cells, invoke, tmp_path):
    tracker = tracker_with_cells
    for margin, header in ((None, "TOST p Holm (±1)"), ("5", "TOST p Holm (±5)")):
        args = ["report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri,
                "--format", "csv", "--output", str(tmp_path / "out")]  # fmt: skip
        result = invoke(*args, *(["--margin", margin] if margin else []))
        assert result.exit_code == 0, result.output
        records = [r for r in csv.reader(io.StringIO(result.stdout)) if r]
        assert records[0][9:11] == [header, "MDE (80%)"]
        (distilled,) = [r for r in records if r[0] == "Distillation"]
        assert distilled[10] != "–"
    bad = invoke(
        "report", "--experiment", "arithmetic", "--tracking-uri", tracker.uri, "--margin", "0"
    )
    assert bad.exit_code == 2 and "--margin" in bad.stderr


@pytest.fixture
def tracker_with_cells(tmp_path):
    from kdbench.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "arithmetic")
    log_cells(tracker)
    return tracker

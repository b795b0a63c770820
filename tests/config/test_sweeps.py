"""Distillers and sweeps as matrix axes: how cells multiply, what each point is, how bad input
is refused, a real run that resumes, and the report's selection on validation."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from kdbench.config import load_spec
from kdbench.errors import ConfigError
from kdbench.matrix import expand
from kdbench.report import build_report, family_tables, holm, load_rows, summarize
from kdbench.results import Result
from kdbench.tracking import Tracker, flatten
from tests.helpers import ROOT, TINY

EXAMPLES = ROOT / "examples"
MATRIX = '\n[[matrix]]\ndatasets = ["mnist-0-2"]\nteachers = ["none", "lenet"]\nstudents = ["q2"]\n'


def spec_of(write_config, registry, entry: str, extra: str = ""):
    text = TINY.format(name="sweeps").split("[[matrix]]")[0] + extra + MATRIX + entry
    return load_spec(write_config(text), registry)


def cells_of(write_config, registry, entry: str, extra: str = ""):
    return expand(spec_of(write_config, registry, entry, extra))


def test_the_default_distiller_is_the_paper_configured_by_distill(write_config, registry):
    default = cells_of(write_config, registry, "")
    explicit = cells_of(write_config, registry, 'distillers = ["paper"]')
    assert [c.id for c in default] == [c.id for c in explicit]
    assert [c.distiller_name for c in default] == ["none", "paper"]
    tuned = cells_of(write_config, registry, "", extra="[distill]\nkd_weight = 0.5\n")
    assert tuned[1].config()["distill"] == {
        "temperature": 3.0,
        "kd_weight": 0.5,
        "ce_weight": 1.0,
        "t2_scaling": False,
    }
    assert tuned[0].id == default[0].id and tuned[1].id != default[1].id


def test_distillers_multiply_taught_cells_only(write_config, registry):
    cells = cells_of(
        write_config, registry, 'distillers = ["paper", "hinton", "dkd", "label-smoothing"]'
    )
    arms = [(c.teacher_name, c.distiller_name) for c in cells]
    # The baseline once; each teacher-using distiller per teacher; label smoothing (no
    # teacher) once per student, with no teacher in its config.
    expected = [
        ("none", "none"),
        ("none", "label-smoothing"),
        ("lenet", "paper"),
        ("lenet", "hinton"),
        ("lenet", "dkd"),
    ]
    assert sorted(arms) == sorted(expected)
    smoothing = next(c for c in cells if c.distiller_name == "label-smoothing")
    assert smoothing.config()["teacher"] is None
    assert smoothing.config()["distill"]["plugin"] == "label-smoothing"
    assert len({c.id for c in cells}) == 5


def test_a_sweep_crosses_its_values_and_leaves_cells_that_do_not_use_them(write_config, registry):
    entry = 'sweep = { "distill.kd_weight" = [0.3, 0.9], "distill.temperature" = [2.0, 4.0] }'
    cells = cells_of(write_config, registry, entry)
    taught = [c for c in cells if c.teacher]
    assert len(taught) == 4 and len(cells) == 5, "the baseline does not use distill.*"
    assert {(c.sweep["distill.kd_weight"], c.sweep["distill.temperature"]) for c in taught} == {
        (0.3, 2.0),
        (0.3, 4.0),
        (0.9, 2.0),
        (0.9, 4.0),
    }
    for cell in taught:  # the value is the cell's config, id and params
        assert cell.config()["distill"]["kd_weight"] == cell.sweep["distill.kd_weight"]
        assert flatten(cell.config())["distill.temperature"] == str(
            cell.sweep["distill.temperature"]
        )
    assert "kd_weight=0.3" in next(c.label for c in taught if c.sweep["distill.kd_weight"] == 0.3)
    zipped = cells_of(write_config, registry, entry + "\nzip = true")
    assert len(zipped) == 3


def test_a_sweep_of_train_and_instance_options_reaches_every_cell_that_uses_them(
    write_config, registry
):
    entry = (
        'distillers = ["paper", "hinton"]\n'
        'sweep = { "train.lr" = [0.001, 0.01], "distillers.hinton.temperature" = [2.0, 8.0],'
        ' "students.q2.layers" = [1, 2] }'
    )
    cells = cells_of(write_config, registry, entry)
    by_arm: dict[str, set] = {}
    for cell in cells:
        by_arm.setdefault(cell.distiller_name, set()).add(tuple(sorted(cell.sweep)))
    assert by_arm["none"] == {("students.q2.layers", "train.lr")}
    assert by_arm["paper"] == {("students.q2.layers", "train.lr")}
    assert by_arm["hinton"] == {("distillers.hinton.temperature", "students.q2.layers", "train.lr")}
    assert len(cells) == 4 + 4 + 8
    hinton = [c for c in cells if c.distiller_name == "hinton"]
    assert {c.distiller.component.temperature for c in hinton} == {2.0, 8.0}
    assert {c.student.component.layers for c in hinton} == {1, 2}
    assert {c.spec.train.lr for c in hinton} == {0.001, 0.01}


@pytest.mark.parametrize(
    ("entry", "extra", "key", "message"),
    [
        ('sweep = { "distill.kd_weight" = [0.5, -1.0] }', "", "distill.kd_weight",
         "must be >= 0, got -1.0 (at the sweep point distill.kd_weight = -1.0 of matrix[0])"),
        ('sweep = { "students.q2.qubits" = [2, "three"] }', "", "students.q2.qubits",
         "at the sweep point students.q2.qubits = 'three' of matrix[0]"),
        ('sweep = { "experiment.seeds" = [[0], [1]] }', "", "matrix[0].sweep",
         "the seeds are not swept: they are the matrix's own axis"),
        ('sweep = { "matrix.students" = [["q2"]] }', "", "matrix[0].sweep",
         "a sweep sets an option of"),
        ('sweep = { "students.q2" = [1] }', "", "matrix[0].sweep",
         "must have the form students.NAME.OPTION"),
        ('sweep = { "train.lr" = [] }', "", "matrix[0].sweep.train.lr",
         "expected a non-empty list of values"),
        ('sweep = { "train.lr" = 0.1 }', "", "matrix[0].sweep.train.lr",
         "expected a non-empty list of values"),
        ('sweep = { "train.lr" = [0.1, 0.1] }', "", "matrix[0].sweep.train.lr", "repeats 0.1"),
        ('sweep = { "train.lr" = [0.1, 0.2], "train.epochs" = [1] }\nzip = true', "",
         "matrix[0].sweep", "zip = true needs lists of one length"),
        ("zip = true", "", "matrix[0].zip", "zips the values of a sweep, and there is none"),
        ('sweep = { "train.lr" = [0.1] }\nzip = "yes"', "", "matrix[0].zip",
         "expected true or false"),
        ('sweep = "lr"', "", "matrix[0].sweep", "expected a table of dotted keys"),
        ('sweep = { "students.q2.plugin" = ["pqc", "classical"] }', "", "matrix[0].sweep",
         "a sweep sets options, not plugins"),
        ('sweep = { "train.lr" = [0.1, 0.2], "train.epochs" = [1, 1] }\nzip = true\n'
         '[[matrix]]\ndatasets = ["mnist-0-2"]\nstudents = ["q2"]\n'
         'sweep = { "train.lr" = [0.1, 0.1], "train.epochs" = [1, 1] }\nzip = true', "",
         "matrix[1].sweep", "repeats (0.1, 1)"),
        ('distillers = ["hintn"]', "", "matrix[0].distillers[0]",
         "unknown distiller 'hintn' (did you mean 'hinton'?)"),
        ("", "[distill]\nkd_weight = 1.0\n[distillers.paper]\nkd_weight = 2.0\n", "distill",
         "which [distillers.paper] defines too"),
        ("", '[distill]\nplugin = "hinton"\n', "distill.plugin",
         "for another method define [distillers.NAME]"),
        ("", "[distill]\nkd_weigth = 1.0\n", "distill", "kd_weigth"),
    ],
)  # fmt: skip
def test_bad_sweeps_and_distillers_are_refused_naming_the_key(
    write_config, registry, entry, extra, key, message
):
    with pytest.raises(ConfigError) as caught:
        cells_of(write_config, registry, entry, extra)
    assert caught.value.key.startswith(key), caught.value
    assert message in caught.value.message


def test_a_sweep_over_too_many_points_or_used_by_no_cell_is_refused(write_config, registry):
    values = ", ".join(str(v) for v in range(1, 33))
    entry = f'sweep = {{ "train.epochs" = [{values}], "train.batch_size" = [{values}] }}'
    with pytest.raises(ConfigError, match="has 1024 points; at most 1000"):
        cells_of(write_config, registry, entry)
    extra = '[students.q3]\nplugin = "pqc"\nqubits = 3\nfront = "linear"\n'
    with pytest.raises(
        ConfigError, match=r"no cell of this entry uses the swept students\.q3\.layers"
    ):
        cells_of(write_config, registry, 'sweep = { "students.q3.layers" = [1, 2] }', extra)


def test_a_bad_sweep_value_stops_the_cli_in_one_line(write_config, invoke, isolated):
    text = TINY.format(name="bad-sweep") + 'sweep = { "train.lr" = [0.01, 0] }\n'
    result = invoke("run", str(write_config(text)), "--dry-run")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "train.lr: must be > 0, got 0 (at the sweep point train.lr = 0" in result.stderr
    assert not (isolated / "mlflow.db").exists()


FIVE = """
distillers = ["paper", "hinton", "mse", "dist", "label-smoothing"]
sweep = { "train.lr" = [0.001, 0.01] }
"""


@pytest.mark.slow
def test_five_distillers_by_a_sweep_run_resume_and_report_selected_points(
    write_config, invoke, isolated
):
    text = TINY.format(name="five").replace("seeds = [0]", "seeds = [0, 1]") + FIVE
    config = write_config(text)
    dry = invoke("run", str(config), "--dry-run")
    assert dry.exit_code == 0 and "24 cells" in dry.stdout and "sweep point" in dry.stdout
    first = invoke("run", str(config))
    assert first.exit_code == 0, first.output
    assert "24 cells finished, 0 already done, 0 failed" in first.stdout
    # A changed sweep value reruns exactly the cells at that value (each arm's 0.01 point).
    changed = write_config(text.replace("0.01]", "0.003]"))
    again = invoke("run", str(changed))
    assert "12 cells finished, 12 already done, 0 failed" in again.stdout, again.stdout

    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "five", create=False)
    runs = tracker.cell_runs()
    assert {r.data.tags["kdbench.distiller"] for r in runs} == {
        "none",
        "paper",
        "hinton",
        "mse",
        "dist",
        "label-smoothing",
    }
    client = MlflowClient(f"sqlite:///{isolated}/mlflow.db")
    dist = next(r for r in runs if r.data.tags["kdbench.distiller"] == "dist")
    assert len(client.get_metric_history(dist.info.run_id, "train_inter")) == 2
    rows = load_rows(tracker)
    selected = [r for r in rows if r.selected]
    assert len(selected) == 6 and all(r.points == 3 for r in selected)
    for row in selected:  # the point with the best mean validation accuracy, never test's
        arm = [r for r in rows if r.arm == row.arm]
        assert row.val_mean == max(r.val_mean for r in arm)

    report = invoke("report", str(changed), "--points", "--format", "markdown")
    assert report.exit_code == 0, report.output
    assert "Selected on validation" in report.stdout and "p Holm (m=5)" in report.stdout
    assert "every sweep point" in report.stdout and "✓" in report.stdout
    assert "Distiller: label-smoothing" in report.stdout
    folder = isolated / "kdbench-results" / "five"
    assert (folder / "fig-gain-mnist.png").stat().st_size > 10_000
    assert (folder / "sweep-mnist-train.lr.png").stat().st_size > 10_000
    assert (folder / "points-mnist.csv").read_text().count("\n") == 1 + 3 * 6, "arms × points"


def result(teacher, distiller, seed, test, val, point=None):
    return Result("d", teacher, "s", "b", distiller, seed, test, None, val, point or {},
                  {"dataset.plugin": "mnist", "dataset.classes": "[0, 1]"})  # fmt: skip


def test_selection_uses_validation_and_tunes_the_baseline_the_same_way():
    results = [
        # The baseline: lr 0.1 is better on validation, lr 0.01 on test.
        *(result("none", "none", s, 0.60, 0.70, {"train.lr": 0.1}) for s in range(3)),
        *(result("none", "none", s, 0.90, 0.50, {"train.lr": 0.01}) for s in range(3)),
        # Taught: kd_weight 0.5 best on validation.
        *(
            result("t", "paper", s, 0.65 + 0.01 * s, 0.80, {"distill.kd_weight": 0.5})
            for s in range(3)
        ),
        *(result("t", "paper", s, 0.99, 0.40, {"distill.kd_weight": 0.9}) for s in range(3)),
    ]
    rows = summarize(results)
    chosen = {r.distiller: r for r in rows if r.selected}
    assert chosen["none"].point == {"train.lr": 0.1}
    assert chosen["paper"].point == {"distill.kd_weight": 0.5}
    assert chosen["paper"].gain.mean == pytest.approx(0.06)  # against the tuned baseline
    unselected = next(r for r in rows if r.distiller == "paper" and not r.selected)
    assert unselected.gain.mean == pytest.approx(0.39)
    table = next(iter(family_tables(rows).values()))
    assert "Selected on validation" in table.headers and "p Holm (m=1)" in table.headers
    assert [r.cells[9] for r in table.rows if r.category != "Teacher"] == [
        "lr=0.1",
        "kd_weight=0.5",
    ]
    assert build_report(rows, lambda run, key: [], "x").points != {}


def test_holm_adjustment_by_hand():
    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.005])
    # Sorted: 0.005·4, 0.01·3, 0.03·2, 0.04·1, each at least the one before.
    assert adjusted[4] == pytest.approx(0.02)
    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[2] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06)
    assert math.isnan(adjusted[3])
    assert holm([0.6, 0.9]) == [1.0, 1.0]


def test_holm_is_applied_per_table_over_its_comparisons():
    results = [result("none", "none", s, 0.5 + 0.01 * s, 0.5) for s in range(4)]
    for teacher, gain in (("a", 0.02), ("b", 0.05), ("c", 0.001)):
        results += [
            result(teacher, "paper", s, 0.5 + 0.01 * s + gain + 0.003 * (-1) ** s, 0.5)
            for s in range(4)
        ]
    rows = summarize(results)
    table = next(iter(family_tables(rows).values()))
    assert "p Holm (m=3)" in table.headers
    raw = {r.teacher: r.gain.p_value for r in rows if r.gain}
    expected = dict(zip(raw, holm(list(raw.values())), strict=True))
    shown = [r for r in table.rows if r.category == "Distillation"]
    for row, teacher in zip(shown, ("a", "b", "c"), strict=True):
        assert row.cells[4] == (
            "<0.001" if expected[teacher] < 0.001 else f"{expected[teacher]:.3f}"
        )


@pytest.mark.slow
def test_every_built_in_distiller_trains_a_real_student(write_config, invoke, isolated, registry):
    names = registry.names("distillers")
    assert len(names) >= 9
    listed = ", ".join(f'"{n}"' for n in names)
    config = write_config(TINY.format(name="all") + f"distillers = [{listed}]\n")
    result = invoke("run", str(config))
    assert result.exit_code == 0, result.output
    assert f"{len(names) + 1} cells finished, 0 already done, 0 failed" in result.stdout
    runs = Tracker(f"sqlite:///{isolated}/mlflow.db", "all", create=False).cell_runs()
    client = MlflowClient(f"sqlite:///{isolated}/mlflow.db")
    for run in runs:
        distiller = run.data.tags["kdbench.distiller"]
        expected = {"none": None, "paper": None}.get(distiller, distiller)  # paper: no plugin key
        assert run.data.params.get("distill.plugin") == expected
        parts = {k for k in run.data.metrics if k.startswith("train_")}
        assert {"train_loss", "train_ce", "train_accuracy"} <= parts
        if distiller not in ("none", "label-smoothing"):
            assert "teacher_test_accuracy" in run.data.metrics
            assert len(parts) > 3, f"{distiller} logs its own terms"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert len(history) == 2 and all(math.isfinite(m.value) for m in history)


def test_the_distillers_example_crosses_every_built_in_distiller(registry):
    spec = load_spec(EXAMPLES / "distillers.toml", registry)
    cells = expand(spec)
    assert {c.distiller_name for c in cells} == {"none", *registry.names("distillers")}
    per_arm: dict[tuple, set] = {}
    for cell in cells:
        per_arm.setdefault(cell.group, set()).add(tuple(sorted(cell.sweep.items())))
    points = {group[-1]: len(p) for group, p in per_arm.items()}
    assert points["none"] == 1 and points["label-smoothing"] == 2 and points["fitnet"] == 2
    two = ("none", "label-smoothing", "fitnet")
    assert all(n == 4 for name, n in points.items() if name not in two)
    assert len(cells) == 2 * 2 * 5 * (1 + 8 * 4 + 2 + 2)


def test_preflight_checks_every_swept_configuration_not_just_every_name(
    write_config, invoke, isolated
):
    """One instance name, two configurations: the one that cannot run is refused before
    anything is logged (MNIST's class 0 has 5923 training images)."""
    text = TINY.format(name="swept-pool") + (
        'sweep = { "datasets.mnist-0-2.train_per_class" = [7000, 12] }\n'
    )
    result = invoke("run", str(write_config(text)), "--dry-run")
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "fewer than the 7008 requested" in result.stderr and "mnist-0-2" in result.stderr
    assert not (isolated / "mlflow.db").exists()


def test_zipped_values_may_repeat_and_unquoted_dotted_keys_work(write_config, registry):
    zipped = 'sweep = { "train.lr" = [0.001, 0.001], "train.epochs" = [1, 2] }\nzip = true'
    assert len(cells_of(write_config, registry, zipped)) == 4
    unquoted = "sweep = { train.lr = [0.001, 0.01] }"
    cells = cells_of(write_config, registry, unquoted)
    assert {c.sweep["train.lr"] for c in cells} == {0.001, 0.01}


def test_a_point_is_validated_with_its_own_entry_only(write_config, registry):
    """The file's value of a swept option, and the other entries, do not judge a point."""
    base = TINY.format(name="scope").split("[[matrix]]")[0]
    text = (
        base
        + """
[students.q1]
plugin = "pqc"
qubits = 2
front = "linear"
readout = "first-c"
allow_unused_qubits = true    # first-c on 5 classes of 4 qubits: qubit 3 never decides

[datasets.mnist-0-4]
plugin = "mnist"
classes = [0, 1, 2, 3, 4]
train_per_class = 12
val_per_class = 8
test_per_class = 10

[[matrix]]                    # q1 at 2 qubits reads 4 classes: 5 need the sweep's 3 qubits
datasets = ["mnist-0-4"]
students = ["q1"]
sweep = { "students.q1.qubits" = [3, 4] }

[[matrix]]                    # 3 classes: fine at 2 qubits, whatever the first entry sweeps
datasets = ["mnist-0-2"]
students = ["q1"]
sweep = { "students.q1.readout" = ["linear", "first-c"] }
"""
    )
    cells = expand(load_spec(write_config(text), registry))
    assert sorted(c.student.component.qubits for c in cells) == [2, 2, 3, 4]
    bad = text.replace("[3, 4]", "[2, 3]")
    with pytest.raises(ConfigError, match=r"reads out at most 4 classes.*students\.q1\.qubits = 2"):
        load_spec(write_config(bad), registry)


def test_cells_carry_no_other_points_config(write_config, registry):
    """A cell travels to its worker with its Spec: not with the Specs of every point."""
    import pickle

    entry = 'sweep = { "train.lr" = [' + ", ".join(f"0.00{i}" for i in range(1, 10)) + "] }"
    extra = '\n[[matrix]]\ndatasets = ["mnist-0-2"]\nstudents = ["q2"]\nseeds = [5]\n'
    cells = cells_of(write_config, registry, entry + extra)
    plain = next(c for c in cells if c.seed == 5)
    swept = next(c for c in cells if c.sweep)
    assert len(pickle.dumps(plain)) < 2 * len(pickle.dumps(swept))
    assert all(not e.points for e in plain.spec.matrix)


def test_a_distiller_may_not_name_the_harness_own_figures():
    import torch

    from kdbench.api import Distiller, Loss
    from kdbench.errors import PluginError
    from kdbench.losses import training_loss

    class Greedy(Distiller):
        name = "greedy"

        def loss(self, batch):
            ce = batch.cross_entropy()
            return Loss(ce, {"accuracy": ce})

    log_p = torch.log_softmax(torch.randn(4, 3), 1)
    with pytest.raises(PluginError, match="names a part 'accuracy'"):
        training_loss(log_p, torch.tensor([0, 1, 2, 0]), torch.randn(4, 3), Greedy())


@pytest.mark.slow
def test_the_report_of_a_config_labels_reused_cells_as_the_config_does(
    write_config, invoke, isolated
):
    """A cell run first without a sweep, then reused by a config that sweeps over it: the
    report of the second config shows it at its point there."""
    first = write_config(TINY.format(name="reuse"), "first.toml")
    assert invoke("run", str(first)).exit_code == 0
    swept = write_config(
        TINY.format(name="reuse") + 'sweep = { "train.lr" = [0.001, 0.003] }\n', "swept.toml"
    )
    again = invoke("run", str(swept))
    assert "2 cells finished, 2 already done" in again.stdout, again.stdout
    report = invoke("report", str(swept), "--points", "--format", "csv")
    assert report.exit_code == 0, report.output
    assert report.stdout.count("lr=0.001") >= 2 and report.stdout.count("lr=0.003") >= 2

"""Nothing `kdbench report` derives from a name (the experiment's, a data set's) leaves the
folder it belongs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.names import file_name
from kdbench.tracking import Tracker
from tests.helpers import TINY, log_cells


def written(root: Path) -> set[Path]:
    return {p.resolve() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "name", ["../../escaped", "/tmp/kdbench-absolute", "a/../../b", "..", ".hidden", "x\\..\\y"]
)
def test_report_of_an_experiment_named_like_a_path_stays_in_its_folder(invoke, isolated, name):
    """A store (MLflow allows any experiment name) whose experiment is named like a path:
    the report is written under kdbench-results/, in one folder."""
    log_cells(Tracker(f"sqlite:///{isolated}/mlflow.db", name))
    before = written(isolated.parent)
    result = invoke(
        "report", "--experiment", name, "--tracking-uri", f"sqlite:///{isolated}/mlflow.db"
    )
    assert result.exit_code == 0, result.output
    store = (isolated / "mlruns").resolve()  # the store's own copy, logged to the run
    new = {path for path in written(isolated.parent) - before if store not in path.parents}
    results = (isolated / "kdbench-results").resolve()
    assert new, "the report wrote its files"
    assert all(results in path.parents for path in new), sorted(new)
    assert {path.parent for path in new} == {results / file_name(name)}


@pytest.mark.parametrize(
    ("text", "name"),
    [("../../x", "-..-x"), ("/abs", "-abs"), ("a b/c", "a-b-c"), ("", "-"), ("é", "-")],
)
def test_file_name_is_one_safe_component(text, name):
    assert file_name(text) == name
    assert "/" not in file_name(text) and not file_name(text).startswith(".")


def test_names_of_the_longest_allowed_length_train_report_and_draw(write_config, invoke, isolated):
    """64-character names everywhere: the cells' figures and the report's draw them."""
    dataset, teacher, student = "d" * 63 + "+", "t" * 63 + ".", "s" * 63 + "-"
    text = TINY.format(name="n" * 255).replace("mnist-0-2", dataset)
    text = text.replace('"lenet"', f'"{teacher}"').replace(
        "[teachers.lenet]", f"[teachers.{teacher}]"
    )
    text = text.replace('"q2"', f'"{student}"').replace("[students.q2]", f"[students.{student}]")
    text = text.replace(f"[datasets.{dataset}]", f'[datasets."{dataset}"]')
    text = text.replace(f"[teachers.{teacher}]", f'[teachers."{teacher}"]\nplugin = "lenet"')
    text = text.replace(f"[students.{student}]", f'[students."{student}"]')
    config = write_config(text)
    result = invoke("run", str(config))
    assert result.exit_code == 0, result.output[-2000:]
    assert "2 cells finished" in result.stdout
    report = invoke("report", str(config))
    assert report.exit_code == 0, report.output[-2000:]
    assert list((isolated / "kdbench-results" / ("n" * 255)).glob("fig7-*.png"))

"""Every built-in plugin's defaults are its recommended, working settings: a config that
names only the plugin runs, on a small data set of its kind, and trains (one epoch here).

Only the training budget is set (epochs, images per class): what a test can afford."""

from __future__ import annotations

import pytest

from kdbench.options import describe
from kdbench.plugins import load_registry
from kdbench.testing import make, run_config
from kdbench_plugins.students import FieldStudent

BUILTIN = load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""})

DATA = """
[experiment]
name = "defaults-{kind}"
seeds = [0]

[train]
epochs = 1
batch_size = 16

[datasets.two]                        # the issue's newcomer: two MNIST classes
plugin = "mnist"
classes = [3, 8]
train_per_class = 16
val_per_class = 8
test_per_class = 8
"""
VECTOR_DATA = """
[datasets.vectors]
plugin = "two-curves"
features = 4
train_per_class = 16
val_per_class = 8
test_per_class = 8

[datasets.bars]
plugin = "bars-and-stripes"
train_per_class = 16
val_per_class = 8
test_per_class = 8
"""
TEACHER = """
[teachers.t]
plugin = "{name}"
epochs = 1
train_per_class = 24
"""


def names(kind: str) -> list[str]:
    return BUILTIN.names(kind)


def _run(text: str, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(text)
    ran = run_config(config, BUILTIN, store=tmp_path / "store")
    assert ran.finished, ran.errors
    return ran


@pytest.mark.parametrize("kind", ["students", "encoders", "backends", "distillers"])
def test_every_plugin_of_a_kind_runs_at_its_defaults(kind, isolated):
    """Students on their kind of data (the paper's: six MNIST classes, which its presets are
    made for; the field's models: a benchmark task of 4 features, 4×4 bars and stripes for
    the QCNN), the others with a plain pqc on two classes."""
    text = DATA.format(kind=kind)
    field: list[str] = []
    if kind == "students":
        text = text.replace("classes = [3, 8]", "classes = [0, 1, 2, 3, 4, 5]")
        field = [n for n in names(kind) if issubclass(BUILTIN.get(kind, n), FieldStudent)]
        text += VECTOR_DATA
    for name in names(kind):
        text += f'\n[{kind}.{name}-default]\nplugin = "{name}"\n'
    plain = [f"{n}-default" for n in names(kind)]
    students = [f"{n}-default" for n in names(kind) if n not in field] if field else ["pqc"]
    if kind == "encoders":
        for name in names(kind):
            text += f'\n[students.pqc-{name}]\nplugin = "pqc"\nencoder = "{name}-default"\n'
        students = [f"pqc-{name}" for name in names(kind)]
    backends = plain if kind == "backends" else ["statevector"]
    teachers, distillers = ('["none"]', '["paper"]')
    if kind == "distillers":
        text += TEACHER.format(name="lenet")
        teachers, distillers = '["none", "t"]', str(plain).replace("'", '"')
    text += (
        f'\n[[matrix]]\ndatasets = ["two"]\nteachers = {teachers}\n'
        f"students = {str(students).replace(chr(39), chr(34))}\n"
        f"backends = {str(backends).replace(chr(39), chr(34))}\ndistillers = {distillers}\n"
    )
    for name in field:  # each on its kind of data
        data = "bars" if name == "qcnn" else "vectors"
        text += f'\n[[matrix]]\ndatasets = ["{data}"]\nstudents = ["{name}-default"]\n'
    ran = _run(text, isolated)
    expected = {
        "students": len(plain),
        "encoders": len(plain),
        "backends": len(plain),
        "distillers": 1 + len(plain),
    }[kind]
    assert len(ran.outcomes) == expected
    for run in ran.runs():  # trained: one epoch moved it off its start
        assert run.data.metrics["train_loss"] > 0


@pytest.mark.parametrize("name", names("teachers"))
def test_every_teacher_teaches_at_its_defaults(name, isolated):
    text = DATA.format(kind=f"teacher-{name}") + TEACHER.format(name=name)
    if "epochs" not in {o.name for o in describe(BUILTIN.get("teachers", name))}:  # not torch
        text = text.replace(f'plugin = "{name}"\nepochs = 1\n', f'plugin = "{name}"\n')
    if name == "ensemble":  # its members at the same budget
        text += TEACHER.format(name="lenet").replace("[teachers.t]", "[teachers.lenet]")
        text += TEACHER.format(name="alexnet").replace("[teachers.t]", "[teachers.alexnet]")
        text = text.replace(
            'plugin = "ensemble"\nepochs = 1\ntrain_per_class = 24\n', 'plugin = "ensemble"\n'
        )
    text += '\n[[matrix]]\ndatasets = ["two"]\nteachers = ["t"]\nstudents = ["pqc"]\n'
    (run,) = _run(text, isolated).runs()  # trained, tested, and its outputs taught
    assert 0 <= run.data.metrics["teacher_test_accuracy"] <= 1


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_a_plain_pqc_on_a_data_set_at_its_defaults(dataset, isolated):
    """The newcomer's first config: `plugin = "pqc"` on a data set named by its plugin alone
    (all ten classes; the two-class case is every other test here)."""
    text = DATA.format(kind=dataset)
    text += (
        f'\n[datasets.all]\nplugin = "{dataset}"\n\n[students.s]\nplugin = "pqc"\n'
        '\n[[matrix]]\ndatasets = ["all"]\nstudents = ["s"]\n'
    )
    (run,) = _run(text, isolated).runs()
    assert run.data.metrics["test_accuracy"] > 0.1  # one epoch: above chance (10 classes)


def test_pqc_defaults_are_the_recommended_start():
    pqc = make(BUILTIN, "students", "pqc")
    assert (pqc.encoder, pqc.readout, pqc.weight_spread) == ("monotone-angle", "linear", 0.1)

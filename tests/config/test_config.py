"""Config validation: each bad input is one line naming file, key and what is allowed; exit 2."""

from __future__ import annotations

import pytest

from kdbench.config import load_spec
from kdbench.errors import ConfigError
from tests.helpers import TINY

VALID = TINY.format(name="cfg")


def replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


BAD = [
    ("[experiment\nname = 1", "invalid TOML", ""),
    (VALID + "\n[trian]\n", "unknown section (did you mean 'train'?)", "trian"),
    (replace("epochs = 2", "epochs = 0"), "must be >= 1", "train.epochs"),
    (replace("batch_size = 16", "batch_size = -4"), "must be >= 1", "train.batch_size"),
    (replace("batch_size = 16", "batch_size = 'big'"), "expected integer", "train.batch_size"),
    (
        replace("epochs = 2", "epoch = 2"),
        "unknown option 'epoch' (did you mean 'epochs'?)",
        "train",
    ),
    (
        replace('plugin = "mnist"', 'plugin = "mnsit"'),
        "unknown dataset plugin 'mnsit' (did you mean 'mnist'?)",
        "datasets.mnist-0-2.plugin",
    ),
    (
        replace("classes = [0, 1, 2]", "classes = [0, 1, 1]"),
        "repeats a label",
        "datasets.mnist-0-2.classes",
    ),
    (
        replace("classes = [0, 1, 2]", "classes = [0, 1, 12]"),
        "not among the labels 0..9",
        "datasets.mnist-0-2.classes",
    ),
    (
        replace("train_per_class = 12", "train_per_class = 0"),
        "must be >= 1",
        "datasets.mnist-0-2.train_per_class",
    ),
    (replace("qubits = 2", "qubits = 'three'"), "expected integer", "students.q2.qubits"),
    (replace('front = "linear"', 'front = "liner"'), "did you mean 'linear'?", "students.q2.front"),
    (replace("qubits = 2", "qubits = 2\nwidth = 3"), "unknown option 'width'", "students.q2"),
    (
        replace('teachers = ["none", "lenet"]', 'teachers = ["lenet5"]'),
        "unknown teacher 'lenet5' (did you mean 'lenet'?)",
        "matrix[0].teachers[0]",
    ),
    (
        replace('backends = ["statevector"]', "backends = []"),
        "non-empty list",
        "matrix[0].backends",
    ),
    (
        replace('students = ["q2"]', 'students = ["q2"]\nstudent = 1'),
        "unknown key",
        "matrix[0].student",
    ),
    (VALID.split("[[matrix]]")[0], "nothing to run", "matrix"),
    (
        replace("classes = [0, 1, 2]", "classes = [0, 1, 2, 3, 4]").replace(
            'front = "linear"', 'front = "linear"\nreadout = "first-c"'
        ),
        "student 'q2' reads out at most 4 classes but dataset 'mnist-0-2' has 5",
        "matrix[0]",
    ),
    (replace("seeds = [0]", "seeds = []"), "at least one seed", "experiment.seeds"),
    (replace("[teachers.lenet]", "[teachers.none]"), "reserved", "teachers.none"),
    (
        replace("epochs = 1", "epochs = 1\ndevice = 'tpu'"),
        "expected 'auto' | 'cpu' | 'cuda'",
        "teachers.lenet.device",
    ),
]


@pytest.mark.parametrize(("text", "message", "key"), BAD)
def test_bad_config_is_one_clear_line(write_config, registry, text, message, key):
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_spec(path, registry)
    error = caught.value
    assert message in error.message
    assert error.file == str(path)
    assert (error.key or "") == key
    assert "\n" not in str(error)


def test_cli_reports_bad_config_with_exit_2_and_no_traceback(write_config, invoke, isolated):
    path = write_config(replace("epochs = 2", "epochs = 0"))
    result = invoke("run", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {path}: train.epochs: must be >= 1, got 0"
    assert not (isolated / "mlflow.db").exists(), "nothing may be logged for an invalid config"


def test_missing_file(invoke, isolated):
    result = invoke("run", "nope.toml")
    assert result.exit_code == 2
    assert "nope.toml: no such file" in result.stderr


def test_valid_config_resolves_defaults_and_implicit_instances(write_config, registry):
    spec = load_spec(write_config(VALID), registry)
    assert spec.train.epochs == 2 and spec.train.lr == 0.001
    paper = spec.instance("distillers", "paper").component  # the default distiller
    assert paper.temperature == 3.0 and paper.kd_weight == 0.9
    # "statevector" and the student's default encoder have no table: plugin defaults.
    assert spec.instance("backends", "statevector").plugin == "statevector"
    encoder = spec.instance("encoders", "monotone-angle").component
    assert encoder.scale == pytest.approx(3.14159265 / 2)
    lenet = spec.instance("teachers", "lenet")
    assert lenet.plugin == "lenet" and lenet.component.epochs == 1
    assert isinstance(paper.kd_weight, float)

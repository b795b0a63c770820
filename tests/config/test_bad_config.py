"""Bad config through the CLI: exit 2, one "Error:" line saying what is wrong, nothing written.

The config's text (plugin options of each kind, counts, classes, students, ensembles, an empty
matrix), `--set`, `--jobs`, profiles, the config file itself (not UTF-8, a directory, a device, a
FIFO, too big, a symbolic link loop), names and seeds. Each case runs `kdbench run` in-process
and checks that neither MLflow nor the teacher cache got anything; tests/config/test_config.py
checks what `load_spec` raises (file, key and message) for such input.
"""

from __future__ import annotations

import os
import re
import signal
import sys

import numpy as np
import pytest
import torch

from kdbench.api import MAX_SEED
from kdbench.config import COMPONENT_KINDS, MAX_CONFIG_BYTES, load_spec
from kdbench.data import make_splits
from kdbench.names import INSTANCE_NAME, experiment_name_problem
from kdbench_plugins.datasets import Mnist
from tests.helpers import (
    ROOT,
    TINY,
    VALID,
    after,
    assert_clean_failure,
    dry_run,
    replace,
    with_matrix,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ENSEMBLE = 'students = ["q2"]\ndatasets = ["mnist-0-2"]\n'

# (id, config text, the message class in the error line)
CONFIGS = [
    # -- unknown or mistyped plugin options, each kind --
    (
        "dataset-unknown-option",
        after("test_per_class = 10", "colour = true"),
        "datasets.mnist-0-2: unknown option 'colour'; allowed: classes,",
    ),
    (
        "dataset-mistyped-option",
        replace("val_per_class = 8", "val_per_clas = 8"),
        "unknown option 'val_per_clas' (did you mean 'val_per_class'?)",
    ),
    (
        "dataset-option-wrong-type",
        replace("train_per_class = 12", "train_per_class = 1.5"),
        "datasets.mnist-0-2.train_per_class: expected integer, got 1.5",
    ),
    (
        "teacher-mistyped-option",
        replace("[teachers.lenet]\nepochs = 1", "[teachers.lenet]\nepoch = 1"),
        "teachers.lenet: unknown option 'epoch' (did you mean 'epochs'?)",
    ),
    (
        "teacher-option-wrong-type",
        after("[teachers.lenet]", 'shuffled = "yes"'),
        "teachers.lenet.shuffled: expected boolean, got 'yes'",
    ),
    (
        "student-mistyped-option",
        after("qubits = 2", "entanglment = 'ring'"),
        "students.q2: unknown option 'entanglment' (did you mean 'entanglement'?)",
    ),
    (
        "student-option-wrong-choice",
        after("qubits = 2", 'readout = "last"'),
        "students.q2.readout: expected 'first-c' | 'sigmoid-pair' | 'softmax' | 'mod-c'"
        " | 'parity' | 'linear' | 'z-linear', got 'last'",
    ),
    (
        "student-readout-ignores-a-qubit",
        replace("qubits = 2", 'qubits = 3\nreadout = "first-c"'),
        "student 'q2' on dataset 'mnist-0-2': readout 'first-c' ignores qubit 2 of 3 with 3"
        " classes",
    ),
    (
        "encoder-mistyped-option",
        VALID + "\n[encoders.angle]\nscael = 2.0\n",
        "encoders.angle: unknown option 'scael' (did you mean 'scale'?)",
    ),
    (
        "encoder-option-wrong-type",
        VALID + '\n[encoders.angle]\nscale = "pi"\n',
        "encoders.angle.scale: expected number, got 'pi'",
    ),
    (
        "encoder-unknown",
        after("qubits = 2", 'encoder = "angel"'),
        "students.q2.encoder: unknown encoder 'angel' (did you mean 'angle'?)",
    ),
    (
        "backend-mistyped-option",
        VALID + "\n[backends.statevector]\nshot = 10\n",
        "backends.statevector: unknown option 'shot' (did you mean 'shots'?)",
    ),
    (
        "backend-option-wrong-choice",
        VALID + '\n[backends.statevector]\ngradient = "finite-difference"\n',
        "backends.statevector.gradient: expected 'autograd' | 'parameter-shift'",
    ),
    (
        "backend-unknown",
        replace('backends = ["statevector"]', 'backends = ["statevecter"]'),
        "matrix[0].backends[0]: unknown backend 'statevecter' (did you mean 'statevector'?)",
    ),
    (
        "backend-plugin-unknown",
        VALID + '\n[backends.noisy]\nplugin = "air"\n',
        "backends.noisy.plugin: unknown backend plugin 'air' (did you mean 'aer'?)",
    ),
    # -- zero or negative counts --
    (
        "teacher-epochs-zero",
        replace("[teachers.lenet]\nepochs = 1", "[teachers.lenet]\nepochs = 0"),
        "teachers.lenet.epochs: must be >= 1, got 0",
    ),
    (
        "train-epochs-negative",
        replace("epochs = 2", "epochs = -3"),
        "train.epochs: must be >= 1, got -3",
    ),
    (
        "teacher-batch-size-zero",
        after("[teachers.lenet]", "batch_size = 0"),
        "teachers.lenet.batch_size: must be >= 1, got 0",
    ),
    (
        "teacher-samples-zero",
        replace("train_per_class = 60", "train_per_class = 0"),
        "teachers.lenet.train_per_class: must be >= 1, got 0",
    ),
    (
        "statevector-shots-zero",
        VALID + "\n[backends.statevector]\nshots = 0\n",
        "backends.statevector.shots: must be >= 1, got 0",
    ),
    (
        "aer-shots-negative",
        VALID + '\n[backends.noisy]\nplugin = "aer"\nshots = -100\n',
        "backends.noisy.shots: must be >= 1, got -100",
    ),
    (
        "ibm-runtime-shots-zero",
        VALID + '\n[backends.ibm]\nplugin = "ibm-runtime"\nshots = 0\n',
        "backends.ibm.shots: must be >= 1, got 0",
    ),
    (
        "val-samples-zero",
        replace("val_per_class = 8", "val_per_class = 0"),
        "datasets.mnist-0-2.val_per_class: must be >= 1, got 0",
    ),
    (
        "test-samples-negative",
        replace("test_per_class = 10", "test_per_class = -1"),
        "datasets.mnist-0-2.test_per_class: must be >= 1, got -1",
    ),
    ("lr-zero", after("batch_size = 16", "lr = 0"), "train.lr: must be > 0, got 0"),
    (
        "temperature-negative",
        VALID + "\n[distill]\ntemperature = -1.0\n",
        "distill.temperature: must be > 0, got -1.0",
    ),
    (
        "lease-shorter-than-two-heartbeats",
        replace("seeds = [0]", "seeds = [0]\nheartbeat_s = 10\nlease_s = 15"),
        "experiment.lease_s: 15 s is shorter than two heartbeats (heartbeat_s = 10)",
    ),
    (
        "heartbeat-zero",
        replace("seeds = [0]", "seeds = [0]\nheartbeat_s = 0"),
        "experiment.heartbeat_s: must be > 0, got 0",
    ),
    (
        "seed-negative",
        replace("seeds = [0]", "seeds = [-1]"),
        "experiment.seeds: must be >= 0, got [-1]",
    ),
    (
        "matrix-seeds-empty",
        after('backends = ["statevector"]', "seeds = []"),
        "matrix[0].seeds: expected a non-empty list of integers >= 0",
    ),
    # -- classes --
    (
        "classes-negative",
        replace("classes = [0, 1, 2]", "classes = [-1, 0, 1]"),
        "datasets.mnist-0-2.classes: must be >= 0, got [-1, 0, 1]",
    ),
    (
        "classes-empty",
        replace("classes = [0, 1, 2]", "classes = []"),
        "datasets.mnist-0-2.classes: needs at least 2 labels",
    ),
    (
        "fashion-classes-outside",
        replace('plugin = "mnist"', 'plugin = "fashion-mnist"').replace(
            "classes = [0, 1, 2]", "classes = [9, 10]"
        ),
        "datasets.mnist-0-2.classes: [10] not among the labels 0..9",
    ),
    # -- students that cannot read out the classes --
    (
        "preset-student-too-few-outcomes",
        with_matrix(
            '[[matrix]]\ndatasets = ["mnist"]\nstudents = ["released-q3"]\n',
        ),
        "student 'released-q3' reads out at most 8 classes but dataset 'mnist' has 10",
    ),
    (
        "classical-student-too-few-outcomes",
        with_matrix(
            '[[matrix]]\ndatasets = ["all"]\nstudents = ["c2"]\n',
            '[datasets.all]\nplugin = "mnist"\n[students.c2]\nplugin = "classical"\nqubits = 2\n'
            'readout = "first-c"\n',
        ),
        "student 'c2' reads out at most 4 classes but dataset 'all' has 10",
    ),
    # -- ensembles --
    (
        "ensemble-unknown-member",
        with_matrix(
            '[[matrix]]\nteachers = ["ens"]\n' + ENSEMBLE,
            '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "lenett"]\n',
        ),
        "teachers.ens.members[1]: unknown teacher 'lenett' (did you mean 'lenet'?)",
    ),
    (
        "ensemble-itself",
        with_matrix(
            '[[matrix]]\nteachers = ["ens"]\n' + ENSEMBLE,
            '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "ens"]\n',
        ),
        "teachers.ens.members[1]: 'ens' would contain itself",
    ),
    (
        "ensemble-cycle",
        with_matrix(
            '[[matrix]]\nteachers = ["a"]\n' + ENSEMBLE,
            '[teachers.a]\nplugin = "ensemble"\nmembers = ["lenet", "b"]\n'
            '[teachers.b]\nplugin = "ensemble"\nmembers = ["alexnet", "a"]\n',
        ),
        "would contain itself",
    ),
    (
        "ensemble-one-member",
        with_matrix(
            '[[matrix]]\nteachers = ["ens"]\n' + ENSEMBLE,
            '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet"]\n',
        ),
        "teachers.ens.members: an ensemble needs at least 2 teachers",
    ),
    (
        "ensemble-member-none",
        with_matrix(
            '[[matrix]]\nteachers = ["ens"]\n' + ENSEMBLE,
            '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "none"]\n',
        ),
        "teachers.ens.members[1]: 'none' cannot be a member",
    ),
    # -- matrices that expand to nothing, or name nothing --
    ("matrix-empty-list", "matrix = []\n" + with_matrix(""), "matrix: no [[matrix]] entry"),
    (
        "matrix-datasets-not-a-list",
        replace('datasets = ["mnist-0-2"]', 'datasets = "mnist-0-2"'),
        "matrix[0].datasets: expected a non-empty list of names",
    ),
    (
        "eval-backend-unknown",
        after('backends = ["statevector"]', 'eval_backend = "noisy"'),
        "matrix[0].eval_backend: unknown backend 'noisy'",
    ),
    # -- IBM hardware without confirmation --
    (
        "ibm-hardware-unconfirmed",
        replace('backends = ["statevector"]', 'backends = ["ibm"]')
        + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "ibm_brisbane"\n',
        "backends.ibm.confirm_hardware: backend 'ibm_brisbane' is real IBM Quantum hardware",
    ),
    (
        "density-matrix-device-unknown",
        VALID + '\n[backends.dm]\nplugin = "density-matrix"\nnoise = "FakeMannila"\n',
        "backends.dm.noise: unknown fake backend 'FakeMannila' (did you mean 'FakeManila",
    ),
    (
        "density-matrix-noise-file-missing",
        VALID + '\n[backends.dm]\nplugin = "density-matrix"\nnoise = "no/such/model.pkl"\n',
        "backends.dm.noise: 'no/such/model.pkl' is neither a fake IBM device",
    ),
    (
        "density-matrix-depolarizing-above-1",
        VALID + '\n[backends.dm]\nplugin = "density-matrix"\ndepolarizing = 1.5\n',
        "backends.dm.depolarizing: must be <= 1, got 1.5",
    ),
    (
        "also-test-on-unknown",
        after('backends = ["statevector"]', 'also_test_on = ["noisy"]'),
        "matrix[0].also_test_on[0]: unknown backend 'noisy'",
    ),
    (
        "ibm-fake-device-unknown",
        VALID + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "fake_manilla"\n',
        "backends.ibm.backend: unknown fake backend 'fake_manilla' (did you mean 'FakeManila",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_config(write_config, invoke, isolated, text, message):
    path = write_config(text)
    assert_clean_failure(invoke("run", str(path)), message, isolated)


# -- the command line --


def test_set_without_equals(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--set", "train.epochs")
    assert_clean_failure(
        result, "--set expects KEY=VALUE with a dotted KEY, got 'train.epochs'", isolated
    )


def test_set_with_an_empty_key_part(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--set", "train..epochs=2")
    assert_clean_failure(result, "--set expects KEY=VALUE with a dotted KEY", isolated)


def test_set_with_a_wrong_type(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--set", "train.epochs=many")
    assert_clean_failure(result, "train.epochs: expected integer, got 'many'", isolated)


def test_set_replacing_a_section_with_a_number(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--set", "students=3")
    assert_clean_failure(result, "students: expected a table", isolated)


def test_jobs_zero(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--jobs", "0")
    assert_clean_failure(result, "Invalid value for '--jobs'", isolated)


# -- profiles and keys --


def test_unknown_profile(write_config, invoke, isolated):
    path = write_config(VALID + "\n[profiles.quick.train]\nepochs = 1\n")
    result = invoke("run", str(path), "--profile", "quik")
    assert_clean_failure(
        result, "profiles: unknown profile 'quik' (did you mean 'quick'?); defined: quick", isolated
    )


def test_profile_with_a_section_that_is_not_a_table(write_config, invoke, isolated):
    path = write_config(VALID + "\n[profiles.quick]\nstudents = 3\n")
    result = invoke("run", str(path), "--profile", "quick")
    assert_clean_failure(result, "students: expected a table", isolated)


def test_profiles_that_are_not_tables(write_config, invoke, isolated):
    # The message quotes [profiles.NAME]: printed as text, not taken for rich markup.
    path = write_config(VALID + "\n[profiles]\nquick = 1\n")
    assert_clean_failure(invoke("run", str(path)), "expected tables [profiles.NAME]", isolated)


def test_key_with_control_characters_stays_on_one_line(write_config, invoke, isolated):
    path = write_config(VALID + '\n["trai\\n\\u001b[31mn"]\nepochs = 1\n')
    result = invoke("run", str(path))
    assert_clean_failure(result, "trai\\n\\x1b[31mn: unknown section (did you mean", isolated)


# -- the config file itself: not UTF-8, not a regular file, huge --


def test_config_not_utf8(tmp_path, invoke, isolated):
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID.replace('"bad-input"', '"caf\xe9"').encode("latin-1"))
    assert_clean_failure(invoke("run", str(path)), "cannot read: 'utf-8' codec", isolated)


def test_config_is_a_directory(tmp_path, invoke, isolated):
    (tmp_path / "matrix.toml").mkdir()
    result = invoke("run", str(tmp_path / "matrix.toml"))
    assert_clean_failure(result, "is a directory", isolated)


def test_config_that_is_dev_zero(invoke, isolated):
    result = invoke("run", "/dev/zero")
    assert_clean_failure(result, "/dev/zero: is a device or socket, not a regular file", isolated)
    assert "at most 1 MiB" in result.stderr


def test_config_that_is_a_fifo_does_not_block(invoke, isolated, tmp_path):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)

    def hang(signum, frame):
        raise AssertionError("reading the FIFO blocked")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)  # opening a FIFO without a writer blocks for ever
    try:
        result = invoke("run", str(fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert_clean_failure(result, f"{fifo}: is a FIFO, not a regular file", isolated)


def test_config_over_the_size_limit(invoke, isolated, tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text(VALID + "#" * (MAX_CONFIG_BYTES - len(VALID.encode())) + "\n")
    result = invoke("run", str(path))
    assert_clean_failure(
        result, f"is {MAX_CONFIG_BYTES + 1} bytes; a config file may have at most 1 MiB", isolated
    )


def test_config_at_the_size_limit_loads(registry, tmp_path):
    path = tmp_path / "big.toml"
    padding = "#" * (MAX_CONFIG_BYTES - len(VALID.encode()) - 1) + "\n"
    path.write_text(VALID + padding)
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_spec(path, registry).experiment.name == "bad-input"


def test_config_that_is_a_symlink_loop(invoke, isolated, tmp_path):
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    result = invoke("run", str(loop))
    assert_clean_failure(result, "cannot read: [Errno 40] Too many levels of symbolic", isolated)


# -- names and seeds ------------------------------------------------------------------------------

BAD_EXPERIMENT_NAMES = [
    ("empty", '""', "experiment.name: must not be empty"),
    ("spaces", '"   "', "experiment.name: must not be empty or only spaces"),
    ("newline", '"a\\nb"', "experiment.name: contains a control character or line break"),
    ("escape", '"run\\u001b[31m"', "contains a control character"),
    ("too-long", '"' + "x" * 257 + '"', "has 257 characters; MLflow allows at most 256"),
    ("too-long-folder", '"' + "x" * 256 + '"', "has 256 bytes in UTF-8;"),
    ("too-many-bytes", '"' + "é" * 200 + '"', "has 400 bytes in UTF-8; it becomes the folder"),
    ("slash", '"paper/tables"', "contains '/' or '\\'; it becomes the folder kdbench-results/"),
    ("backslash", '"paper\\\\tables"', "contains '/' or '\\'"),
    ("dot", '"."', "starts with '.'"),
    ("dot-dot", '".."', "starts with '.'; it becomes the folder"),
    ("hidden", '".secret"', "starts with '.'"),
]


@pytest.mark.parametrize(
    ("value", "message"),
    [c[1:] for c in BAD_EXPERIMENT_NAMES],
    ids=[c[0] for c in BAD_EXPERIMENT_NAMES],
)
def test_bad_experiment_name_writes_nothing(write_config, invoke, isolated, value, message):
    text = replace('name = "bad-input"', f"name = {value}")
    assert_clean_failure(invoke("run", str(write_config(text))), message, isolated)


def test_experiment_name_at_the_limits_passes(write_config, invoke, isolated, mnist_root):
    for name in ("x" * 255, "é" * 127, "Paper tables (v2), 5 seeds"):
        result = dry_run(invoke, write_config, replace('name = "bad-input"', f'name = "{name}"'))
        assert result.exit_code == 0, result.stderr


BAD_INSTANCE_NAMES = [
    ("space", '[students."q 2"]\nplugin = "pqc"', "students: bad instance name 'q 2'"),
    ("slash", '[datasets."a/b"]\nplugin = "mnist"', "datasets: bad instance name 'a/b'"),
    ("hidden", '[teachers.".t"]\nplugin = "lenet"', "teachers: bad instance name '.t'"),
    ("dash-first", '[backends."-x"]\nplugin = "aer"', "backends: bad instance name '-x'"),
    ("non-ascii", '[encoders."é"]\nplugin = "angle"', "encoders: bad instance name 'é'"),
    ("too-long", f'[teachers.{"t" * 65}]\nplugin = "lenet"', "teachers: bad instance name 'ttt"),
    ("control", '[students."q\\t2"]\nplugin = "pqc"', "students: bad instance name 'q\\t2'"),
]


@pytest.mark.parametrize(
    ("table", "message"),
    [c[1:] for c in BAD_INSTANCE_NAMES],
    ids=[c[0] for c in BAD_INSTANCE_NAMES],
)
def test_bad_instance_name_writes_nothing(write_config, invoke, isolated, table, message):
    result = invoke("run", str(write_config(VALID + "\n" + table + "\n")))
    assert_clean_failure(result, message, isolated)
    assert "1 to 64 letters (A-Z, a-z), digits, '-', '_', '.' or '+'" in result.stderr


def test_very_long_instance_name_is_shortened_in_the_message(write_config, invoke, isolated):
    result = invoke("run", str(write_config(VALID + f'\n[students.{"q" * 5000}]\nplugin="pqc"\n')))
    assert_clean_failure(result, "(5000 characters)", isolated)
    assert len(result.stderr) < 400


def test_instance_name_of_64_characters_passes(write_config, invoke, isolated, mnist_root):
    name = "q" * 63 + "+"
    text = replace("[students.q2]", f'[students."{name}"]').replace('"q2"', f'"{name}"')
    result = dry_run(invoke, write_config, text)
    assert result.exit_code == 0, result.stderr


def _names_in(document: dict) -> tuple[list[str], list[str]]:
    """(experiment names, instance names) a parsed config document uses."""
    experiments = [document.get("experiment", {}).get("name", "kdbench")]
    names = [name for kind in COMPONENT_KINDS for name in document.get(kind, {})]
    for entry in document.get("matrix", []):
        names += [n for kind in COMPONENT_KINDS for n in entry.get(kind, []) if n != "none"]
    for profile in document.get("profiles", {}).values():
        sub = _names_in(profile)
        experiments += sub[0] if "experiment" in profile else []
        names += sub[1]
    return experiments, names


def _repository_configs() -> dict[str, dict]:
    found = {}
    files = [ROOT / "benchmarks.toml", *ROOT.glob("examples/**/*.toml")]
    files += [*ROOT.glob("tests/configs/*.toml")]
    for path in files:
        if path.name != "pyproject.toml":
            found[str(path.relative_to(ROOT))] = tomllib.loads(path.read_text())
    for doc in ROOT.glob("docs/*.md"):
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)):
            found[f"{doc.name}#{i}"] = tomllib.loads(block)
    found["TINY"] = tomllib.loads(TINY.format(name="tiny"))
    return found


def test_every_name_in_the_repository_configs_passes(registry):
    configs = _repository_configs()
    assert len(configs) >= 7
    checked = 0
    for where, document in configs.items():
        experiments, names = _names_in(document)
        for name in experiments:
            assert experiment_name_problem(name) is None, (where, name)
        for name in names:
            assert INSTANCE_NAME.fullmatch(name), (where, name)
            checked += 1
    for kind in COMPONENT_KINDS:  # a plugin name can be used bare, as an instance name
        for name in registry.names(kind):
            assert INSTANCE_NAME.fullmatch(name), (kind, name)
    assert checked > 30
    for name in ("benchmarks.toml", "examples/aer-noisy.toml", "tests/configs/arch-check.toml"):
        load_spec(ROOT / name, registry)  # and they load


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            replace("seeds = [0]", f"seeds = [0, {MAX_SEED + 1}]"),
            f"experiment.seeds: must be <= {MAX_SEED}, got [0, {MAX_SEED + 1}]",
        ),
        (
            after('backends = ["statevector"]', f"seeds = [{2**64}]"),
            f"matrix[0].seeds: must be <= {MAX_SEED}, got [{2**64}]",
        ),
        (
            after('backends = ["statevector"]', "seeds = [-1]"),
            f"matrix[0].seeds: expected a non-empty list of integers >= 0 and <= {MAX_SEED}",
        ),
        (
            after("test_per_class = 10", f"sample_seed = {2**40}"),
            f"datasets.mnist-0-2.sample_seed: must be <= {MAX_SEED}, got {2**40}",
        ),
        (
            after("test_per_class = 10", "sample_seed = -5"),
            "datasets.mnist-0-2.sample_seed: must be >= 0, got -5",
        ),
    ],
    ids=["experiment", "matrix", "matrix-negative", "sample-seed", "sample-seed-negative"],
)
def test_seed_out_of_range(write_config, invoke, isolated, text, message):
    assert_clean_failure(invoke("run", str(write_config(text))), message, isolated)


def test_largest_seed_is_accepted_and_usable(write_config, invoke, isolated, mnist_root):
    text = after('backends = ["statevector"]', f"seeds = [{MAX_SEED}]")
    text = text.replace("test_per_class = 10", f"test_per_class = 10\nsample_seed = {MAX_SEED}")
    result = dry_run(invoke, write_config, text)
    assert result.exit_code == 0, result.stderr
    # What the seed is handed to accepts it: the sampling, torch and numpy generators.
    splits = make_splits(Mnist(classes=[0, 1], sample_seed=MAX_SEED), mnist_root, seed=MAX_SEED)
    assert torch.bincount(splits.train_y).tolist() == [150, 150]
    torch.manual_seed(MAX_SEED)
    np.random.seed(MAX_SEED)
    np.random.default_rng(MAX_SEED)

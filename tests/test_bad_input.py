"""Bad input through the CLI: exit 2, one "Error:" line saying what is wrong, nothing written.

Extends tests/test_config.py (whose cases call load_spec) with every kind of input a user can
get wrong: plugin options of each kind, counts, classes, students, ensembles, an empty matrix,
data directories and IDX files, teacher checkpoints, tracking stores, IBM credentials and the
command line itself. Each case runs `kdbench run` in-process and checks that neither MLflow
nor the teacher cache got anything.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from kdbench import paths
from kdbench.fetch import clear_cache
from kdbench_plugins.datasets import Mnist
from tests.conftest import TINY

VALID = TINY.format(name="bad-input")


def replace(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def after(anchor: str, lines: str) -> str:
    """VALID with `lines` added after the line `anchor`."""
    return replace(anchor, f"{anchor}\n{lines}")


def with_matrix(matrix: str, extra: str = "") -> str:
    """VALID with its [[matrix]] replaced by `matrix` (and `extra` tables before it)."""
    return VALID.split("[[matrix]]")[0] + extra + "\n" + matrix


def assert_clean_failure(result, message: str, cwd: Path) -> None:
    """Exit 2, exactly one line on stderr, "Error: ...message...", nothing written."""
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, everything[-2000:]
    assert "Traceback" not in everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert message in lines[0], lines[0]
    assert not (cwd / "mlflow.db").exists(), "nothing may be logged"
    assert not (cwd / "mlruns").exists(), "nothing may be logged"
    cache = cwd / "cache"
    assert not cache.exists() or not any(cache.rglob("*")), "nothing may be cached"


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


# -- the command line and the config file itself --


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


def test_config_not_utf8(tmp_path, invoke, isolated):
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID.replace('"bad-input"', '"caf\xe9"').encode("latin-1"))
    assert_clean_failure(invoke("run", str(path)), "cannot read: 'utf-8' codec", isolated)


def test_config_is_a_directory(tmp_path, invoke, isolated):
    (tmp_path / "matrix.toml").mkdir()
    result = invoke("run", str(tmp_path / "matrix.toml"))
    assert_clean_failure(result, "is a directory", isolated)


def test_jobs_zero(write_config, invoke, isolated):
    path = write_config(VALID)
    result = invoke("run", str(path), "--jobs", "0")
    assert_clean_failure(result, "Invalid value for '--jobs'", isolated)


def test_fetch_unknown_dataset(invoke, isolated):
    result = invoke("data", "fetch", "mnsit", "--data-dir", str(isolated / "data"))
    assert_clean_failure(result, "unknown dataset plugin 'mnsit' (did you mean 'mnist'?)", isolated)
    assert not (isolated / "data").exists()


# -- data: directories and IDX files --


@pytest.fixture
def data_copy(tmp_path: Path):
    """A data directory of links to the real MNIST files; `own(name)` makes one a real copy
    that a test may damage."""
    real = Mnist().raw_dir(paths.data_dir())
    if not all((real / name).is_file() for name in Mnist.md5):
        pytest.skip(f"MNIST is not in {real}: run 'kdbench data fetch mnist'")
    root = tmp_path / "data"
    raw = Mnist().raw_dir(root)
    raw.mkdir(parents=True)
    for name in Mnist.md5:
        (raw / name).symlink_to(real / name)

    def own(name: str) -> Path:
        target = raw / name
        target.unlink()
        shutil.copyfile(real / name, target)
        return target

    clear_cache()
    yield root, own
    clear_cache()


def test_data_dir_empty(write_config, invoke, isolated, tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(tmp_path / "empty"))
    assert_clean_failure(
        result, f"data not found: {tmp_path / 'empty'}/MNIST/raw does not", isolated
    )


def test_data_dir_is_a_file(write_config, invoke, isolated, tmp_path):
    (tmp_path / "afile").write_text("")
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(tmp_path / "afile"))
    assert_clean_failure(result, "Invalid value for '--data-dir'", isolated)
    assert "is a file" in result.stderr


def test_configured_data_dir_is_a_file(write_config, invoke, isolated, tmp_path):
    (tmp_path / "afile").write_text("")
    text = after("seeds = [0]", f'data_dir = "{tmp_path / "afile"}"')
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(result, "data not found", isolated)


def test_idx_file_missing(write_config, invoke, isolated, data_copy):
    root, _ = data_copy
    (Mnist().raw_dir(root) / "t10k-labels-idx1-ubyte").unlink()
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(
        result, "missing t10k-labels-idx1-ubyte; run 'kdbench data fetch'", isolated
    )


def test_idx_file_truncated(write_config, invoke, isolated, data_copy):
    root, own = data_copy
    path = own("t10k-images-idx3-ubyte")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(
        result, "corrupt (md5 mismatch) t10k-images-idx3-ubyte; run 'kdbench data fetch'", isolated
    )


def test_idx_file_with_a_flipped_byte(write_config, invoke, isolated, data_copy):
    root, own = data_copy
    path = own("train-labels-idx1-ubyte")
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # a label changes: the checksum must catch it
    path.write_bytes(bytes(data))
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(result, "corrupt (md5 mismatch) train-labels-idx1-ubyte", isolated)


def test_idx_file_is_a_directory(write_config, invoke, isolated, data_copy):
    root, _ = data_copy
    path = Mnist().raw_dir(root) / "train-images-idx3-ubyte"
    path.unlink()
    path.mkdir()
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(result, "missing train-images-idx3-ubyte", isolated)


# -- teacher checkpoints --


def checkpoint_config(path: Path) -> str:
    return replace(
        "[teachers.lenet]\nepochs = 1", f'[teachers.lenet]\nepochs = 1\ncheckpoint = "{path}"'
    )


def test_checkpoint_missing(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "nope.pt"
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(result, f"teacher checkpoint {path}: no such file", isolated)


def test_checkpoint_not_a_state_dict(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3), 1], path)
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a state dict of tensors", isolated
    )


def test_checkpoint_not_a_torch_file(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00not a pickle\n" * 8)
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a loadable state dict (", isolated
    )


def test_checkpoint_of_another_architecture(write_config, invoke, isolated, tmp_path, registry):
    path = tmp_path / "lenet10.pt"
    lenet = registry.get("teachers", "lenet")()
    torch.save(lenet.build(10, (1, 28, 28)).state_dict(), path)  # 10 classes, the config has 3
    result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(
        result,
        f"teacher checkpoint {path} does not fit the architecture: Error(s) in loading",
        isolated,
    )
    assert "size mismatch" in result.stderr


def test_checkpoint_of_an_ensemble_member(write_config, invoke, isolated, tmp_path):
    path = tmp_path / "dict.pt"
    torch.save({"weight": "not a tensor"}, path)
    text = with_matrix(
        '[[matrix]]\nteachers = ["ens"]\n' + ENSEMBLE,
        f'[teachers.alex]\nplugin = "alexnet"\ncheckpoint = "{path}"\n'
        '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "alex"]\n',
    )
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(
        result, f"teacher checkpoint {path}: not a state dict of tensors", isolated
    )


# -- tracking stores --


def test_tracking_server_unreachable_fails_fast(write_config, invoke, isolated):
    started = time.monotonic()
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", "http://127.0.0.1:9")
    assert_clean_failure(result, "tracking server http://127.0.0.1:9 is unreachable", isolated)
    assert time.monotonic() - started < 20, "must not wait for MLflow's retries"


def test_tracking_store_in_a_missing_directory(write_config, invoke, isolated):
    uri = "sqlite:////proc/nope/mlflow.db"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)


def test_tracking_store_inside_a_file(write_config, invoke, isolated, tmp_path):
    (tmp_path / "afile").write_text("")
    uri = f"sqlite:///{tmp_path}/afile/mlflow.db"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)
    assert (tmp_path / "afile").read_text() == ""


def test_tracking_store_that_is_not_a_database(write_config, invoke, isolated, tmp_path):
    store = tmp_path / "store.db"
    store.write_text("not sqlite\n" * 100)
    uri = f"sqlite:///{store}"
    result = invoke("run", str(write_config(VALID)), "--tracking-uri", uri)
    assert_clean_failure(result, f"tracking store '{uri}' cannot be used", isolated)
    assert store.read_text() == "not sqlite\n" * 100


def test_report_on_no_store_creates_none(invoke, isolated):
    result = invoke("report", "--experiment", "nope")
    assert_clean_failure(result, "no experiment 'nope' in sqlite:///", isolated)


# -- real IBM hardware without credentials --


@pytest.fixture
def no_ibm_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No IBM Quantum account: an empty home, no QISKIT_IBM_* variables."""
    from qiskit_ibm_runtime.accounts import management

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KDBENCH_DATA", str(paths.data_dir()))  # the data stays where it is
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("QISKIT_IBM_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(
        management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(home / ".qiskit" / "qiskit-ibm.json")
    )
    return home


IBM_HARDWARE = (
    replace('backends = ["statevector"]', 'backends = ["ibm"]')
    + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "ibm_brisbane"\n'
    "confirm_hardware = true\n"
)


def test_ibm_hardware_without_credentials(write_config, invoke, isolated, no_ibm_account):
    result = invoke("run", str(write_config(IBM_HARDWARE)))
    assert_clean_failure(
        result, "ibm-runtime: no IBM Quantum credentials for backend 'ibm_brisbane'", isolated
    )


def test_ibm_hardware_as_eval_backend_without_credentials(
    write_config, invoke, isolated, no_ibm_account
):
    text = (
        after('backends = ["statevector"]', 'eval_backend = "ibm"')
        + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "ibm_brisbane"\n'
        "confirm_hardware = true\n"
    )
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(result, "no IBM Quantum credentials", isolated)


def test_existing_store_gets_no_new_runs(write_config, invoke, isolated, data_copy):
    """A store that already exists is not touched by a run that fails its checks."""
    from mlflow.tracking import MlflowClient

    root, own = data_copy
    store = isolated / "store.db"
    uri = f"sqlite:///{store}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("bad-input")
    before = store.read_bytes()
    path = own("t10k-labels-idx1-ubyte")
    path.write_bytes(path.read_bytes()[:-1])
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root), "--tracking-uri", uri)
    assert (
        result.exit_code == 2 and "corrupt (md5 mismatch) t10k-labels-idx1-ubyte" in result.stderr
    )
    experiment = client.get_experiment_by_name("bad-input").experiment_id
    assert client.search_runs([experiment]) == []
    assert store.read_bytes() == before

"""Reliability against bad input: config files that are not files, names, seeds,
data-dependent counts, unusable data files, checkpoints, and plugins that misbehave.

Each case goes through the real CLI in-process (or `load_spec`), real MNIST and real files;
each bad input must give one "Error:" line, exit code 2 and nothing written.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

import kdbench
import kdbench.plugins
from kdbench import data, paths
from kdbench.api import MAX_SEED
from kdbench.config import COMPONENT_KINDS, MAX_CONFIG_BYTES, load_spec
from kdbench.data import check_sizes, make_splits
from kdbench.errors import DataError
from kdbench.names import INSTANCE_NAME, experiment_name_problem
from kdbench.plugins import load_registry
from kdbench.plugins import registry as process_registry
from kdbench_plugins.datasets import Mnist
from tests import test_bad_input, test_plugins
from tests.conftest import TINY
from tests.test_bad_input import (
    VALID,
    after,
    assert_clean_failure,
    checkpoint_config,
    replace,
    with_matrix,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Fixtures shared with those files: links to the real MNIST files, a site of installed
# third-party plugins.
data_copy = test_bad_input.data_copy
site = test_plugins.site

ROOT = Path(__file__).parent.parent
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def mnist_root() -> Path:
    root = paths.data_dir()
    if not all((Mnist().raw_dir(root) / name).is_file() for name in Mnist.md5):
        pytest.skip(f"MNIST is not in {root}: run 'kdbench data fetch mnist'")
    return root


def dry_run(invoke, write_config, text: str, *args: str):
    return invoke("run", str(write_config(text)), "--dry-run", *args)


# -- 1. config files that are not regular files, or are huge ------------------------------


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


# -- 2. names and seeds ----------------------------------------------------------------------

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


# -- 3. the data cache is keyed by what shapes the data -------------------------------------


@dataclass(kw_only=True)
class Flat(kdbench.Dataset):
    """Images whose pixels all hold `level`: 20 training and 10 test images, two classes."""

    name: ClassVar[str] = "flat"
    class_names: ClassVar[tuple[str, ...]] = ("even", "odd")
    image_shape: ClassVar[tuple[int, int, int]] = (1, 4, 4)
    loads: ClassVar[list[tuple[int, str]]] = []

    level: int = kdbench.option(1, help="every pixel's value", minimum=0, maximum=255)

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        Flat.loads.append((self.level, split))
        n = 20 if split == "train" else 10
        return torch.full((n, 4, 4), self.level, dtype=torch.uint8), torch.arange(n) % 2


SMALL = {"train_per_class": 4, "val_per_class": 2, "test_per_class": 3}


@pytest.fixture
def fresh_data(tmp_path):
    data.clear_cache()
    Flat.loads.clear()
    yield tmp_path
    data.clear_cache()


def test_instances_with_different_own_options_get_their_own_data(fresh_data):
    dark = make_splits(Flat(level=10, **SMALL), fresh_data, seed=0)
    light = make_splits(Flat(level=200, **SMALL), fresh_data, seed=0)
    assert torch.all(dark.train_x == 10 / 255) and torch.all(dark.test_x == 10 / 255)
    assert torch.all(light.train_x == 200 / 255) and torch.all(light.test_x == 200 / 255)
    assert sorted(Flat.loads) == [(10, "test"), (10, "train"), (200, "test"), (200, "train")]


def test_instances_differing_only_in_sampling_share_the_loaded_data(fresh_data):
    for options in (SMALL, {**SMALL, "train_per_class": 5}, {**SMALL, "sample_seed": 3}):
        make_splits(Flat(level=7, classes=[1, 0], **options), fresh_data, seed=1)
    assert sorted(Flat.loads) == [(7, "test"), (7, "train")]


# -- 4. per-class counts the data cannot give, refused before anything runs -----------------

TOO_MANY = [
    (
        "train-and-val",
        replace("train_per_class = 12", "train_per_class = 5950"),
        "datasets.mnist-0-2: class 0 has 5923 training images, fewer than the 5958 requested"
        " (train_per_class + val_per_class)",
    ),
    (
        "test",
        replace("test_per_class = 10", "test_per_class = 1000"),
        "datasets.mnist-0-2: class 0 has 980 test images, fewer than the 1000 requested"
        " (test_per_class)",
    ),
    (
        "teacher",
        replace("train_per_class = 60", "train_per_class = 5920"),
        "datasets.mnist-0-2: class 0 has 5915 non-validation training images, fewer than the"
        " 5920 requested by teacher 'lenet' (its train_per_class; val_per_class = 8",
    ),
    (
        "ensemble-member",
        with_matrix(
            '[[matrix]]\nteachers = ["ens"]\nstudents = ["q2"]\ndatasets = ["mnist-0-2"]\n',
            '[teachers.big]\nplugin = "lenet"\ntrain_per_class = 6000\n'
            '[teachers.ens]\nplugin = "ensemble"\nmembers = ["lenet", "big"]\n',
        ),
        "class 0 has 5915 non-validation training images, fewer than the 6000 requested by"
        " teacher 'big'",
    ),
    (
        "fashion-class-name",
        replace('plugin = "mnist"', 'plugin = "fashion-mnist"').replace(
            "test_per_class = 10", "test_per_class = 1001"
        ),
        "datasets.mnist-0-2: class 0 (T-shirt/top) has 1000 test images, fewer than the 1001",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in TOO_MANY], ids=[c[0] for c in TOO_MANY]
)
def test_counts_beyond_a_class_are_refused_by_a_dry_run(
    write_config, invoke, isolated, mnist_root, text, message
):
    if "T-shirt" in message and not (mnist_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"Fashion-MNIST is not in {mnist_root}: run 'kdbench data fetch'")
    assert_clean_failure(dry_run(invoke, write_config, text), message, isolated)


def test_counts_beyond_a_class_are_refused_before_a_run_logs(
    write_config, invoke, isolated, mnist_root
):
    text = replace("train_per_class = 60", "train_per_class = 7000")
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(result, "fewer than the 7000 requested by teacher 'lenet'", isolated)


def test_make_splits_and_check_sizes_refuse_alike(mnist_root):
    dataset = Mnist(classes=[4, 5], train_per_class=5400, val_per_class=30)
    with pytest.raises(DataError) as checked:
        check_sizes(dataset, mnist_root)
    with pytest.raises(DataError) as drawn:
        make_splits(dataset, mnist_root, seed=0)
    assert str(checked.value) == str(drawn.value)
    assert str(drawn.value) == (
        "mnist: class 5 has 5421 training images, fewer than the 5430 requested"
        " (train_per_class + val_per_class)"
    )
    check_sizes(Mnist(classes=[4, 5], train_per_class=5391, val_per_class=30), mnist_root)


def test_test_per_class_all_draws_the_whole_test_set(write_config, invoke, isolated, mnist_root):
    text = replace("test_per_class = 10", 'test_per_class = "all"')
    assert dry_run(invoke, write_config, text).exit_code == 0
    spec = load_spec(write_config(text), process_registry())
    splits = make_splits(spec.instance("datasets", "mnist-0-2").component, mnist_root, seed=0)
    assert torch.bincount(splits.test_y).tolist() == MNIST_TEST_COUNTS[:3]
    wrong = replace("test_per_class = 10", 'test_per_class = "every"')
    result = invoke("run", str(write_config(wrong)))
    assert_clean_failure(result, "test_per_class: expected integer | 'all', got 'every'", isolated)


def test_plugins_listing_shows_the_all_value_and_seed_bounds(invoke):
    text = invoke("plugins").stdout
    assert "test_per_class (integer | 'all', default 150; x ≥ 1): test images per class" in text
    assert '("all": the whole test set)' in text
    assert "sample_seed (integer | none, default None; 0 ≤ x ≤ 4294967295)" in text
    listing = json.loads(invoke("plugins", "--json").stdout)
    mnist = next(p for p in listing if p["name"] == "datasets")["registered"]["datasets"][0]
    options = {o["name"]: o for o in mnist["options"]}
    assert options["test_per_class"]["type"] == "integer | 'all'"
    assert options["test_per_class"]["default"] == 150
    assert options["sample_seed"]["maximum"] == MAX_SEED


# -- 5. data directories and files that cannot be used ---------------------------------------


def test_data_dir_that_is_a_symlink_loop(write_config, invoke, isolated, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(loop))
    assert_clean_failure(result, f"data directory {loop}: a symbolic link loop", isolated)


def test_raw_dir_that_is_a_symlink_loop(write_config, invoke, isolated, tmp_path):
    (tmp_path / "data" / "MNIST").mkdir(parents=True)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.symlink_to(raw)
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(tmp_path / "data"))
    assert_clean_failure(result, f"data directory {raw}: a symbolic link loop", isolated)


def test_idx_file_that_is_a_symlink_loop(write_config, invoke, isolated, data_copy):
    root, _ = data_copy
    path = Mnist().raw_dir(root) / "t10k-labels-idx1-ubyte"
    path.unlink()
    path.symlink_to(path)
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(
        result, "a symbolic link loop at t10k-labels-idx1-ubyte; run 'kdbench data fetch'", isolated
    )


def test_fetch_into_a_symlink_loop(invoke, isolated, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = invoke("data", "fetch", "mnist", "--data-dir", str(loop))
    assert_clean_failure(result, f"cannot write to {loop}: it is a symbolic link loop", isolated)


SETPRIV = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def unprivileged(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `python args` as a process to which file permissions apply.

    As root, with the capabilities that bypass them (DAC override, DAC read search) dropped
    by setpriv: chmod 000 then stops root too, so this test runs (and can fail) as root.
    """
    command = [sys.executable, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: chmod 000 cannot stop reading")
        probe = cwd / "probe"
        probe.write_text("x")
        probe.chmod(0)
        if subprocess.run([*SETPRIV, "cat", str(probe)], capture_output=True).returncode == 0:
            pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
        command = SETPRIV + command
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unreadable_idx_file_says_permission_denied(write_config, isolated, data_copy):
    root, own = data_copy
    own("train-labels-idx1-ubyte").chmod(0)
    result = unprivileged(
        ["-m", "kdbench", "run", str(write_config(VALID)), "--dry-run", "--data-dir", str(root)],
        isolated,
        KDBENCH_CACHE=str(isolated / "cache"),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "permission denied reading train-labels-idx1-ubyte" in result.stderr
    assert "md5 mismatch" not in result.stderr
    assert not (isolated / "mlflow.db").exists()


def test_idx_file_made_unreadable_after_its_checksum_was_cached(isolated, data_copy):
    """The checksum cache (per path, size, mtime, inode) must not hide a chmod."""
    root, own = data_copy
    path = own("t10k-labels-idx1-ubyte")
    script = textwrap.dedent(f"""
        import os
        from kdbench.errors import DataError
        from kdbench_plugins.datasets import Mnist
        Mnist().verify({str(root)!r})
        os.chmod({str(path)!r}, 0)
        try:
            Mnist().verify({str(root)!r})
        except DataError as exc:
            print(exc)
    """)
    result = unprivileged(["-c", script], isolated)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "permission denied reading t10k-labels-idx1-ubyte" in result.stdout


# -- teacher checkpoints that hold code: kdbench's one line, not torch's warnings --


class _Code:
    """A pickled object: loading it would run code of this module."""


@pytest.mark.parametrize(
    ("save", "message"),
    [
        (lambda p: torch.save(torch.nn.Linear(2, 2), p), "GLOBAL torch.nn.modules.linear.Linear"),
        (lambda p: torch.save({"w": _Code()}, p), "Unsupported global"),
        (lambda p: p.write_bytes(pickle.dumps({"w": _Code()}, protocol=4)), "not a loadable"),
    ],
    ids=["module", "custom-object", "plain-pickle"],
)
def test_pickled_checkpoint_is_refused_in_one_line(
    write_config, invoke, isolated, tmp_path, save, message
):
    path = tmp_path / "teacher.pt"
    save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning torch emits must reach `caught`
        result = invoke("run", str(write_config(checkpoint_config(path))))
    assert_clean_failure(result, f"teacher checkpoint {path}: not a loadable state dict", isolated)
    assert message in result.stderr
    assert "torch.save(model.state_dict(), path)" in result.stderr
    shown = result.stdout + result.stderr + " ".join(str(w.message) for w in caught)
    for torch_text in ("pickle protocol", "In PyTorch 2.6", "Please use `torch.serialization"):
        assert torch_text not in shown


# -- 6. plugin authors: data sets without fetch, class_names or image_shape; blocked plugins --


@dataclass(kw_only=True)
class Nameless(kdbench.Dataset):
    """A data set that forgot its class_names."""

    name: ClassVar[str] = "nameless"

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros((4, 28, 28), dtype=torch.uint8), torch.tensor([0, 1, 0, 1])


@dataclass(kw_only=True)
class Flattened(Flat):
    """A data set whose input shape has a size of 0 (a vector's (16,) would be fine)."""

    name: ClassVar[str] = "flattened"
    input_shape: ClassVar[tuple[int, ...]] = (16, 0)


@pytest.fixture
def with_datasets(monkeypatch):
    """The CLI's registry: the built-ins and a plugin registering the given data sets."""

    def use(*classes: type) -> kdbench.plugins.Registry:
        module = types.ModuleType("kdbench_test_datasets")

        @kdbench.hookimpl
        def register_datasets(register) -> None:
            for cls in classes:
                register(cls)

        module.register_datasets = register_datasets
        loaded = load_registry(
            environ={"KDBENCH_LOAD_PLUGINS": ""}, extra=[("kdbench-test-datasets", module)]
        )
        monkeypatch.setattr(kdbench.plugins, "registry", lambda: loaded)
        return loaded

    return use


def test_dataset_without_fetch_says_so(invoke, isolated, with_datasets, tmp_path):
    with_datasets(Flat)
    result = invoke("data", "fetch", "flat", "--data-dir", str(tmp_path / "data"))
    assert_clean_failure(
        result, f"flat: this data set has no fetch step; put its files under {tmp_path}", isolated
    )
    assert type(Flat()).fetch is kdbench.Dataset.fetch  # how `data fetch` can skip it
    assert not (tmp_path / "data").exists()


def test_third_party_dataset_counts_are_checked_by_a_dry_run(
    write_config, invoke, isolated, with_datasets
):
    with_datasets(Flat)
    text = with_matrix(
        '[[matrix]]\ndatasets = ["light"]\nstudents = ["q2"]\n',
        '[datasets.light]\nplugin = "flat"\nlevel = 200\ntrain_per_class = 4\n'
        "val_per_class = 2\ntest_per_class = 6\n",
    ).replace("qubits = 2", 'qubits = 2\nreadout = "parity"')  # 2 classes: first-c ignores qubit 1
    result = dry_run(invoke, write_config, text)
    assert_clean_failure(
        result, "datasets.light: class 0 (even) has 5 test images, fewer than the 6", isolated
    )
    assert dry_run(invoke, write_config, text.replace("= 6", "= 5")).exit_code == 0


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        (Nameless, "class_names must be a tuple of at least 2 strings (one per label), got None"),
        (
            Flattened,
            "input_shape must be a tuple of positive integers ((C, H, W) for images, (F,) for"
            " feature vectors), got (16, 0)",
        ),
    ],
    ids=["no-class-names", "bad-input-shape"],
)
def test_malformed_dataset_is_refused_at_registration_and_use(
    write_config, invoke, isolated, with_datasets, cls, problem
):
    loaded = with_datasets(cls)
    assert cls.name not in loaded.names("datasets")
    info = next(p for p in loaded.plugins if p.name == "kdbench-test-datasets")
    assert info.problems == [f"dataset '{cls.name}' not registered: {problem}"]
    listed = invoke("plugins")
    assert listed.exit_code == 0
    assert f"problem: dataset '{cls.name}' not registered: {problem}" in listed.stdout
    shown = json.loads(invoke("plugins", "--json").stdout)
    assert any(problem in p for e in shown for p in e["problems"])
    # In a config: as a table's plugin, and as a bare name in the matrix.
    table = with_matrix(
        '[[matrix]]\ndatasets = ["d"]\nstudents = ["q2"]\n',
        f'[datasets.d]\nplugin = "{cls.name}"\n',
    )
    result = invoke("run", str(write_config(table)))
    assert_clean_failure(
        result,
        f"datasets.d.plugin: dataset plugin '{cls.name}' cannot be used: {problem}",
        isolated,
    )
    bare = with_matrix(f'[[matrix]]\ndatasets = ["{cls.name}"]\nstudents = ["q2"]\n')
    result = invoke("run", str(write_config(bare)))
    assert_clean_failure(result, f"matrix[0].datasets[0]: dataset plugin '{cls.name}'", isolated)
    # Used in code, without a registry.
    with pytest.raises(DataError, match=re.escape(problem)):
        make_splits(cls(), isolated, seed=0)


@pytest.fixture
def reloaded_registry():
    process_registry.cache_clear()
    yield
    process_registry.cache_clear()


@pytest.mark.parametrize(
    ("blocked", "text", "message"),
    [
        (
            "aer",
            replace('backends = ["statevector"]', 'backends = ["aer"]'),
            "unknown backend 'aer'; defined or available: density-matrix, ibm-runtime, "
            "statevector; plugin 'aer'"
            " is not loaded: blocked by KDBENCH_BLOCK_PLUGINS",
        ),
        (
            "aer",
            VALID + '\n[backends.noisy]\nplugin = "aer"\n',
            "backends.noisy.plugin: unknown backend plugin 'aer'; available: density-matrix,"
            " ibm-runtime, statevector; plugin 'aer' is not loaded: blocked by"
            " KDBENCH_BLOCK_PLUGINS",
        ),
        (
            "datasets",
            VALID,
            "datasets.mnist-0-2.plugin: unknown dataset plugin 'mnist'; available: (none);"
            " not loaded, and perhaps providing it: 'datasets' (blocked by KDBENCH_BLOCK_PLUGINS)",
        ),
    ],
    ids=["bare-name", "plugin-option", "other-entry-point"],
)
def test_unknown_plugin_says_it_is_blocked(
    monkeypatch, reloaded_registry, write_config, invoke, isolated, blocked, text, message
):
    monkeypatch.setenv("KDBENCH_BLOCK_PLUGINS", blocked)
    assert_clean_failure(invoke("run", str(write_config(text))), message, isolated)


def test_unknown_plugin_without_blocking_has_no_hint():
    with pytest.raises(kdbench.PluginError) as exc:
        load_registry(environ={}).get("backends", "aerr")
    assert "not loaded" not in str(exc.value) and "did you mean 'aer'" in str(exc.value)


def test_unknown_plugin_says_which_third_party_plugins_were_not_loaded(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    assert "tiny-mlp" in load_registry(environ={}).names("teachers")
    with pytest.raises(kdbench.PluginError) as exc:
        load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""}).get("teachers", "tiny-mlp")
    assert str(exc.value).endswith(
        "; not loaded, and perhaps providing it: 'kdbench-broken' (KDBENCH_LOAD_PLUGINS does"
        " not name it), 'kdbench-foo' (KDBENCH_LOAD_PLUGINS does not name it)"
    )

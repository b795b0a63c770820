"""Data a run cannot use, through the CLI: exit 2, one "Error:" line saying what is wrong,
nothing written.

Data directories and IDX files (missing, empty, a file, truncated, a flipped byte, a directory,
a symbolic link loop, unreadable), per-class counts the data cannot give, and third-party data
sets that lack what kdbench needs. Real MNIST and real files; tests/plugins/test_datasets.py
tests the MNIST plugins themselves on small synthetic files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import kdbench
import kdbench.plugins
from kdbench.api import MAX_SEED
from kdbench.config import load_spec
from kdbench.data import check_sizes, make_splits
from kdbench.errors import DataError
from kdbench.plugins import load_registry
from kdbench.plugins import registry as process_registry
from kdbench_plugins.datasets import Mnist
from tests.helpers import (
    MNIST_TEST_COUNTS,
    VALID,
    Flat,
    after,
    assert_clean_failure,
    dry_run,
    replace,
    with_matrix,
)

# -- data directories -----------------------------------------------------------------------------


def test_fetch_unknown_dataset(invoke, isolated):
    result = invoke("data", "fetch", "mnsit", "--data-dir", str(isolated / "data"))
    assert_clean_failure(result, "unknown dataset plugin 'mnsit' (did you mean 'mnist'?)", isolated)
    assert not (isolated / "data").exists()


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


def test_fetch_into_a_symlink_loop(invoke, isolated, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = invoke("data", "fetch", "mnist", "--data-dir", str(loop))
    assert_clean_failure(result, f"cannot write to {loop}: it is a symbolic link loop", isolated)


# -- IDX files ------------------------------------------------------------------------------------


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


def test_idx_file_that_is_a_symlink_loop(write_config, invoke, isolated, data_copy):
    root, _ = data_copy
    path = Mnist().raw_dir(root) / "t10k-labels-idx1-ubyte"
    path.unlink()
    path.symlink_to(path)
    result = invoke("run", str(write_config(VALID)), "--data-dir", str(root))
    assert_clean_failure(
        result, "a symbolic link loop at t10k-labels-idx1-ubyte; run 'kdbench data fetch'", isolated
    )


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


# -- per-class counts the data cannot give, refused before anything runs ---------------------

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
    assert "test_per_class (integer | 'all', default 150; x ≥ 1): test inputs per class" in text
    assert '("all": the whole test set)' in text
    assert "sample_seed (integer | none, default None; 0 ≤ x ≤ 4294967295)" in text
    listing = json.loads(invoke("plugins", "--json").stdout)
    mnist = next(p for p in listing if p["name"] == "datasets")["registered"]["datasets"][0]
    options = {o["name"]: o for o in mnist["options"]}
    assert options["test_per_class"]["type"] == "integer | 'all'"
    assert options["test_per_class"]["default"] == 150
    assert options["sample_seed"]["maximum"] == MAX_SEED


# -- third-party data sets: without fetch, class_names or image_shape -----------------------------


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

"""Shared fixtures: the real plugin registry, a config writer and an in-process CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.plugins import registry as process_registry
from kdbench.teachers import forget_prepared

# A small but complete config: real MNIST, tiny subsets, one epoch.
TINY = """
[experiment]
name = "{name}"
seeds = [0]

[train]
epochs = 2
batch_size = 16

[datasets.mnist-0-2]
plugin = "mnist"
classes = [0, 1, 2]
train_per_class = 12
val_per_class = 8
test_per_class = 10

[teachers.lenet]
epochs = 1
train_per_class = 60

[students.q2]
plugin = "pqc"
qubits = 2
front = "linear"

[[matrix]]
datasets = ["mnist-0-2"]
teachers = ["none", "lenet"]
students = ["q2"]
backends = ["statevector"]
"""


@pytest.fixture(autouse=True)
def fresh_teachers():
    """Each test prepares its teachers anew (from disk or by training)."""
    forget_prepared()


@pytest.fixture
def registry():
    return process_registry()


@pytest.fixture
def write_config(tmp_path: Path):
    """Write TOML text (dedented) to a file in tmp_path and return its path."""

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path with its own MLflow store and teacher cache (the data stays shared)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def invoke():
    """Run the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return run

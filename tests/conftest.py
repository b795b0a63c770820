"""Shared fixtures: the real plugin registry, a config writer, an in-process CLI, the real
MNIST files, an MLflow tracking server, no IBM Quantum account; plain helpers (TINY among
them) are in helpers.py, fixtures of one subpackage in its own conftest.py."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench import paths
from kdbench.cli import cli
from kdbench.fetch import clear_cache
from kdbench.plugins import registry as process_registry
from kdbench.stores import store_lock_path
from kdbench.teachers import forget_prepared
from tests.services import POSTGRES_BIN, MlflowServer
from tests.services import postgres as start_postgres


@pytest.fixture(autouse=True)
def fresh_teachers():
    """Each test prepares its teachers anew (from disk or by training)."""
    forget_prepared()


@pytest.fixture
def registry():
    return process_registry()


@pytest.fixture
def fresh_registry():
    """The process registry reloaded from the environment, and restored afterwards."""
    process_registry.cache_clear()
    yield
    process_registry.cache_clear()


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


# -- the real MNIST files (a test that needs them is skipped where they were never fetched) --


@pytest.fixture
def mnist_root() -> Path:
    from kdbench_plugins.datasets import Mnist

    root = paths.data_dir()
    if not all((Mnist().raw_dir(root) / name).is_file() for name in Mnist.md5):
        pytest.skip(f"MNIST is not in {root}: run 'kdbench data fetch mnist'")
    return root


@pytest.fixture
def data_copy(tmp_path: Path):
    """A data directory of links to the real MNIST files; `own(name)` makes one a real copy
    that a test may damage."""
    from kdbench_plugins.datasets import Mnist

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


# -- a real MLflow tracking server --


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session: a function that makes a database, its URI."""
    if not (POSTGRES_BIN / "pg_ctl").exists():
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    with start_postgres() as database:
        yield database


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path):
    """An MLflow server whose backend store is a SQLite file or a PostgreSQL database."""
    if request.param == "postgresql":
        backend = request.getfixturevalue("postgres")()
    else:
        backend = f"sqlite:///{tmp_path}/server.db"
    server = MlflowServer(backend, tmp_path / "artifacts", tmp_path)
    server.start()
    yield server
    server.stop()
    store_lock_path(server.url).unlink(missing_ok=True)  # its port will not come again soon


@pytest.fixture
def server(served) -> str:
    """The URL of an `mlflow server` (SQLite or PostgreSQL backend, served artifacts)."""
    return served.url


# -- IBM Quantum --


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

"""Secrets stay out of MLflow, the output and the cache; checkpoints cannot run code; plugins
can be blocked; no shell runs anything."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import torch

from kdbench.config import load_spec
from kdbench.errors import KdbenchError
from kdbench.teachers import cache_key, load_checkpoint
from tests.helpers import ROOT, TINY

TOKEN = "kdbench-fake-token-3f9a"
PASSWORD = "s3cret-pw"

IBM_HARDWARE = """
[backends.ibm]
plugin = "ibm-runtime"
backend = "ibm_brisbane"
confirm_hardware = true
"""


def leaks(secret: str, *roots: Path, texts: tuple[str, ...] = ()) -> list[str]:
    """Where `secret` appears: in any file under `roots` (bytes), or in `texts`."""
    needle = secret.encode()
    found = [f"text {i}" for i, text in enumerate(texts) if secret in text]
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        found += [str(p) for p in files if needle in p.read_bytes()]
    return found


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch, no_ibm_account: Path) -> str:
    """A fake IBM Quantum token in the environment, and no saved account."""
    monkeypatch.setenv("QISKIT_IBM_TOKEN", TOKEN)
    return TOKEN


@pytest.mark.slow
def test_a_run_stores_no_token(token, write_config, invoke, isolated):
    """A whole run with the token in the environment: not in the store, artifacts or output."""
    path = write_config(TINY.format(name="secure"))
    result = invoke("run", str(path))
    assert result.exit_code == 0, result.output[-2000:]
    store = isolated / "mlflow.db"
    assert store.exists() and any((isolated / "mlruns").rglob("confusion_matrix.png"))
    assert any((isolated / "cache").rglob("*.pt")), "the teacher was cached"
    with sqlite3.connect(store) as db:  # the store was searched, not just a stale copy
        assert db.execute("select count(*) from runs").fetchone()[0] == 3
    # The search reads what was stored: the experiment name is in the store, a resolved
    # option in an artifact.
    assert leaks("secure", store) and leaks("train_per_class", isolated / "mlruns")
    found = leaks(
        token, store, isolated / "mlruns", isolated / "cache", texts=(result.stdout, result.stderr)
    )
    assert found == []


def test_failing_ibm_hardware_shows_no_token(token, write_config, invoke, isolated):
    """Real hardware with a (fake) token but no reachable IBM Quantum: a clean error, no token."""
    text = TINY.format(name="secure").replace('backends = ["statevector"]', 'backends = ["ibm"]')
    path = write_config(text + IBM_HARDWARE)
    result = invoke("run", str(path))
    assert result.exit_code == 2, result.output[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ibm-runtime: "), result.stderr
    assert "Traceback" not in result.output
    assert not (isolated / "mlflow.db").exists()
    assert leaks(token, isolated, texts=(result.stdout, result.stderr)) == []


def test_unreachable_tracking_server_shows_no_password(write_config, invoke, isolated):
    uri = f"http://kdbench:{PASSWORD}@127.0.0.1:9"
    result = invoke("run", str(write_config(TINY.format(name="secure"))), "--tracking-uri", uri)
    assert result.exit_code == 2
    assert "tracking server http://kdbench:***@127.0.0.1:9 is unreachable" in result.stderr
    assert PASSWORD not in result.output
    assert not (isolated / "mlflow.db").exists()


@pytest.mark.slow
def test_tracking_server_password_and_token_stay_out(
    served,
    token,
    write_config,
    invoke,
    isolated,
    tmp_path,
):
    """A run against a tracking server whose URI, in the config, holds a password: the
    password (and the token) reach neither the server's store and artifacts (the config file
    among them) nor the output."""
    uri = served.url.replace("http://", f"http://kdbench:{PASSWORD}@")
    text = TINY.format(name="served").replace("seeds = [0]", f'seeds = [0]\ntracking_uri = "{uri}"')
    result = invoke("run", str(write_config(text)))
    assert result.exit_code == 0, result.output[-2000:]
    assert "http://kdbench:***@127.0.0.1" in result.stdout
    assert not (isolated / "mlflow.db").exists()
    logged = list((tmp_path / "artifacts").rglob("config.toml"))
    assert (
        len(logged) == 1 and 'tracking_uri = "http://kdbench:***@127.0.0.1' in logged[0].read_text()
    )
    store = served.dump(tmp_path / "store.sql")
    assert leaks("served", store)  # the search reads the server's store
    stored = (store, tmp_path / "artifacts", isolated / "cache")
    for secret in (PASSWORD, token):
        assert leaks(secret, *stored, texts=(result.stdout, result.stderr)) == [], secret


# -- checkpoints are loaded with weights_only --


class Payload:
    """Unpickling it calls open(path, "w"): a harmless, visible side effect."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def booby_trapped(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint whose unpickling would create `marker`; proven live with weights_only=False."""
    marker, checkpoint = tmp_path / "payload-ran", tmp_path / "trap.pt"
    torch.save({"weight": Payload(marker)}, checkpoint)
    torch.load(checkpoint, weights_only=False)  # what kdbench must never do
    assert marker.exists(), "the payload is live"
    marker.unlink()
    return checkpoint, marker


def test_checkpoint_with_code_is_refused(booby_trapped, write_config, invoke, isolated):
    checkpoint, marker = booby_trapped
    text = TINY.format(name="secure").replace(
        "[teachers.lenet]\n", f'[teachers.lenet]\ncheckpoint = "{checkpoint}"\n'
    )
    result = invoke("run", str(write_config(text)))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: teacher checkpoint {checkpoint}: not a loadable")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists(), "the checkpoint's code ran"
    assert not (isolated / "mlflow.db").exists()
    with pytest.raises(KdbenchError, match="not a loadable state dict"):
        load_checkpoint(torch.nn.Linear(2, 2), str(checkpoint))
    assert not marker.exists()


def test_cached_teacher_with_code_is_refused(
    booby_trapped, write_config, invoke, isolated, registry
):
    """A file planted in the teacher cache under the key kdbench will look for."""
    checkpoint, marker = booby_trapped
    text = TINY.format(name="secure").replace(
        'teachers = ["none", "lenet"]', 'teachers = ["lenet"]'
    )
    path = write_config(text)
    spec = load_spec(path, registry)
    key = cache_key(spec.instance("teachers", "lenet"), spec.instance("datasets", "mnist-0-2"), 0)
    planted = isolated / "cache" / "teachers" / f"{key}.pt"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(checkpoint.read_bytes())
    result = invoke("run", str(path))
    assert result.exit_code == 1  # the cell failed, and says why
    assert "not a loadable state dict" in result.output
    assert not marker.exists(), "the cached file's code ran"


# -- plugins --


def test_blocked_builtin_plugin_is_unknown(
    monkeypatch, fresh_registry, write_config, invoke, isolated
):
    monkeypatch.setenv("KDBENCH_BLOCK_PLUGINS", "aer")
    text = TINY.format(name="secure").replace('backends = ["statevector"]', 'backends = ["aer"]')
    result = invoke("run", str(write_config(text)))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert "matrix[0].backends[0]: unknown backend 'aer'" in result.stderr
    assert "available: density-matrix, ibm-runtime, statevector" in result.stderr
    named = TINY.format(name="secure") + '\n[backends.noisy]\nplugin = "aer"\n'
    result = invoke("run", str(write_config(named)))
    assert result.exit_code == 2
    assert "backends.noisy.plugin: unknown backend plugin 'aer'" in result.stderr
    assert not (isolated / "mlflow.db").exists()


# -- no shell --

# The calls that hand a command line to a shell (os.exec*/spawn* take argument lists).
SHELL = re.compile(
    r"shell\s*=\s*True|os\.system\s*\(|os\.popen\s*\(|subprocess\.getoutput|"
    r"subprocess\.getstatusoutput"
)


def test_no_shell_in_the_sources():
    """Subprocesses take argument lists: nothing in kdbench/ or plugins/ goes through a shell."""
    sources = [*(ROOT / "kdbench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    assert len(sources) > 10
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SHELL.search(line)
    ]
    assert found == []


def test_every_torch_load_is_weights_only():
    sources = [*(ROOT / "kdbench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    calls = [
        (path, line)
        for path in sources
        for line in path.read_text().splitlines()
        if "torch.load(" in line and not line.strip().startswith(("#", '"""')) and "`" not in line
    ]
    assert calls, "kdbench loads checkpoints somewhere"
    assert all("weights_only=True" in line for _, line in calls), calls

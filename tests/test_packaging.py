"""The project as a user installs it: the wheel and the sdist hold every module of the
harness and of the built-in plugins, the wheel declares the entry points kdbench finds its
plugins by, and each installs in a clean venv and lists the built-in plugins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A wheel and an sdist built from a copy of the working tree (its files git does not
    ignore), with the venv's setuptools: no network, nothing written into the tree."""
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("dist")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for hook in ("build_wheel", "build_sdist"):
        code = f"import sys; from setuptools import build_meta; build_meta.{hook}(sys.argv[1])"
        made = subprocess.run(
            [sys.executable, "-c", code, str(out)],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stderr[-3000:]
    return out


def sources() -> dict[str, Path]:
    """Every module as the wheel names it: kdbench/..., and plugins/ as kdbench_plugins/."""
    found = {str(p.relative_to(ROOT)): p for p in (ROOT / "kdbench").rglob("*.py")}
    found |= {
        f"kdbench_plugins/{p.relative_to(ROOT / 'plugins')}": p
        for p in (ROOT / "plugins").rglob("*.py")
    }
    return {name: path for name, path in found.items() if "__pycache__" not in name}


def test_the_wheel_holds_every_module_and_the_entry_points(built):
    (wheel,) = built.glob("kdbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = sorted(set(sources()) - names)
        assert not missing, f"the wheel lacks {missing}: list their package in pyproject.toml"
        (points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(points).decode()
    assert "[kdbench]" in text and "students = kdbench_plugins.students" in text
    assert "kdbench = kdbench.cli:main" in text


def test_the_sdist_holds_every_module(built):
    (sdist,) = built.glob("kdbench-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    modules = {str(path.relative_to(ROOT)) for path in sources().values()}
    assert not modules - names
    assert {"README.md", "pyproject.toml"} <= names


def clean_venv(where: Path) -> Path:
    """A new venv that sees the dependencies (torch, Qiskit, MLflow ...) of this one, linked
    rather than installed again (torch alone is GBs), and nothing of kdbench: its editable
    install, dist-info and finder stay out, so kdbench can come only from what is installed."""
    deps = where / "deps"
    deps.mkdir(parents=True)
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for entry in site.iterdir():
        if "kdbench" not in entry.name and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    # Without its own pip and setuptools: the linked ones (what the dependencies ask for).
    venv = where / "venv"
    make = [sys.executable, "-m", "venv", "--without-pip", str(venv)]
    subprocess.run(make, check=True, timeout=300)
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "dependencies.pth").write_text(f"{deps}\n")
    return venv


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_the_package_installs_in_a_clean_venv_and_lists_its_plugins(built, tmp_path, kind):
    (package,) = built.glob(f"kdbench-*.{kind}")
    venv = clean_venv(tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "--no-deps", "--no-index", "--no-build-isolation", str(package)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout  # every dependency the metadata names is met
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    code = "import kdbench, kdbench_plugins; print(kdbench.__file__, *kdbench_plugins.__path__)"
    where = subprocess.run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
    listed = subprocess.run([venv / "bin" / "kdbench", "plugins"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    for name in ("mnist", "lenet", "pqc", "statevector", "density-matrix", "aer", "kd"):
        assert name in listed.stdout, f"{name} missing from `kdbench plugins`"

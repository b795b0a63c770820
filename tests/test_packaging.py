"""The project as a user installs it: the wheel and the sdist hold every module of the
harness and of the built-in plugins, and the wheel declares the entry points kdbench finds
its plugins by."""

from __future__ import annotations

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

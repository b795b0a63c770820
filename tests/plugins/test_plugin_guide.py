"""docs/plugins.md is a working plugin: every code block of it runs here, in order.

The Python blocks are executed as one module, `kdbench_foo`; the first TOML block is its
pyproject, the second a config that the last Python block runs as a real matrix.
"""

from __future__ import annotations

import re
import sys
import types
from collections import Counter

import pytest

from tests.helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GUIDE = ROOT / "docs" / "plugins.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.S | re.M)


def test_the_guide_has_a_block_of_each_kind():
    assert len(blocks("python")) >= 8 and len(blocks("toml")) == 2
    assert set(re.findall(r"^```(\w*)$", GUIDE.read_text(), re.M)) <= {"python", "toml", ""}


def test_the_pyproject_block_declares_the_entry_point():
    pyproject = tomllib.loads(blocks("toml")[0])
    assert pyproject["project"]["entry-points"]["kdbench"] == {"foo": "kdbench_foo"}


@pytest.mark.slow
def test_every_code_block_runs_as_one_plugin(isolated, monkeypatch):
    *plugin, usage = blocks("python")
    (isolated / "bars.toml").write_text(blocks("toml")[1])
    module = types.ModuleType("kdbench_foo")
    monkeypatch.setitem(sys.modules, "kdbench_foo", module)
    exec(compile("\n".join(plugin), str(GUIDE), "exec"), module.__dict__)
    exec(compile(usage, str(GUIDE), "exec"), module.__dict__)  # asserts 8 cells FINISHED

    # The guide's vector data set: its shape follows its options.
    spheres = module.Spheres(dimension=5)
    assert spheres.shape() == (5,) and spheres.load(isolated, "train")[0].shape == (600, 5)

    runs = module.ran.runs()
    by_backend = {r.data.params["backend.plugin"]: r.data.metrics for r in runs}
    assert by_backend["qiskit-shots"]["circuit_shots"] > 0
    assert by_backend["statevector"]["circuit_shots"] == 0
    # The student learns something on either backend, with and without its teacher.
    assert all(r.data.metrics["test_accuracy"] > 0.25 for r in runs)
    assert {r.data.params.get("teacher.plugin") for r in runs} == {None, "relu-mlp"}

    # The guide's distiller ran beside the paper's loss, at each point of its sweep, on both
    # backends; the student alone has no distiller and none of its parts.
    assert len(runs) == 8
    arms = Counter(
        (
            r.data.tags["kdbench.teacher"],
            r.data.tags["kdbench.distiller"],
            r.data.tags.get("kdbench.sweep"),
        )
        for r in runs
    )
    assert arms == {
        ("none", "none", None): 2,
        ("relu-mlp", "paper", None): 2,
        ("relu-mlp", "confident-kd", '{"distillers.confident-kd.temperature": 1.0}'): 2,
        ("relu-mlp", "confident-kd", '{"distillers.confident-kd.temperature": 4.0}'): 2,
    }
    parts = {
        "none": set(),
        "paper": {"kd"},
        "confident-kd": {"kd", "confidence"},
    }
    for run in runs:
        metrics, distiller = run.data.metrics, run.data.tags["kdbench.distiller"]
        logged = {k.removeprefix("train_") for k in metrics if k.startswith("train_")}
        assert logged == {"loss", "ce", "accuracy"} | parts[distiller]
        assert {f"val_{k}" for k in logged} <= metrics.keys()
        if distiller == "confident-kd":
            assert metrics["train_kd"] >= 0 and 0.25 <= metrics["train_confidence"] <= 1
            assert run.data.params["distill.plugin"] == "confident-kd"
    temperatures = {
        r.data.params["distill.temperature"]
        for r in runs
        if r.data.tags["kdbench.distiller"] == "confident-kd"
    }
    assert temperatures == {"1.0", "4.0"}


KINDS_IN_TABLE = ("Dataset", "Teacher", "Encoder", "Student", "Backend", "Distiller")


def test_the_guides_signatures_are_the_codes():
    """Each `method(args)` a row of the guide's table names takes the arguments the base
    class declares; `kdbench.option(...)` lists every keyword the function takes."""
    import inspect

    import kdbench

    checked = 0
    for row in re.findall(r"^\| (\w+) \|(.*)$", GUIDE.read_text(), re.M):
        kind, text = row
        if kind not in KINDS_IN_TABLE:
            continue
        base = getattr(kdbench, kind)
        for method, args in re.findall(r"`(\w+)\(([^)`]*)\)", text):
            if not callable(getattr(base, method, None)):
                continue
            declared = [
                p
                for p in inspect.signature(getattr(base, method)).parameters
                if p not in ("self", "cls")
            ]
            written = [a.strip() for a in args.split(",") if a.strip() not in ("", "*")]
            assert written == declared, f"{kind}.{method}: guide {written}, code {declared}"
            checked += 1
    assert checked >= 12
    (mention,) = re.findall(r"`kdbench\.option\(([^`]*)\)`", GUIDE.read_text())
    keywords = set(re.findall(r"(\w+)=", mention))
    declared = {
        p.name
        for p in inspect.signature(kdbench.option).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    assert keywords == declared

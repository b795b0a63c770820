"""docs/plugins.md is a working plugin: every code block of it runs here, in order.

The Python blocks are executed as one module, `kdbench_foo`; the first TOML block is its
pyproject, the second a config that the last Python block runs as a real matrix.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GUIDE = Path(__file__).parent.parent / "docs" / "plugins.md"


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
    exec(compile(usage, str(GUIDE), "exec"), module.__dict__)  # asserts 4 cells FINISHED

    client = MlflowClient(tracking_uri="sqlite:///bars.db")
    experiment = client.get_experiment_by_name("bars").experiment_id
    runs = client.search_runs([experiment], "tags.`kdbench.role` = 'cell'")
    by_backend = {r.data.params["backend.plugin"]: r.data.metrics for r in runs}
    assert by_backend["qiskit-shots"]["circuit_shots"] > 0
    assert by_backend["statevector"]["circuit_shots"] == 0
    # The student learns something on either backend, with and without its teacher.
    assert all(r.data.metrics["test_accuracy"] > 0.25 for r in runs)
    assert {r.data.params.get("teacher.plugin") for r in runs} == {None, "mlp"}

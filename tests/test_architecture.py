"""The shape the code keeps: a closed plugin SDK, a harness that names no built-in plugin,
circuits owned by the harness, and cell ids that do not move when the code is reorganised."""

from __future__ import annotations

import ast
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from mlflow.tracking import MlflowClient
from qiskit.circuit import ParameterVector, QuantumCircuit

import kdbench
from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.plugins import load_registry
from kdbench.tracking import Tracker
from tests.helpers import ROOT, TINY, run_here

# `kdbench run tests/configs/arch-check.toml --dry-run` before the code was reorganised into
# the SDK, kdbench/run/, kdbench/report/ and kdbench/quantum/: a store made then
# must resume now without rerunning anything.
ARCH_CHECK_IDS = {
    "4ecd145093dcfbab",
    "4d02fa97920bdda8",
    "c9377dca97fa54aa",
    "918786513417d863",
    "a6628151370254cb",
    "bed259d0086f468f",
    "22d0721e3c9389e3",
    "2d7803ebc798861e",
    "aa4a5cab287e0f97",
    "a00fb780f7ad02e1",
    "a782737362e2ccf8",
    "c25032c799cc0294",
    "797dfb38f78767d8",
    "b8716ae11cecab79",
    "11e5dcbc50fb57d4",
    "fdeac6ec80df152b",
}


def test_cell_ids_are_those_of_the_code_before_the_reorganisation(registry, write_config):
    """Cells whose computation has not changed since keep their ids (a resume reuses them);
    those it changed got new ones (a resume reruns them): the released students' readout (now
    the notebooks' sigmoid-pair) and every shot count (now smoothed). With the old readout
    pinned, every statevector cell has its old id again."""
    path = ROOT / "tests" / "configs" / "arch-check.toml"
    # pqc's defaults changed since (encoder, weight spread): with the old ones written out,
    # its cells are the old cells.
    old_defaults = 'readout = "linear"\nencoder = "angle"\nweight_spread = 3.141592653589793'
    text = path.read_text().replace('readout = "linear"', old_defaults)
    cells = expand(load_spec(write_config(text, "arch-check.toml"), registry))
    unchanged = {c.id for c in cells if c.student.name == "pqc2" and c.backend.name != "aer"}
    assert len(unchanged) == 4 and unchanged <= ARCH_CHECK_IDS
    taking_the_new = {c.id for c in expand(load_spec(path, registry)) if c.student.name == "pqc2"}
    assert not taking_the_new & ARCH_CHECK_IDS  # its computation changed: new ids
    assert not ({c.id for c in cells} - unchanged) & ARCH_CHECK_IDS
    text = text.replace(
        "[backends.aer]", '[students.released-q3]\nreadout = "first-c"\n\n[backends.aer]'
    )
    pinned = expand(load_spec(write_config(text), registry))
    exact = {c.id for c in pinned if c.backend.name != "aer"}
    assert len(exact) == 8 and exact <= ARCH_CHECK_IDS


def plugin_sources() -> list[Path]:
    return [*sorted((ROOT / "plugins").rglob("*.py")), *sorted((ROOT / "examples").rglob("*.py"))]


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_sdk(path):
    """Built-in and example plugins import `kdbench` itself, never its submodules nor each
    other: what they use, a third-party plugin can use. A plugin's own modules import each
    other relatively."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        bad += [n for n in names if n.startswith(("kdbench.", "kdbench_plugins"))]
    assert not bad, f"{path} imports {bad}"


def test_every_sdk_name_resolves():
    for name in kdbench.__all__:
        assert getattr(kdbench, name) is not None, name


def test_the_harness_names_no_built_in_plugin():
    names = re.compile(r"lenet|alexnet|ensemble|released-|paper-", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "kdbench").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if names.search(line)
    ]
    assert not found, "\n".join(found)


CLOSED: list[str] = []


class Closing:
    """A compiled circuit that records when the harness closes it."""

    def __init__(self, inner: kdbench.CircuitFunction, label: str):
        self.inner, self.label = inner, label

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.inner(inputs, weights)

    def close(self) -> None:
        CLOSED.append(self.label)


@dataclass(kw_only=True)
class ClosingStatevector(kdbench.Backend):
    """Exact simulation whose circuits say when they are closed."""

    name: ClassVar[str] = "closing-statevector"

    def compile(self, circuit, inputs, weights, *, seed):
        exact = kdbench.component("backends", "statevector")()
        return Closing(exact.compile(circuit, inputs, weights, seed=seed), circuit.name)


def one_qubit_circuit(name: str) -> tuple[QuantumCircuit, list, list]:
    x, w = ParameterVector("x", 1), ParameterVector("w", 1)
    qc = QuantumCircuit(1, name=name)
    qc.ry(x[0], 0)
    qc.ry(w[0], 0)
    return qc, list(x), list(w)


@dataclass(kw_only=True)
class TwoCircuits(kdbench.Student):
    """Two one-qubit circuits side by side: P(0) of each, as the odds of two classes."""

    name: ClassVar[str] = "two-circuits"

    def build(self, context: kdbench.StudentContext) -> torch.nn.Module:
        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.front = torch.nn.Linear(28 * 28, 2)
                self.weights = torch.nn.Parameter(torch.zeros(1))
                self.circuits = [context.compile(*one_qubit_circuit(n)) for n in "ab"]

            def forward(self, images):
                features = self.front(images.flatten(1))
                odds = [
                    c(features[:, i : i + 1], self.weights)[:, :1]
                    for i, c in enumerate(self.circuits)
                ]
                both = torch.cat([*odds, torch.full_like(odds[0], 0.5)], 1)[
                    :, : context.num_classes
                ]
                return both / both.sum(1, keepdim=True)

        return Module()


def registry_with_twins():
    module = types.ModuleType("twin_plugin")
    module.register_students = kdbench.hookimpl(lambda register: register(TwoCircuits))
    module.register_backends = kdbench.hookimpl(lambda register: register(ClosingStatevector))
    return load_registry(extra=[("twins", module)])


def run_twins(write_config, isolated, student: str):
    registry = registry_with_twins()
    text = TINY.format(name="twins").replace('students = ["q2"]', f'students = ["{student}"]')
    text = text.replace('teachers = ["none", "lenet"]', 'teachers = ["none"]')
    text = text.replace('backends = ["statevector"]', 'backends = ["closing-statevector"]')
    spec = load_spec(write_config(text), registry)
    uri = f"sqlite:///{isolated}/mlflow.db"
    (outcome,) = run_here(spec, registry, Tracker(uri, "twins"), isolated / "cache")
    assert outcome.status == "FINISHED", outcome.error
    return MlflowClient(tracking_uri=uri).get_run(outcome.run_id).data.metrics


def test_every_circuit_compiled_through_the_context_is_counted_and_closed(write_config, isolated):
    CLOSED.clear()
    metrics = run_twins(write_config, isolated, "two-circuits")
    assert sorted(CLOSED) == ["a", "b"]
    # Both circuits run on every image of every pass: twice the executions of one.
    assert metrics["circuit_executions"] > 0 and metrics["circuit_executions"] % 2 == 0
    assert (metrics["circuit_width"], metrics["circuit_depth"]) == (1, 2)

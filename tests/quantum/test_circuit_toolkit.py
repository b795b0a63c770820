"""The circuit toolkit of the SDK (`kdbench.quantum`) and option bounds and choices."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Parameter
from qiskit.circuit.library import efficient_su2

import kdbench
from kdbench import Backend, ConfigError, decompose_to, option, preset, split_slots
from kdbench.options import build, describe
from kdbench_plugins.aer import Aer
from kdbench_plugins.ibm_runtime import IbmRuntime
from kdbench_plugins.statevector import SUPPORTED_GATES, Statevector
from tests.helpers import grads, randn, student_circuit


def su2_circuits() -> dict[str, tuple[QuantumCircuit, list[Parameter], list[Parameter]]]:
    """One input rotation, then EfficientSU2 on 3 qubits, written four ways; same weights."""
    with warnings.catch_warnings():  # the class is deprecated in Qiskit 2.1, still in use
        warnings.simplefilter("ignore", DeprecationWarning)
        from qiskit.circuit.library import EfficientSU2

        block = EfficientSU2(3, reps=1)
    x = Parameter("x")
    circuits = {}
    for way in ("flat", "appended", "composed", "user-gate"):
        qc = QuantumCircuit(3)
        qc.h(range(3))
        qc.ry(x, 0)
        if way == "flat":
            qc.compose(efficient_su2(3, reps=1), inplace=True)
        elif way == "appended":
            qc.append(block, range(3))
        elif way == "composed":
            qc = qc.compose(block)  # one 'EfficientSU2' instruction, not decomposed
        else:  # a gate of a user's own, wrapping a gate that wraps the block
            inner = QuantumCircuit(3, name="inner")
            inner.append(block.to_gate(), range(3))
            qc.append(inner.to_gate(label="mine"), range(3))
        circuits[way] = (qc, [x], [p for p in qc.parameters if p != x])  # θ[0], ..., θ[11]
    return circuits


def test_decompose_to_keeps_a_flat_circuit_as_it_is():
    circuit, _, _ = student_circuit()
    assert decompose_to(circuit, SUPPORTED_GATES) is circuit
    assert decompose_to(circuit, kdbench.SHIFTABLE_GATES) is circuit


def test_decompose_to_expands_composites_recursively_and_keeps_the_rest():
    circuits = su2_circuits()
    for way in ("appended", "composed", "user-gate"):
        qc, _, _ = circuits[way]
        assert len(qc.data) == 5  # h, h, h, ry and one composite gate
        flat = decompose_to(qc, SUPPORTED_GATES)
        assert set(flat.count_ops()) == {"h", "ry", "rz", "cx"}
        assert flat.parameters == qc.parameters
        assert [p.name for p in flat.parameters] == [p.name for p in circuits["flat"][0].parameters]
    # An opaque gate has no definition: it stays, for the backend to name.
    qc = QuantumCircuit(2)
    qc.append(Gate("opaque", 1, []), [1])
    qc.crx(0.3, 0, 1)  # a supported gate: kept, for the backend to expand
    assert decompose_to(qc, SUPPORTED_GATES) is qc
    with pytest.raises(ValueError, match="'opaque' on qubits \\[1\\]"):
        Statevector().compile(qc, [], [], seed=0)


def test_efficient_su2_class_runs_alike_on_every_backend():
    circuits = su2_circuits()
    flat, inputs, weights = circuits["flat"]
    x, w = randn(3, 1, seed=30), randn(12, seed=31)
    coeffs = randn(8, seed=32)
    p0, gx0, gw0 = grads(Statevector().compile(flat, inputs, weights, seed=0), x, w, coeffs)
    shots = 20000
    sigma = torch.sqrt(p0 * (1 - p0) / shots)
    for way in ("appended", "composed", "user-gate"):
        qc, inputs, weights = circuits[way]
        assert len(split_slots(qc, inputs, weights)) == 13
        for backend in (Statevector(), Statevector(gradient="parameter-shift")):
            fn = backend.compile(qc, inputs, weights, seed=0)
            p1, gx1, gw1 = grads(fn, x, w, coeffs)
            torch.testing.assert_close(p1, p0, rtol=0, atol=1e-12)
            torch.testing.assert_close(gx1, gx0, rtol=0, atol=1e-6)
            torch.testing.assert_close(gw1, gw0, rtol=0, atol=1e-6)
        probs = Aer(shots=shots).compile(qc, inputs, weights, seed=0)(x, w)
        assert torch.all((probs - p0).abs() < 5 * sigma + 2e-3)


@dataclass(kw_only=True)
class Knob(Backend):
    """A backend with bounded options, for the tests."""

    name: ClassVar[str] = "knob"

    p: float = option(0.5, help="a probability", minimum=0, maximum=1)
    level: int = option(1, help="a level", minimum=0, maximum=3, exclusive_maximum=True)
    speed: str = option("fast", help="how fast", choices=("fast", "slow"))
    tags: list[str] = option([], help="labels", choices=["red", "green"])


@pytest.mark.parametrize(
    ("cls", "table", "message"),
    [
        (Knob, {"p": 2}, "backends.x.p: must be <= 1, got 2"),
        (Knob, {"p": -0.5}, "backends.x.p: must be >= 0, got -0.5"),
        (Knob, {"level": 3}, "backends.x.level: must be < 3, got 3"),
        (
            Knob,
            {"speed": "slwo"},
            "backends.x.speed: expected one of 'fast', 'slow', got 'slwo' (did you mean 'slow'?)",
        ),
        (Knob, {"tags": ["red", "blue"]}, "expected one of 'red', 'green', got ['red', 'blue']"),
        (Aer, {"depolarizing": 1.5}, "backends.x.depolarizing: must be <= 1, got 1.5"),
        (Aer, {"optimization_level": 4}, "backends.x.optimization_level: must be <= 3, got 4"),
        (Aer, {"method": "density"}, "(did you mean 'density_matrix'?)"),
        (IbmRuntime, {"optimization_level": -1}, "optimization_level: must be >= 0, got -1"),
        (IbmRuntime, {"channel": "ibm_clod"}, "got 'ibm_clod' (did you mean 'ibm_cloud'?)"),
        (preset(Knob, "knob-2", "A preset.", p=0.2), {"p": 2}, "p: must be <= 1, got 2"),
    ],
)
def test_bounds_and_choices_are_one_line_config_errors(cls, table, message):
    with pytest.raises(ConfigError) as info:
        build(cls, table, file="x.toml", key="backends.x")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "key", "message"),
    [
        (lambda: Aer(shots=0), "shots", "must be >= 1, got 0"),
        (lambda: Aer(method="quantum"), "method", "expected one of 'automatic'"),
        (lambda: Statevector(shots=0), "shots", "must be >= 1, got 0"),
        (lambda: Statevector(gradient="x"), "gradient", "'autograd' | 'parameter-shift'"),
        (lambda: IbmRuntime(mode="queue"), "mode", "got 'queue'"),
    ],
)
def test_components_made_in_code_keep_their_bounds_and_choices(make, key, message):
    """The checks a backend's `check()` made before hold at construction: no config needed."""
    with pytest.raises(kdbench.OptionError) as info:
        make()
    assert info.value.key == key and message in info.value.message


def test_values_within_bounds_and_choices_build():
    knob = build(Knob, {"p": 1, "level": 2, "speed": "slow", "tags": ["green"]}, file=None, key="k")
    assert (knob.p, knob.level, knob.speed, knob.tags) == (1.0, 2, "slow", ["green"])
    assert build(Aer, {"method": "stabilizer"}, file=None, key="k").method == "stabilizer"


def test_describe_and_plugins_show_bounds_and_choices(invoke):
    shown = {o.name: o for o in describe(preset(Knob, "knob-3", "A preset.", level=2))}
    assert (shown["p"].minimum, shown["p"].maximum, shown["p"].limits()) == (0, 1, "0 ≤ x ≤ 1")
    assert shown["level"].default == 2 and shown["level"].limits() == "0 ≤ x < 3"
    assert shown["speed"].choices == ("fast", "slow")
    assert shown["speed"].limits() == "one of: fast, slow"
    assert {o.name: o.limits() for o in describe(Aer)}["shots"] == "x ≥ 1"

    text = invoke("plugins").stdout
    assert "0 ≤ x ≤ 1" in text and "0 ≤ x ≤ 3" in text
    assert "one of: automatic, statevector, density_matrix" in text
    listing = json.loads(invoke("plugins", "--json").stdout)
    aer = next(p for p in listing if p["name"] == "aer")["registered"]["backends"][0]
    options = {o["name"]: o for o in aer["options"]}
    assert options["depolarizing"]["minimum"] == 0 and options["depolarizing"]["maximum"] == 1
    assert "extended_stabilizer" in options["method"]["choices"]

"""Student plugins: the paper's presets in both readings, and the classical control."""

from __future__ import annotations

import pytest
import torch

from kdbench.api import StudentContext
from kdbench.plugins import load_registry
from kdbench_plugins.encoders import Amplitude, Angle
from kdbench_plugins.statevector import Statevector

ENCODERS = {"angle": Angle(), "amplitude": Amplitude()}


def build(name: str, num_classes: int, **options):
    student = load_registry(environ={}).get("students", name)(**options)
    encoder = ENCODERS.get(student.encoder) if student.encoder else None
    torch.manual_seed(0)
    context = StudentContext(num_classes, (1, 28, 28), Statevector(), encoder, seed=0)
    return student, student.build(context)


@pytest.mark.parametrize(
    ("name", "qubits", "circuit_weights", "gates"),
    [
        ("released-q3", 3, 0, {"h", "ry"}),
        ("released-q4", 4, 0, {"h", "ry"}),
        ("paper-q3", 3, 3, {"h", "ry", "cx"}),  # amplitude encoding uses CNOTs
        ("paper-q4", 4, 4, {"h", "ry", "cx"}),
        ("pqc", 3, 3, {"h", "ry", "cx"}),
    ],
)
def test_presets_build_the_papers_students(name, qubits, circuit_weights, gates):
    student, model = build(name, num_classes=6)
    assert student.qubits == qubits and student.max_classes() == 2**qubits
    assert model.weights.numel() == circuit_weights
    assert set(model.circuit.count_ops()) == gates
    probs = model(torch.rand(5, 1, 28, 28))
    assert probs.shape == (5, 6)
    assert torch.allclose(probs.sum(1), torch.ones(5, dtype=probs.dtype), atol=1e-6)


def test_released_student_has_only_the_cnn_and_an_encoding():
    _, model = build("released-q3", num_classes=6)
    front = sum(p.numel() for p in model.front.parameters())
    # conv 1->10 k5, conv 10->20 k5, fc 320->50, fc 50->3: the released notebooks' CNN
    assert front == (10 * 25 + 10) + (20 * 10 * 25 + 20) + (320 * 50 + 50) + (50 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == front


def test_classical_control_matches_the_quantum_outline():
    _, quantum = build("released-q3", num_classes=6)
    _, classical = build("classical", num_classes=6, qubits=3)
    front = sum(p.numel() for p in quantum.front.parameters())
    assert sum(p.numel() for p in classical.front.parameters()) == front
    # the circuit's place is taken by a 3 -> 8 linear layer
    assert sum(p.numel() for p in classical.layer.parameters()) == 3 * 8 + 8
    probs = classical(torch.rand(4, 1, 28, 28))
    assert probs.shape == (4, 6) and torch.allclose(probs.sum(1), torch.ones(4), atol=1e-6)


def test_linear_readout_lifts_the_class_limit_and_trains():
    student, model = build("pqc", num_classes=10, qubits=2, readout="linear", front="linear")
    assert student.max_classes() is None
    probs = model(torch.rand(3, 1, 28, 28))
    assert probs.shape == (3, 10)
    probs[:, 0].sum().backward()
    assert model.readout.map.weight.grad.abs().sum() > 0 and model.weights.grad is not None


def test_a_student_that_cannot_read_out_the_classes_is_refused(write_config, registry):
    from kdbench.config import load_spec
    from kdbench.errors import ConfigError

    text = """
    [datasets.digits]
    plugin = "mnist"
    [[matrix]]
    datasets = ["digits"]
    students = ["released-q3"]
    """
    with pytest.raises(
        ConfigError, match="reads out at most 8 classes but dataset 'digits' has 10"
    ):
        load_spec(write_config(text), registry)

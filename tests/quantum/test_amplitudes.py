"""Amplitude encoding: the circuit prepares each real vector exactly (signs included), its
angles are the circuit's inputs one to one, its state can be computed at once from any
angles, and a bad length is refused."""

from __future__ import annotations

import pytest
import torch
from qiskit.quantum_info import Statevector

from kdbench import AMPLITUDES, amplitude_angles, amplitude_circuit, amplitudes_from_angles
from kdbench.quantum import amplitudes


@pytest.mark.parametrize("qubits", [1, 2, 3, 5])
def test_the_circuit_prepares_each_vector(qubits):
    torch.manual_seed(qubits)
    vectors = torch.randn(4, 2**qubits, dtype=torch.float64)
    vectors[0] = vectors[0].abs()  # all positive
    vectors[1, : 2 ** (qubits - 1)] = 0  # a whole half empty
    circuit, inputs = amplitude_circuit(qubits)
    assert len(inputs) == 2**qubits - 1 and dict(circuit.count_ops()) == {AMPLITUDES: 1}
    assert set(circuit.data[0].operation.definition.count_ops()) <= {"ry", "cx"}
    for vector, angles in zip(vectors, amplitude_angles(vectors), strict=True):
        state = Statevector(circuit.assign_parameters(angles.tolist())).data
        assert abs(state.imag).max() < 1e-12
        assert torch.allclose(torch.as_tensor(state.real), vector / vector.norm(), atol=1e-10)


@pytest.mark.parametrize("qubits", [1, 2, 4, 6])
def test_the_state_from_any_angles_is_the_circuit_s(qubits):
    """`amplitudes_from_angles` is the circuit's state for angles no vector gave (any real
    values, beyond ±π too), which a backend loads at once instead of running the gates."""
    circuit, _ = amplitude_circuit(qubits)
    angles = torch.empty(3, 2**qubits - 1, dtype=torch.float64).uniform_(-9, 9)
    loaded = amplitudes_from_angles(angles / 2)
    for row, state in zip(angles, loaded, strict=True):
        expected = Statevector(circuit.assign_parameters(row.tolist())).data
        assert torch.allclose(state, torch.as_tensor(expected.real), atol=1e-10)


def test_small_levels_as_one_matrix_equal_the_fast_transform(monkeypatch):
    """Levels up to DENSE_LEVELS run their transform as one product with its matrix, larger
    ones as passes of sums and differences: the two agree (every level of 7 qubits)."""
    vectors = torch.randn(3, 2**7, dtype=torch.float64)
    angles = amplitude_angles(vectors)
    loaded = amplitudes_from_angles(angles / 2)
    monkeypatch.setattr(amplitudes, "DENSE_LEVELS", -1)
    assert torch.allclose(amplitude_angles(vectors), angles, atol=1e-12)
    assert torch.allclose(amplitudes_from_angles(angles / 2), loaded, atol=1e-12)
    assert torch.allclose(loaded, vectors / vectors.norm(dim=1, keepdim=True), atol=1e-12)


def test_a_vector_of_another_length_is_refused():
    with pytest.raises(ValueError, match="2\\*\\*n entries"):
        amplitude_angles(torch.ones(2, 6))

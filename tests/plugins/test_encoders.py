"""Encoders: the circuits they build prepare the states they promise, differentiably."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector as QiskitStatevector

from kdbench.options import describe
from kdbench_plugins.encoders import Amplitude, Angle, MonotoneAngle
from kdbench_plugins.statevector import Statevector


def _features(qubits: int, seed: int = 0) -> torch.Tensor:
    """Random float64 features [6, 2**n], with zeros: single entries, a whole half, a row."""
    generator = torch.Generator().manual_seed(seed)
    features = 2 * torch.randn(6, 2**qubits, generator=generator, dtype=torch.float64)
    features[1, 0] = 0
    features[2, : 2**qubits // 2] = 0  # an empty subtree under qubit n-1
    features[3, 1::2] = 0  # every leaf pair half empty
    features[4] = -features[4].abs()  # all negative
    features[5] = 0  # no direction at all: |0…0⟩
    return features


def _expected(features: torch.Tensor, scale: float = math.pi) -> np.ndarray:
    """normalize(scale·tanh(x)) row by row, |0…0⟩ for a zero row: computed independently."""
    squashed = scale * np.tanh(features.numpy())
    norms = np.linalg.norm(squashed, axis=1, keepdims=True)
    ground = np.eye(squashed.shape[1])[[0] * len(squashed)]
    return np.where(norms > 0, squashed / np.where(norms > 0, norms, 1), ground)


@pytest.mark.parametrize("qubits", [2, 3, 4])
def test_amplitude_circuit_prepares_the_normalized_state(qubits):
    encoder = Amplitude()
    fragment, inputs = encoder.circuit(qubits)
    features = _features(qubits)
    values = encoder.parameter_values(features)
    assert values.shape == (len(features), 2**qubits - 1) == (len(features), len(inputs))
    expected = _expected(features)
    for row, target in zip(values, expected, strict=True):
        bound = fragment.assign_parameters(dict(zip(inputs, row.tolist(), strict=True)))
        state = QiskitStatevector(bound).data  # index k: bit q is qubit q
        np.testing.assert_allclose(state.real, target, rtol=0, atol=1e-10)
        np.testing.assert_allclose(state.imag, 0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(encoder.amplitudes(features).numpy(), expected, atol=1e-12)


def test_amplitude_scale_is_applied_before_normalizing():
    features = _features(3, seed=1)
    encoder = Amplitude(scale=0.5)
    fragment, inputs = encoder.circuit(3)
    row = encoder.parameter_values(features)[0].tolist()
    state = QiskitStatevector(fragment.assign_parameters(dict(zip(inputs, row, strict=True))))
    np.testing.assert_allclose(state.data.real, _expected(features, 0.5)[0], atol=1e-10)


@pytest.mark.parametrize("qubits", [1, 2, 3, 4])
def test_amplitude_circuit_shape(qubits):
    encoder = Amplitude()
    fragment, inputs = encoder.circuit(qubits)
    assert encoder.num_features(qubits) == 2**qubits
    assert fragment.num_qubits == qubits and len(inputs) == 2**qubits - 1
    counts = fragment.count_ops()
    assert set(counts) <= {"ry", "cx"}
    assert (counts.get("ry", 0), counts.get("cx", 0)) == (2**qubits - 1, 2**qubits - 2)
    # The parameters are in circuit order: one per RY, as the docstring promises.
    ry_params = [op.operation.params[0] for op in fragment.data if op.operation.name == "ry"]
    assert ry_params == inputs


def test_amplitude_rejects_a_feature_count_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="2\\*\\*n features"):
        Amplitude().parameter_values(torch.zeros(2, 6))


@pytest.mark.parametrize("qubits", [2, 3])
def test_amplitude_on_the_kdbench_backend_gives_squared_amplitudes(qubits):
    encoder = Amplitude()
    fragment, inputs = encoder.circuit(qubits)
    run = Statevector().compile(fragment, inputs, [], seed=0)
    features = _features(qubits)
    probs = run(encoder.parameter_values(features), torch.zeros(0, dtype=torch.float64))
    np.testing.assert_allclose(probs.numpy(), _expected(features) ** 2, rtol=0, atol=1e-12)


def test_amplitude_gradients_reach_the_features():
    encoder = Amplitude()
    fragment, inputs = encoder.circuit(3)
    run = Statevector().compile(fragment, inputs, [], seed=0)
    weights = torch.zeros(0, dtype=torch.float64)
    # Leave out the all-zero row: the state jumps there (every direction is near it).
    features = _features(3)[:5].clone().requires_grad_(True)

    def probabilities(x):
        return run(encoder.parameter_values(x), weights)

    assert torch.autograd.gradcheck(probabilities, (features,), eps=1e-6, atol=1e-6)
    # The zero row still has finite (zero) gradients instead of NaNs.
    zero = torch.zeros(1, 8, dtype=torch.float64, requires_grad=True)
    probabilities(zero)[0, 3].backward()
    assert torch.equal(zero.grad, torch.zeros_like(zero))


def test_angle_fragment_is_h_then_ry_per_qubit():
    encoder = Angle()
    fragment, inputs = encoder.circuit(3)
    assert encoder.num_features(3) == 3 and len(inputs) == 3
    ops = [
        (op.operation.name, fragment.find_bit(op.qubits[0]).index, op.operation.params)
        for op in fragment.data
    ]
    assert ops == [item for q in range(3) for item in (("h", q, []), ("ry", q, [inputs[q]]))]
    features = torch.tensor([[0.0, 1.0, -2.0]])
    expected = math.pi * torch.tanh(features)
    torch.testing.assert_close(encoder.parameter_values(features), expected)


def test_angle_and_amplitude_share_the_scale_option():
    for cls in (Angle, Amplitude):
        (scale,) = [o for o in describe(cls) if o.name == "scale"]
        assert scale.default == pytest.approx(math.pi)
    assert Angle(scale=2.0).parameter_values(torch.ones(1, 1)).item() == pytest.approx(
        2 * math.tanh(1)
    )


def test_encoders_are_registered(registry):
    assert {"angle", "monotone-angle", "amplitude"} <= set(registry.names("encoders"))


def _p_one(encoder, features: torch.Tensor) -> torch.Tensor:
    """P(qubit 0 reads 1) of the one-qubit encoding of each feature, on the backend."""
    fragment, inputs = encoder.circuit(2)
    run = Statevector().compile(fragment, inputs, [], seed=0)
    values = torch.stack([features, torch.zeros_like(features)], 1)
    probs = run(encoder.parameter_values(values), torch.zeros(0, dtype=torch.float64))
    return probs[:, 1] + probs[:, 3]  # outcomes with bit 0 set


def test_the_monotone_angle_encoding_rises_with_its_feature_to_a_basis_state():
    """With scale π a feature past tanh x = ½ turns back (saturated: P = ½ and no gradient);
    at π/2 P(1) rises all the way and a saturated feature reads a definite 0 or 1."""
    features = torch.linspace(-8, 8, 401, dtype=torch.float64)
    monotone, released = _p_one(MonotoneAngle(), features), _p_one(Angle(), features)
    assert (monotone.diff() >= 0).all() and monotone[0] < 1e-6 and monotone[-1] > 1 - 1e-6
    assert (released.diff() < 0).any()
    torch.testing.assert_close(
        released[[0, -1]], torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=1e-5
    )

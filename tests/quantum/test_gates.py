"""Standard gates run as their exact definitions (`kdbench.EXACT_GATES`: controlled and
two-qubit rotations, U, sx, cy, ...): the definitions against Qiskit's matrices, and each
backend's probabilities and gradients (autograd, parameter shift) against Qiskit's statevector
and its finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Parameter, ParameterVector
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.quantum_info import Operator
from qiskit.quantum_info import Statevector as QiskitStatevector

from kdbench import EXACT_GATES, decompose_to, exact_definition, linear_angle, split_slots
from kdbench_plugins.density_matrix import DensityMatrix
from kdbench_plugins.statevector import CompiledStatevector, Statevector
from kdbench_plugins.statevector.builder import NATIVE_GATES
from tests.helpers import grads, randn

STANDARD = get_standard_gate_name_mapping()
PARAMETERIZED = [name for name in EXACT_GATES if STANDARD[name].params]
BACKENDS = {
    "statevector": Statevector(),
    "parameter-shift": Statevector(gradient="parameter-shift"),
    "density-matrix": DensityMatrix(),
}


def gate(name: str, angles: list) -> Gate:
    """Gate `name` with its first len(params) of `angles`."""
    return STANDARD[name].base_class(*angles[: len(STANDARD[name].params)])


def gate_circuit(name: str) -> tuple[QuantumCircuit, list[Parameter], list[Parameter]]:
    """A random entangled 3-qubit state (a weight `v` in it), gate `name` with angles 2x + 0.3,
    w0, -0.5·w1 + 1, w2 (x an input), on qubit 1 or qubits (2, 0), then random rotations, so
    that phases show in the probabilities. Returns (circuit, [x], [w0, w1, w2, v])."""
    rng = np.random.default_rng(sum(map(ord, name)))
    x, w, v = Parameter("x"), ParameterVector("w", 3), Parameter("v")
    qc = QuantumCircuit(3)
    for q in range(3):
        qc.ry(rng.uniform(0.3, 2.8), q)
        qc.rz(rng.uniform(-3, 3), q)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.ry(v, 0)
    operation = gate(name, [2 * x + 0.3, w[0], -0.5 * w[1] + 1, w[2]])
    qc.append(operation, [1] if operation.num_qubits == 1 else [2, 0])
    for q in range(3):
        qc.rx(rng.uniform(-3, 3), q)
        qc.ry(rng.uniform(-3, 3), q)
    return qc, [x], [*w, v]


def qiskit_probabilities(circuit, inputs, weights, x, w) -> np.ndarray:
    """Qiskit's probabilities [B, 2**n] of `circuit` bound to each row of x and to w."""
    rows = []
    for row in x.tolist():
        values = dict(zip([*inputs, *weights], [*row, *w.tolist()], strict=True))
        bound = circuit.assign_parameters({p: values[p] for p in circuit.parameters})
        rows.append(QiskitStatevector(bound).probabilities())
    return np.array(rows)


@pytest.mark.parametrize("name", EXACT_GATES)
def test_definition_is_the_gate_and_flattens_into_linear_native_gates(name):
    angles = np.random.default_rng(sum(map(ord, name))).uniform(-3, 3, 4).tolist()
    exact = Operator(gate(name, angles)).data
    np.testing.assert_allclose(Operator(exact_definition(gate(name, angles))).data, exact, 0, 1e-12)
    # With Parameters, flattened as a backend does: native gates, each angle a*p + b of one
    # of the gate's angles, the same matrix once bound, global phase included.
    params = list(ParameterVector("a", 4))
    qc = QuantumCircuit(STANDARD[name].num_qubits)
    qc.append(gate(name, params), range(qc.num_qubits))
    flat = decompose_to(qc, NATIVE_GATES)
    assert set(flat.count_ops()) <= set(NATIVE_GATES)
    columns = {p: i for i, p in enumerate(params)}
    for instruction in flat.data:
        for value in instruction.operation.params:
            linear_angle(value, columns, name)  # raises for another form
    bound = flat.assign_parameters({p: angles[columns[p]] for p in flat.parameters})
    np.testing.assert_allclose(Operator(bound).data, exact, 0, 1e-12)


@pytest.mark.parametrize("name", EXACT_GATES)
def test_backends_give_qiskits_probabilities(name):
    circuit, inputs, weights = gate_circuit(name)
    x, w = randn(2, 1, seed=1), randn(4, seed=2)
    expected = qiskit_probabilities(circuit, inputs, weights, x, w)
    for backend in BACKENDS.values():
        probs = backend.compile(circuit, inputs, weights, seed=0)(x, w)
        np.testing.assert_allclose(probs.numpy(), expected, 0, 1e-10)


@pytest.mark.parametrize("name", PARAMETERIZED)
def test_gradients_agree_with_parameter_shift_and_qiskits_finite_differences(name):
    circuit, inputs, weights = gate_circuit(name)
    x, w, coeffs = randn(2, 1, seed=3), randn(4, seed=4), randn(8, seed=5)

    def loss(x: torch.Tensor, w: torch.Tensor) -> float:
        return float((qiskit_probabilities(circuit, inputs, weights, x, w) @ coeffs.numpy()).sum())

    eps = 1e-5
    numeric_x, numeric_w = torch.zeros_like(x), torch.zeros_like(w)
    for tensor, numeric in ((x, numeric_x), (w, numeric_w)):
        for i in range(tensor.numel()):
            step = torch.zeros_like(tensor).view(-1)
            step[i] = eps
            step = step.view_as(tensor)
            up = loss(x + step, w) if tensor is x else loss(x, w + step)
            down = loss(x - step, w) if tensor is x else loss(x, w - step)
            numeric.view(-1)[i] = (up - down) / (2 * eps)
    assert numeric_x.abs().sum() > 1e-3  # the gate's angle shows in the probabilities
    for backend in BACKENDS.values():
        _, gx, gw = grads(backend.compile(circuit, inputs, weights, seed=0), x, w, coeffs)
        np.testing.assert_allclose(gx.numpy(), numeric_x.numpy(), 0, 1e-7)
        np.testing.assert_allclose(gw.numpy(), numeric_w.numpy(), 0, 1e-7)


def test_fusion_still_makes_a_product_state_and_one_weight_block():
    """Encoding, then only new gates with weight angles: a product state and one matrix."""
    x, w = ParameterVector("x", 3), ParameterVector("w", 8)
    qc = QuantumCircuit(3)
    for q in range(3):
        qc.h(q)
        qc.ry(x[q], q)
    qc.crx(w[0], 0, 1)
    qc.rzz(2 * w[1] + 0.3, 1, 2)
    qc.u(w[2], w[3], -w[4], 2)
    qc.cp(w[5], 2, 0)
    qc.ryy(w[6], 0, 2)
    qc.cy(1, 0)
    qc.cu(w[7], 0.4, w[0], -0.2, 0, 2)
    xs, ws = randn(3, 3, seed=6), randn(8, seed=7)
    fused, plain = (
        CompiledStatevector(qc, list(x), list(w), shots=None, seed=0, fuse=f) for f in (True, False)
    )
    assert fused.num_operations == 2 < plain.num_operations
    coeffs = randn(8, seed=8)
    for a, b in zip(grads(fused, xs, ws, coeffs), grads(plain, xs, ws, coeffs), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), 0, 1e-12)  # probabilities, gradients
    expected = qiskit_probabilities(qc, list(x), list(w), xs, ws)
    np.testing.assert_allclose(fused(xs, ws).numpy(), expected, 0, 1e-10)


def test_parameter_shift_expands_only_gates_whose_angles_vary():
    """Constant gates stay whole for a backend's transpiler; crx(θ) becomes two ry slots."""
    theta = Parameter("θ")
    qc = QuantumCircuit(2)
    qc.crx(0.3, 0, 1)
    qc.cy(0, 1)
    qc.crx(theta, 1, 0)
    qc.rzz(theta, 0, 1)
    slots = split_slots(qc, [], [theta])
    ops = slots.circuit.count_ops()
    assert ops["crx"] == 1 and ops["cy"] == 1 and ops["ry"] == 2 and ops["rzz"] == 1
    assert len(slots) == 3 and slots.slopes == (0.5, -0.5, 1.0)


def test_density_matrix_puts_one_error_after_a_gate_of_several_angles():
    """u and cu run as their definitions' gates, one angle each, the error after the last
    only: the same probabilities as the constant gates (one step each, one error)."""
    circuit, inputs, weights = gate_circuit("cu")
    circuit.u(weights[0], inputs[0], -0.5 * weights[1], 1)
    x, w = randn(1, 1, seed=9), randn(4, seed=10)
    values = dict(zip([*inputs, *weights], [*x[0].tolist(), *w.tolist()], strict=True))
    bound = circuit.assign_parameters(values)
    noisy = DensityMatrix(depolarizing=0.1)
    probs = noisy.compile(circuit, inputs, weights, seed=0)(x, w)
    constant = noisy.compile(bound, [], [], seed=0)(
        torch.zeros(1, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    )
    np.testing.assert_allclose(probs.numpy(), constant.numpy(), 0, 1e-12)
    # An error after each of the definitions' gates would show.
    flat = decompose_to(bound, NATIVE_GATES)
    apart = noisy.compile(flat, [], [], seed=0)(
        torch.zeros(1, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    )
    assert np.abs(apart.numpy() - probs.numpy()).max() > 1e-3


def test_errors_list_the_gates_run_by_definition():
    p = Parameter("p")
    qc = QuantumCircuit(2)
    qc.append(STANDARD["xx_plus_yy"].base_class(p, 0.1), [0, 1])
    with pytest.raises(ValueError, match=r"'xx_plus_yy'.*supports .*crx, cry, crz.* u, u1, u2"):
        split_slots(qc, [p], [])
    qc = QuantumCircuit(2)
    qc.iswap(0, 1)
    with pytest.raises(ValueError, match=r"'iswap'.*supported: .*crx, .*rzz, .*sxdg, .*u3"):
        Statevector().compile(qc, [], [], seed=0)


@pytest.mark.parametrize("name", ["crx", "cry", "crz", "cp"])
@pytest.mark.parametrize("fuse", [True, False])
def test_statevector_runs_controlled_rotations_natively_as_qiskit_does(name, fuse):
    """crx, cry, crz and cp are one operation each, not their definitions: the control
    above and below the target, the angle an input's, a weight's or constant, with and
    without fusion (the weight's lands in a fused block)."""
    x, w = Parameter("x"), Parameter("w")
    qc = QuantumCircuit(4)
    for q in range(4):
        qc.h(q)
        qc.ry(0.3 + q, q)
    qc.cx(0, 2)
    for control, target, angle in ((3, 1, 2 * x - 0.4), (0, 2, w), (2, 3, 0.7), (1, 0, -x)):
        qc.append(gate(name, [angle]), [control, target])
        qc.rx(0.2 * target + 0.1, target)
    compiled = CompiledStatevector(qc, [x], [w], shots=None, seed=0, fuse=fuse)
    assert compiled.num_operations < len(
        decompose_to(qc, ["h", "x", "cx", "rx", "ry", "rz", "p", "s", "sdg"]).data
    )
    xs, ws = randn(3, 1, seed=6), randn(1, seed=7)
    expected = qiskit_probabilities(qc, [x], [w], xs, ws)
    np.testing.assert_allclose(compiled(xs, ws).numpy(), expected, 0, 1e-10)

"""The `statevector` backend against Qiskit's own simulator, finite differences and statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import XXPlusYYGate
from qiskit.quantum_info import Statevector as QiskitStatevector

from kdbench import AMPLITUDES, CircuitPlan, amplitude_angles, amplitude_circuit
from kdbench_plugins import statevector
from kdbench_plugins.statevector import Statevector, apply_operation

ONE_QUBIT = ["h", "x", "y", "z", "s", "sdg", "t"]
ROTATIONS = ["rx", "ry", "rz", "p"]


def random_circuit(rng: np.random.Generator, num_qubits: int, depth: int, controlled=False):
    """A circuit drawing every supported gate (with `controlled`, crx, cry, crz, cp and rzz
    too), with angles from inputs, weights, floats and linear expressions; returns (circuit,
    inputs, weights)."""
    inputs = list(ParameterVector("x", 3))
    weights = list(ParameterVector("w", 4))
    names = list(ONE_QUBIT)
    if num_qubits >= 2:
        names += ["cx", "cz", "swap"]
    if num_qubits >= 3:
        names += ["ccx"]
    circuit = QuantumCircuit(num_qubits, num_qubits)
    # Superpositions first, so that most phase gates show in the probabilities.
    circuit.h(range(num_qubits))
    for _ in range(depth):
        # Half rotations, so that parameters (and so gradients) are in most circuits.
        rotations = ROTATIONS + (["crx", "cry", "crz", "cp", "rzz"] if controlled else [])
        name = str(rng.choice(rotations if rng.random() < 0.5 else names))
        if name in rotations:
            if name.startswith("c") or name == "rzz":
                qubits = [int(q) for q in rng.permutation(num_qubits)[:2]]
            else:
                qubits = [int(rng.integers(num_qubits))]
            kind = rng.choice(["float", "input", "weight"], p=[0.2, 0.4, 0.4])
            if kind == "float":
                angle = float(rng.uniform(-4, 4))
            else:
                param = (inputs if kind == "input" else weights)[rng.integers(3)]
                # Also a linear expression a*p + b, which the backend evaluates itself.
                angle = param if rng.random() < 0.5 else rng.uniform(-2, 2) * param + 0.3
            getattr(circuit, name)(angle, *qubits)
        else:
            arity = {"cx": 2, "cz": 2, "swap": 2, "ccx": 3}.get(name, 1)
            qubits = [int(q) for q in rng.permutation(num_qubits)[:arity]]
            getattr(circuit, name)(*qubits)
        if rng.random() < 0.1:
            circuit.barrier()
    circuit.measure(range(num_qubits), range(num_qubits))
    return circuit, inputs, weights


def randn(*shape: int, seed: int) -> torch.Tensor:
    """Fixed float64 normal draws, so that every run sees the same values."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    # torch.testing.assert_close costs most of a second on its first call.
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), 0, atol)


def qiskit_probabilities(circuit, inputs, weights, x, w) -> np.ndarray:
    """Qiskit's probabilities of `circuit` bound to the values of one sample."""
    values = dict(zip(inputs, x.tolist(), strict=True))
    values.update(zip(weights, w.tolist(), strict=True))
    used = {p: values[p] for p in circuit.parameters}
    bound = circuit.remove_final_measurements(inplace=False).assign_parameters(used)
    return QiskitStatevector(bound).probabilities()


@pytest.mark.parametrize("seed", range(20))
def test_random_circuits_match_qiskit(seed):
    rng = np.random.default_rng(seed)
    num_qubits = 1 + seed % 5
    circuit, inputs, weights = random_circuit(rng, num_qubits, 8 + 4 * num_qubits, num_qubits > 1)
    fn = Statevector().compile(circuit, inputs, weights, seed=0)
    x = torch.tensor(rng.uniform(-3, 3, (4, len(inputs))))
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    probs = fn(x, w)
    assert probs.shape == (4, 2**num_qubits)
    assert probs.dtype == torch.float64
    for row in range(4):
        expected = qiskit_probabilities(circuit, inputs, weights, x[row], w)
        np.testing.assert_allclose(probs[row].numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", range(12))
def test_fusion_changes_neither_probabilities_nor_gradients(seed):
    """Product-state and weight-block fusion against the same circuit gate by gate: random
    circuits of every gate, some starting with an entangler, one wider than fusion covers."""
    rng = np.random.default_rng(300 + seed)
    num_qubits = 7 if seed == 11 else 1 + seed % 5
    circuit, inputs, weights = random_circuit(rng, num_qubits, 10 + 4 * num_qubits, num_qubits > 1)
    if seed % 3 == 0 and num_qubits > 1:  # no leading single-qubit gates to make a product of
        entangled = QuantumCircuit(num_qubits, num_qubits)
        entangled.cx(0, 1)
        circuit = entangled.compose(circuit)
    x = torch.tensor(rng.uniform(-3, 3, (5, len(inputs))))
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    coeffs = torch.tensor(rng.normal(size=(5, 2**num_qubits)))
    compiled = [
        statevector.CompiledStatevector(circuit, inputs, weights, shots=None, seed=0, fuse=f)
        for f in (True, False)
    ]
    (l0, gx0, gw0), (l1, gx1, gw1) = (loss_and_grads(fn, x, w, coeffs) for fn in compiled)
    assert_close(l0, l1, 1e-10)
    assert_close(gx0, gx1, 1e-10)
    assert_close(gw0, gw1, 1e-10)
    fused, plain = compiled
    # Wider than block fusion covers, only the leading gates are fused (if there are some).
    assert fused.num_operations < plain.num_operations or (
        num_qubits > statevector.FUSE_MAX_QUBITS and seed % 3 == 0
    )
    for row in range(2):  # and against Qiskit
        expected = qiskit_probabilities(circuit, inputs, weights, x[row], w)
        np.testing.assert_allclose(fused(x, w)[row].detach().numpy(), expected, 0, 1e-10)


def test_bit_order_is_little_endian():
    circuit = QuantumCircuit(3)
    circuit.x(0)  # qubit 0 set: index 0b001
    circuit.x(2)  # qubit 2 set: index 0b101 = 5
    probs = Statevector().compile(circuit, [], [], seed=0)(torch.zeros(1, 0), torch.zeros(0))
    assert probs[0, 5] == 1 and probs.sum() == 1


def loss_and_grads(fn, x, w, coeffs):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    loss = (fn(x, w) * coeffs).sum()
    loss.backward()
    return loss.detach(), x.grad, w.grad


def weight_grads(fn, x, w, coeffs):
    """The weights' gradient when the inputs need none (operations that read only inputs
    then run on a table without gradient)."""
    w = w.clone().requires_grad_(True)
    (fn(x, w) * coeffs).sum().backward()
    return w.grad


def assert_trains_alike(fast, slow, x, w, coeffs) -> None:
    """`fast` (fused, or loaded at once) and `slow` (gate by gate) give the same loss and
    gradients, and the weights' gradient stays the same when the inputs need none."""
    (l0, gx0, gw0), (l1, gx1, gw1) = (loss_and_grads(fn, x, w, coeffs) for fn in (fast, slow))
    assert_close(l0, l1, 1e-10)
    assert_close(gx0, gx1, 1e-10)
    assert_close(gw0, gw1, 1e-10)
    assert_close(weight_grads(fast, x, w, coeffs), gw0, 1e-10)


@pytest.mark.parametrize("seed", [4, 5, 6, 7, 8])
def test_gradients_match_central_differences(seed):
    rng = np.random.default_rng(100 + seed)
    circuit, inputs, weights = random_circuit(rng, 2 + seed % 3, depth=16)
    fn = Statevector().compile(circuit, inputs, weights, seed=0)
    x = torch.tensor(rng.uniform(-3, 3, (3, len(inputs))))
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    coeffs = torch.tensor(rng.normal(size=(3, 2**circuit.num_qubits)))
    _, grad_x, grad_w = loss_and_grads(fn, x, w, coeffs)

    def loss(x, w):
        return float((fn(x, w) * coeffs).sum())

    eps = 1e-6
    for tensor, grad in ((x, grad_x), (w, grad_w)):
        flat = tensor.view(-1)
        for i in range(flat.numel()):
            saved = flat[i].item()
            flat[i] = saved + eps
            up = loss(x, w)
            flat[i] = saved - eps
            down = loss(x, w)
            flat[i] = saved
            assert grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), abs=1e-7)
    # The circuits are drawn so that both gradients are nonzero somewhere.
    assert grad_x.abs().sum() > 1e-3 and grad_w.abs().sum() > 1e-3


def layered_circuit(num_qubits: int, extra_phase: bool):
    """Angle encoding, two RY/CX layers; `extra_phase` appends a parameterized phase gate,
    which forces complex amplitudes but leaves the probabilities unchanged."""
    x = ParameterVector("x", num_qubits)
    w = ParameterVector("w", 2 * num_qubits)
    circuit = QuantumCircuit(num_qubits)
    for q in range(num_qubits):
        circuit.h(q)
        circuit.ry(x[q], q)
    for layer in range(2):
        for q in range(num_qubits):
            circuit.ry(w[layer * num_qubits + q], q)
        for q in range(num_qubits - 1):
            circuit.cx(q, q + 1)
    if extra_phase:
        circuit.p(w[0], 0)
    return circuit, list(x), list(w)


def test_real_path_for_real_gates_matches_complex_path():
    real_fn = Statevector().compile(*layered_circuit(3, extra_phase=False), seed=0)
    complex_fn = Statevector().compile(*layered_circuit(3, extra_phase=True), seed=0)
    assert real_fn.is_real and not complex_fn.is_real
    x, w = randn(5, 3, seed=1), randn(6, seed=2)
    real_probs, complex_probs = real_fn(x, w), complex_fn(x, w)
    assert real_probs.dtype == complex_probs.dtype == torch.float64
    assert_close(real_probs, complex_probs, 1e-12)
    # Fused: the product state of H and RY(x) per qubit, then one matrix of all the weights'
    # gates; gate by gate: per layer 3 RY and the CX chain in one gather.
    assert real_fn.num_operations == 2
    unfused = statevector.CompiledStatevector(
        *layered_circuit(3, False), shots=None, seed=0, fuse=False
    )
    assert unfused.num_operations == 2 * 3 + 2 * (3 + 1)

    # float32 in, float32 out, within float32 rounding of the float64 result.
    single = real_fn(x.float(), w.float())
    assert single.dtype == torch.float32
    assert_close(single.double(), real_probs, 1e-5)


def test_phases_that_cancel_keep_the_real_path():
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.s(0)
    circuit.s(0)  # S·S = Z: real
    circuit.rz(math.pi, 1)  # -i·Z: real up to a global phase
    circuit.cx(0, 1)
    fn = Statevector().compile(circuit, [], [], seed=0)
    assert fn.is_real
    expected = QiskitStatevector(circuit).probabilities()
    np.testing.assert_allclose(fn(torch.zeros(2, 0), torch.zeros(0))[1].numpy(), expected)


def test_counters_count_executions_and_no_shots_when_exact():
    fn = Statevector().compile(*layered_circuit(2, extra_phase=False), seed=0)
    fn(torch.zeros(3, 2), torch.zeros(4))
    fn(torch.zeros(5, 2), torch.zeros(4))
    assert (fn.executions, fn.shots) == (8, 0)


def test_shots_sample_frequencies_reproducibly():
    circuit, x_params, w_params = layered_circuit(3, extra_phase=True)
    backend = Statevector(shots=2000, smoothing=0)  # raw frequencies
    x, w = randn(6, 3, seed=3), randn(6, seed=4)
    exact = Statevector().compile(circuit, x_params, w_params, seed=0)(x, w)

    fn = backend.compile(circuit, x_params, w_params, seed=7)
    sampled = fn(x, w)
    assert (fn.executions, fn.shots) == (6, 6 * 2000)
    assert_close(sampled.sum(1), torch.ones(6, dtype=torch.float64), 1e-12)
    counts = sampled * 2000
    assert_close(counts, counts.round(), 1e-9)
    # Binomial sigma, floored at one count: for tiny p the normal bound is too tight.
    sigma = (exact * (1 - exact)).clamp(min=1 / 2000).div(2000).sqrt()
    assert ((sampled - exact).abs() <= 5 * sigma + 1e-12).all()
    assert not torch.equal(sampled, exact)

    again = backend.compile(circuit, x_params, w_params, seed=7)(x, w)
    other = backend.compile(circuit, x_params, w_params, seed=8)(x, w)
    assert torch.equal(sampled, again)
    assert not torch.equal(sampled, other)
    fn(x, w)
    assert (fn.executions, fn.shots) == (12, 12 * 2000)


def test_shots_use_straight_through_gradients():
    circuit, x_params, w_params = layered_circuit(3, extra_phase=False)
    x, w = randn(4, 3, seed=5), randn(6, seed=6)
    coeffs = randn(4, 8, seed=7)
    exact = Statevector().compile(circuit, x_params, w_params, seed=0)
    _, exact_gx, exact_gw = loss_and_grads(exact, x, w, coeffs)
    # Raw frequencies: the exact gradient; smoothed, that gradient times shots / (shots + α·M).
    for smoothing, factor in ((0, 1.0), (0.5, 100 / (100 + 0.5 * 8))):
        sampled = Statevector(shots=100, smoothing=smoothing).compile(
            circuit, x_params, w_params, seed=0
        )
        _, sampled_gx, sampled_gw = loss_and_grads(sampled, x, w, coeffs)
        assert_close(sampled_gx, factor * exact_gx, 1e-12)
        assert_close(sampled_gw, factor * exact_gw, 1e-12)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda qc, p: qc.iswap(0, 1), "'iswap'"),
        (lambda qc, p: qc.ecr(0, 1), "'ecr'"),
        (lambda qc, p: qc.append(XXPlusYYGate(0.1, 0.2), [0, 1]), "'xx_plus_yy'"),
        (lambda qc, p: qc.ry(p * p, 0), "a\\*p \\+ b"),
        (lambda qc, p: qc.ry(p.sin(), 0), "a\\*p \\+ b"),
        (lambda qc, p: qc.rx(p + Parameter("q"), 0), "several parameters"),
        (lambda qc, p: qc.rz(Parameter("stray"), 1), "'stray' is in neither"),
    ],
)
def test_unsupported_gates_and_angles_are_named(build, message):
    p = Parameter("p")
    circuit = QuantumCircuit(2)
    circuit.h(0)
    build(circuit, p)
    with pytest.raises(ValueError, match=message):
        Statevector().compile(circuit, [p], [], seed=0)


def test_wrong_shapes_are_rejected():
    fn = Statevector().compile(*layered_circuit(2, extra_phase=False), seed=0)
    with pytest.raises(ValueError, match="inputs"):
        fn(torch.zeros(3, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="weights"):
        fn(torch.zeros(3, 2), torch.zeros(5))


def test_registered_under_its_name():
    registered = []
    statevector.register_backends(registered.append)
    assert registered == [Statevector]
    assert Statevector.name == "statevector"
    assert Statevector.summary() == (
        "Exact batched statevector simulation in torch, autograd gradients."
    )


@pytest.mark.parametrize("num_qubits", [4, 9])
def test_runs_that_read_inputs_fuse_and_change_nothing(num_qubits):
    """Gates that read an input fuse too: each qubit's single-qubit gates between two
    entanglers (re-uploading's Rot(x·ω) then Rot(θ)) into one matrix per row, and a run of
    diagonal gates (an IQP embedding's RZZ on every pair, among rz, p, crz, cp and constant
    phases) into one phase per row: probabilities and gradients as gate by gate, and as
    Qiskit's, within and past the width of whole-circuit blocks."""
    rng = np.random.default_rng(num_qubits)
    n = num_qubits
    inputs, weights = list(ParameterVector("x", 2 * n)), list(ParameterVector("w", 6 * n))
    circuit = QuantumCircuit(n)
    circuit.h(range(n))
    for a in range(n):  # the embedding: diagonal gates of inputs, weights and constants
        for b in range(a + 1, n):
            circuit.rzz(inputs[(a + b) % (2 * n)] * 0.7 - 0.2, a, b)
        circuit.rz(inputs[a], a)
        circuit.s(a)
        circuit.cp(inputs[n + a], a, (a + 1) % n)
        circuit.crz(weights[a], (a + 2) % n, a)
        circuit.p(weights[n + a], a)
    for layer in range(2):  # uploads and trainable rotations, then entanglers
        for q in range(n):
            circuit.rz(inputs[q], q)
            circuit.ry(inputs[(q + layer) % (2 * n)], q)
            circuit.rx(weights[2 * n + q], q)
            circuit.h(q)
            circuit.rz(weights[3 * n + q], q)
        for q in range(layer % 2, n - 1, 2):
            circuit.cz(q, q + 1)
        circuit.rzz(weights[4 * n + layer], 0, n - 1)  # a weight's rzz: a block's gate
    x = torch.tensor(rng.uniform(-3, 3, (3, 2 * n)))
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    coeffs = torch.tensor(rng.normal(size=(3, 2**n)))
    fused, plain = (
        statevector.CompiledStatevector(circuit, inputs, weights, shots=None, seed=0, fuse=f)
        for f in (True, False)
    )
    kinds = {type(op).__name__ for op in fused._ops}
    assert {"_Phases", "_RowMatrix"} <= kinds
    assert fused.num_operations < plain.num_operations / 4
    assert_trains_alike(fused, plain, x, w, coeffs)
    for row in range(2):
        expected = qiskit_probabilities(circuit, inputs, weights, x[row], w)
        np.testing.assert_allclose(fused(x, w)[row].detach().numpy(), expected, 0, 1e-10)


@pytest.mark.parametrize("num_qubits", [3, 9])
def test_an_amplitude_encoding_first_is_loaded_at_once_and_changes_nothing(num_qubits):
    """`kdbench.amplitude_circuit`'s gate first in a circuit: its state computed at once from
    the angles (one operation where the gates are 2^n rotations and as many CNOTs), the
    same probabilities and gradients as its gates run one by one, and as Qiskit's."""
    n = num_qubits
    rng = np.random.default_rng(n)
    encoding, inputs = amplitude_circuit(n)
    weights = list(ParameterVector("w", 2 * n))
    ansatz = QuantumCircuit(n)
    for q in range(n):
        ansatz.ry(weights[q], q)
        ansatz.cx(q, (q + 1) % n)
        ansatz.rz(weights[n + q], q)
    loaded = encoding.compose(ansatz)
    flat = loaded.decompose(AMPLITUDES)  # the same gates, no longer one
    assert dict(flat.count_ops()).keys() >= {"ry", "cx"} and AMPLITUDES not in flat.count_ops()
    x = amplitude_angles(torch.tensor(rng.normal(size=(3, 2**n))))
    x[2] = torch.tensor(rng.uniform(-9, 9, len(inputs)))  # angles no vector gave
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    coeffs = torch.tensor(rng.normal(size=(3, 2**n)))
    at_once, one_by_one = (
        statevector.CompiledStatevector(c, inputs, weights, shots=None, seed=0)
        for c in (loaded, flat)
    )
    assert 4 * at_once.num_operations < one_by_one.num_operations
    assert at_once.depth == one_by_one.depth  # counted on the gates either way
    assert_trains_alike(at_once, one_by_one, x, w, coeffs)
    for row in range(3):
        expected = qiskit_probabilities(loaded, inputs, weights, x[row], w)
        np.testing.assert_allclose(at_once(x, w)[row].detach().numpy(), expected, 0, 1e-10)


def test_an_amplitude_encoding_loaded_at_once_is_one_rotation_in_the_memory_estimate():
    encoding, inputs = amplitude_circuit(10)
    plan = CircuitPlan(encoding, list(inputs), [], 32, 8)
    assert "(32 × 4 states of 2^10 float32" in Statevector().memory_needed(plan)[1]
    second = encoding.compose(encoding)  # not loaded at once: 2 × 1,023 rotations
    plan = CircuitPlan(second, list(inputs), [], 32, 8)
    assert "(32 × 2049 states of 2^10 float32" in Statevector().memory_needed(plan)[1]


def test_an_amplitude_encoding_not_first_runs_gate_by_gate():
    encoding, inputs = amplitude_circuit(2)
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit = circuit.compose(encoding)
    compiled = Statevector().compile(circuit, list(inputs), [], seed=0)
    assert compiled.num_operations > 2
    x = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    expected = qiskit_probabilities(circuit, inputs, [], x[0], torch.zeros(0))
    np.testing.assert_allclose(compiled(x, torch.zeros(0))[0].numpy(), expected, 0, 1e-10)


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("width", [1, 2])
def test_a_matrix_on_neighbouring_qubits_is_applied_alike_in_every_form(width, per_row):
    """`on_qubits` picks its form by position (a widened matrix near qubit 0, a product per
    block from qubit 7 up, einsum between): each position against the plain definition."""
    n, batch = 9, 3
    generator = torch.Generator().manual_seed(width + 2 * per_row)
    state = torch.randn(batch, 2**n, dtype=torch.complex128, generator=generator)
    shape = (batch, 2**width, 2**width) if per_row else (2**width, 2**width)
    matrix = torch.randn(shape, dtype=torch.complex128, generator=generator)
    for low in range(n - width + 1):
        got = apply_operation.on_qubits(state, matrix, low, n)
        view = state.reshape(batch, -1, 2**width, 2**low)
        expected = torch.einsum("bij,bljr->blir" if per_row else "ij,bljr->blir", matrix, view)
        assert_close(got, expected.reshape(batch, -1), 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_local_blocks_past_the_fusion_width_change_nothing(seed):
    """Wider than whole-circuit blocks, runs of weight-only gates on one or two qubits
    (convolution blocks: RY, RY, CNOT, RY, RY; controlled rotations; constant gates) become
    one operation each: probabilities and gradients as gate by gate, and as Qiskit's."""
    rng = np.random.default_rng(700 + seed)
    n = statevector.FUSE_MAX_QUBITS + 1
    inputs, weights = list(ParameterVector("x", n)), list(ParameterVector("w", 8))
    circuit = QuantumCircuit(n)
    for q in range(n):
        circuit.ry(inputs[q], q)
    for _ in range(3):
        for a in rng.permutation(n)[: n - 1].tolist():
            b = (a + 1 + int(rng.integers(n - 1))) % n
            w = [weights[int(i)] for i in rng.integers(8, size=4)]
            circuit.ry(w[0], a)
            circuit.rx(w[1], b)
            getattr(circuit, str(rng.choice(["cx", "cz", "swap"])))(a, b)
            circuit.ry(w[2], a)
            getattr(circuit, str(rng.choice(["crx", "cry", "crz", "cp"])))(w[3], b, a)
            circuit.h(b)
            circuit.t(a)
        circuit.rz(inputs[int(rng.integers(n))], int(rng.integers(n)))  # a gate of the input
    x = torch.tensor(rng.uniform(-3, 3, (3, n)))
    w = torch.tensor(rng.uniform(-3, 3, len(weights)))
    coeffs = torch.tensor(rng.normal(size=(3, 2**n)))
    compiled = [
        statevector.CompiledStatevector(circuit, inputs, weights, shots=None, seed=0, fuse=f)
        for f in (True, False)
    ]
    assert compiled[0].num_operations < compiled[1].num_operations / 2
    assert_trains_alike(*compiled, x, w, coeffs)
    expected = qiskit_probabilities(circuit, inputs, weights, x[0], w)
    np.testing.assert_allclose(compiled[0](x, w)[0].detach().numpy(), expected, 0, 1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_stacked_weights_run_each_block_as_its_own_call(seed):
    """Weights [S, n_w] (stacked training: S models in one call) give each block of rows the
    probabilities and gradients of a call with its own weights: random circuits of every
    gate, fused and gate by gate, and one wider than whole-circuit blocks (local blocks)."""
    rng = np.random.default_rng(900 + seed)
    num_qubits = statevector.FUSE_MAX_QUBITS + 1 if seed == 7 else 1 + seed % 5
    circuit, inputs, weights = random_circuit(rng, num_qubits, 10 + 4 * num_qubits, num_qubits > 1)
    models, rows = 3, 2
    x = torch.tensor(rng.uniform(-3, 3, (models * rows, len(inputs))))
    w = torch.tensor(rng.uniform(-3, 3, (models, len(weights))))
    coeffs = torch.tensor(rng.normal(size=(models * rows, 2**num_qubits)))
    for fuse in (True, False):
        fn = statevector.CompiledStatevector(
            circuit, inputs, weights, shots=None, seed=0, fuse=fuse
        )
        assert fn.stacks_weights
        loss, gx, gw = loss_and_grads(fn, x, w, coeffs)
        assert fn.executions == models * rows
        block = [
            loss_and_grads(
                fn, x[s * rows : (s + 1) * rows], w[s], coeffs[s * rows : (s + 1) * rows]
            )
            for s in range(models)
        ]
        assert_close(loss, sum(b[0] for b in block), 1e-10)
        assert_close(gx, torch.cat([b[1] for b in block]), 1e-10)
        assert_close(gw, torch.stack([b[2] for b in block]), 1e-10)
    with pytest.raises(ValueError, match="not a multiple"):
        fn(x[:5], w)
    shots = statevector.CompiledStatevector(circuit, inputs, weights, shots=100, seed=0)
    assert not shots.stacks_weights  # drawn shots would not be each model's own
    with pytest.raises(ValueError, match="weights must have shape"):
        shots(x, w)

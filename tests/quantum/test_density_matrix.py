"""The `density-matrix` backend against Qiskit Aer's density-matrix method and the statevector
backend, on random circuits of the students' gates, with real fake-device noise models."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Kraus
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error

from kdbench import CircuitPlan, depolarizing_targets, fake_backend, measured_qubits
from kdbench.errors import KdbenchError, OptionError
from kdbench_plugins.aer import _probabilities_circuit
from kdbench_plugins.density_matrix import DensityMatrix
from kdbench_plugins.statevector import Statevector

STUDENT_GATES = ("rx", "ry", "rz", "cx", "cz", "h", "input-rz")


def random_circuit(qubits: int, seed: int, gates: int = 14):
    """The students' encoding (H, RY(x) per qubit), then random gates of their set: rotations
    by weights, CX, CZ, H, and rotations by inputs after the entanglers (re-uploading)."""
    rng = np.random.default_rng(seed)
    xs = [Parameter(f"x{q}") for q in range(qubits)]
    ws: list[Parameter] = []
    qc = QuantumCircuit(qubits)
    for q in range(qubits):
        qc.h(q)
        qc.ry(xs[q], q)
    for _ in range(gates):
        kind = str(rng.choice(STUDENT_GATES))
        if kind in ("cx", "cz"):
            a, b = (int(q) for q in rng.choice(qubits, 2, replace=False))
            getattr(qc, kind)(a, b)
        elif kind == "h":
            qc.h(int(rng.integers(qubits)))
        elif kind == "input-rz":
            qc.rz(2 * xs[int(rng.integers(qubits))] - 0.4, int(rng.integers(qubits)))
        else:
            ws.append(Parameter(f"w{len(ws)}"))
            getattr(qc, kind)(ws[-1], int(rng.integers(qubits)))
    x = torch.tensor(rng.uniform(-2, 2, (3, qubits)))
    w = torch.tensor(rng.uniform(-3, 3, len(ws)))
    return qc, xs, ws, x, w


def aer_probabilities(compiled, model: NoiseModel, values: dict, rows: int, readout: bool):
    """Aer's density-matrix method on the circuit exactly as the backend simulated it, with
    `model`; readout errors as a channel before the probabilities are saved (Aer applies
    them only to sampled measurements): Kraus operators √P(m|t)·|m><t|."""
    circuit = compiled.isa.copy()
    for qubit in measured_qubits(circuit):  # after the measurements: before the saving
        error = model._local_readout_errors.get((qubit,))
        if readout and error is not None:
            p = np.asarray(error.probabilities)
            basis = np.eye(2)
            kraus = [
                np.sqrt(p[t, m]) * np.outer(basis[m], basis[t]) for t in (0, 1) for m in (0, 1)
            ]
            circuit.append(Kraus(kraus), [qubit])
    circuit = _probabilities_circuit(circuit)
    binds = [{p: np.broadcast_to(values[p], rows) for p in circuit.parameters}]
    simulator = AerSimulator(method="density_matrix", noise_model=model)
    result = simulator.run(circuit, parameter_binds=binds, shots=1).result()
    return np.stack([result.data(i)["probabilities"] for i in range(rows)])


def bound_values(xs, ws, x, w) -> dict:
    values = {p: x[:, i].numpy() for i, p in enumerate(xs)}
    return values | {p: float(w[i]) for i, p in enumerate(ws)}


@pytest.mark.parametrize("qubits", [2, 3, 4, 5])
def test_noiseless_equals_the_statevector_backend(qubits):
    qc, xs, ws, x, w = random_circuit(qubits, seed=qubits)
    x.requires_grad_(True)
    w.requires_grad_(True)
    weights = torch.randn(2**qubits, dtype=torch.float64)
    outputs, gradients = [], []
    for backend in (Statevector(), DensityMatrix()):
        probs = backend.compile(qc, xs, ws, seed=0)(x, w)
        gradients.append(torch.autograd.grad((probs * weights).sum(), [x, w]))
        outputs.append(probs.detach())
    assert torch.allclose(outputs[0], outputs[1], rtol=0, atol=1e-10)
    for mine, reference in zip(gradients[1], gradients[0], strict=True):
        assert torch.allclose(mine, reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("qubits", "device", "readout"),
    [
        (2, "FakeManilaV2", True),
        (3, "FakeLimaV2", True),
        (3, "FakeLimaV2", False),
        (4, "FakeManilaV2", True),
        (5, "FakeManilaV2", False),
        (3, "FakeBrisbane", True),
        (4, "FakeTorino", False),
    ],
)
def test_device_noise_equals_aer_density_matrix(qubits, device, readout):
    qc, xs, ws, x, w = random_circuit(qubits, seed=10 + qubits)
    compiled = DensityMatrix(noise=device, readout=readout).compile(qc, xs, ws, seed=2)
    model = NoiseModel.from_backend(fake_backend(device, "noise")())
    reference = aer_probabilities(compiled, model, bound_values(xs, ws, x, w), 3, readout)
    probs = compiled(x, w).numpy()
    assert np.abs(probs - reference).max() < 1e-6
    noiseless = DensityMatrix().compile(qc, xs, ws, seed=0)(x, w).numpy()
    assert np.abs(probs - noiseless).max() > 1e-3  # the noise is there
    assert len(compiled.qubits) == qubits  # a 127-qubit device, 3 of its qubits simulated


@pytest.mark.parametrize("qubits", [2, 3, 4, 5])
def test_uniform_depolarizing_equals_aer_with_the_aer_backends_model(qubits):
    qc, xs, ws, x, w = random_circuit(qubits, seed=20 + qubits)
    compiled = DensityMatrix(depolarizing=0.03).compile(qc, xs, ws, seed=0)
    model = NoiseModel()
    for name, on in depolarizing_targets(compiled.isa):  # as the aer backend builds it
        model.add_quantum_error(depolarizing_error(0.03, len(on)), name, on, warnings=False)
    reference = aer_probabilities(compiled, model, bound_values(xs, ws, x, w), 3, False)
    assert np.abs(compiled(x, w).numpy() - reference).max() < 1e-6


def test_a_saved_noise_model_with_all_qubit_errors_equals_aer(tmp_path):
    qc, xs, ws, x, w = random_circuit(3, seed=31)
    model = NoiseModel(basis_gates=["rz", "sx", "x", "cx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), ["sx", "x"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx"])
    # A local error overrides the all-qubit one on its qubits, as in Aer.
    model.add_quantum_error(depolarizing_error(0.2, 2), ["cx"], [0, 1])
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    compiled = DensityMatrix(noise=str(path), depolarizing=0.01).compile(qc, xs, ws, seed=0)
    # The uniform error is composed after the model's, local or all-qubit.
    reference_model = pickle.loads(path.read_bytes())
    for name, on in depolarizing_targets(compiled.isa):
        uniform = depolarizing_error(0.01, len(on))
        base = model._default_quantum_errors.get(name)
        if on not in model._local_quantum_errors.get(name, {}) and base is not None:
            uniform = base.compose(uniform)
        reference_model.add_quantum_error(uniform, name, on, warnings=False)
    reference = aer_probabilities(compiled, reference_model, bound_values(xs, ws, x, w), 3, False)
    assert np.abs(compiled(x, w).numpy() - reference).max() < 1e-6


def test_gradients_match_finite_differences_under_device_noise():
    qc, xs, ws, x, w = random_circuit(3, seed=41)
    compiled = DensityMatrix(noise="FakeManilaV2").compile(qc, xs, ws, seed=0)
    x, w = x[:2].requires_grad_(True), w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: compiled(a, b), (x, w), atol=1e-7)


def test_float32_students_run_in_complex64_and_stay_close():
    qc, xs, ws, x, w = random_circuit(4, seed=51)
    compiled = DensityMatrix(noise="FakeManilaV2").compile(qc, xs, ws, seed=0)
    single = compiled(x.float(), w.float())
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), compiled(x, w), atol=1e-5)
    assert torch.allclose(single.sum(1), torch.ones(3), atol=1e-5)


def test_shots_draw_repeatable_frequencies_with_exact_gradients():
    qc, xs, ws, x, w = random_circuit(3, seed=61)
    backend = DensityMatrix(noise="FakeManilaV2", shots=1000, smoothing=0.0)
    first = backend.compile(qc, xs, ws, seed=5)(x, w)
    again = backend.compile(qc, xs, ws, seed=5)(x, w)
    assert torch.equal(first, again)
    assert torch.allclose((first * 1000).round(), first * 1000)  # counts of 1000 shots
    exact = DensityMatrix(noise="FakeManilaV2").compile(qc, xs, ws, seed=5)(x, w)
    assert (first - exact).abs().max() < 0.08
    w.requires_grad_(True)
    (backend.compile(qc, xs, ws, seed=5)(x, w)[:, 0].sum()).backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_bad_noise_options_name_what_is_allowed(tmp_path):
    with pytest.raises(OptionError, match=r"FakeMannila.*did you mean 'FakeManilaV2'"):
        DensityMatrix(noise="FakeMannila").check()
    with pytest.raises(OptionError, match=r"neither a fake IBM device .* nor a file"):
        DensityMatrix(noise=str(tmp_path / "missing.pkl")).check()
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    with pytest.raises(OptionError, match="is not a pickled NoiseModel"):
        DensityMatrix(noise=str(tmp_path / "garbage.pkl")).check()
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(OptionError, match=r"holds a list, not a qiskit_aer\.noise\.NoiseModel"):
        DensityMatrix(noise=str(tmp_path / "list.pkl")).check()
    with pytest.raises(OptionError):
        DensityMatrix(depolarizing=1.5)


def test_a_circuit_wider_than_the_device_is_refused_before_it_runs():
    qc, xs, ws, _, _ = random_circuit(6, seed=71)
    plan = CircuitPlan(qc, xs, ws, train_batch=32, eval_batch=256)
    with pytest.raises(KdbenchError, match=r"6 qubits, noise device 'FakeManilaV2' only 5"):
        DensityMatrix(noise="FakeManilaV2").check_circuit(plan)
    wide = QuantumCircuit(16)
    wide.h(range(16))
    with pytest.raises(KdbenchError, match="16-qubit circuit"):
        DensityMatrix().check_circuit(CircuitPlan(wide, [], [], train_batch=32, eval_batch=256))


def test_a_quantum_error_on_measurements_is_refused(tmp_path):
    model = NoiseModel()
    model.add_all_qubit_quantum_error(depolarizing_error(0.1, 1), ["measure"])
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    qc, xs, ws, _, _ = random_circuit(2, seed=81)
    with pytest.raises(ValueError, match="quantum errors on 'measure'"):
        DensityMatrix(noise=str(path)).compile(qc, xs, ws, seed=0)


def test_unsupported_instructions_are_named():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.reset(1)
    with pytest.raises(ValueError, match=r"gate 'reset' on qubits \[1\]"):
        DensityMatrix().compile(qc, [], [], seed=0)
    x = Parameter("x")
    qc = QuantumCircuit(1)
    qc.ry(x * x, 0)
    with pytest.raises(ValueError, match="not of the form"):
        DensityMatrix().compile(qc, [x], [], seed=0)


def test_real_gates_and_errors_run_in_a_real_dtype_with_the_same_result():
    qc = QuantumCircuit(3)
    xs, ws = [Parameter(f"x{q}") for q in range(3)], [Parameter(f"w{q}") for q in range(3)]
    for q in range(3):
        qc.h(q)
        qc.ry(xs[q], q)
    qc.cx(0, 1)
    qc.cx(1, 2)
    for q in range(3):
        qc.ry(ws[q], q)
    x, w = torch.rand(4, 3, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    real = DensityMatrix(depolarizing=0.05).compile(qc, xs, ws, seed=0)
    assert real.is_real
    qc.rz(ws[0], 0)  # a complex gate: the same circuit then simulated in complex numbers
    qc.rz(-ws[0], 0)
    complex_ = DensityMatrix(depolarizing=0.05).compile(qc, xs, ws, seed=0)
    assert not complex_.is_real
    # The rz pair is the identity, but its two depolarizing errors are not.
    model = NoiseModel()
    for name, on in depolarizing_targets(real.isa):
        model.add_quantum_error(depolarizing_error(0.05, len(on)), name, on, warnings=False)
    reference = aer_probabilities(real, model, bound_values(xs, ws, x, w), 4, False)
    assert np.abs(real(x, w).numpy() - reference).max() < 1e-10
    assert (complex_(x, w) - real(x, w)).abs().max() > 1e-4

"""Parameter-shift gradients and the shot backends `aer` and `ibm-runtime` (offline)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import XXPlusYYGate
from qiskit.quantum_info import Statevector as QiskitStatevector

from kdbench import ParameterShift, StudentContext, split_slots
from kdbench.errors import KdbenchError, OptionError
from kdbench_plugins import aer, ibm_runtime
from kdbench_plugins.aer import Aer
from kdbench_plugins.encoders import Angle
from kdbench_plugins.ibm_runtime import IbmRuntime
from kdbench_plugins.statevector import Statevector
from kdbench_plugins.students import Pqc
from tests.helpers import ROOT, grads, randn, student_circuit

TOKEN = "planted-Secret-Token-0123456789abcdefABCDEF0123456789"


def mixed_circuit():
    """rx, rz and p gates, a weight used twice, a linear angle 2*p + 0.3 and fixed angles."""
    x, w = ParameterVector("x", 2), ParameterVector("w", 3)
    qc = QuantumCircuit(3)
    qc.h([0, 1, 2])
    qc.rx(x[0], 0)
    qc.rz(2 * w[0] + 0.3, 1)
    qc.cx(0, 1)
    qc.ry(x[1], 2)
    qc.rx(w[0], 2)  # w[0] again
    qc.cz(1, 2)
    qc.p(-0.5 * w[1] + 1.0, 0)
    qc.rx(0.7, 1)
    qc.h(0)
    qc.rz(w[2], 2)
    qc.ry(x[0] - 0.2, 1)
    qc.h(2)
    return qc, list(x), list(w)


def count_runs(fn) -> list[int]:
    """Wrap the sampler's job submission: the list grows by each job's number of circuits."""
    jobs: list[int] = []
    if isinstance(fn.sampler, aer.ProbabilitySampler):
        simulator = fn.sampler.simulator
        submit = simulator.run

        def run_binds(circuit, parameter_binds=None, **kwargs):
            jobs.append(len(next(iter(parameter_binds[0].values()))) if parameter_binds else 1)
            return submit(circuit, parameter_binds=parameter_binds, **kwargs)

        simulator.run = run_binds
        return jobs
    primitive = fn.sampler.primitive
    original = primitive.run

    def run(pubs, **kwargs):
        pubs = list(pubs)
        jobs.append(sum(len(values) for _, values in pubs))
        return original(pubs, **kwargs)

    primitive.run = run
    return jobs


@pytest.mark.parametrize("build", [student_circuit, mixed_circuit])
def test_parameter_shift_equals_autograd_on_statevector(build):
    circuit, inputs, weights = build()
    x, w = randn(5, len(inputs), seed=1), randn(len(weights), seed=2)
    coeffs = randn(2**circuit.num_qubits, seed=3)
    exact = Statevector().compile(circuit, inputs, weights, seed=0)
    shifted = Statevector(gradient="parameter-shift").compile(circuit, inputs, weights, seed=0)
    p0, gx0, gw0 = grads(exact, x, w, coeffs)
    p1, gx1, gw1 = grads(shifted, x, w, coeffs)
    torch.testing.assert_close(p1, p0, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx1, gx0, rtol=0, atol=1e-6)
    torch.testing.assert_close(gw1, gw0, rtol=0, atol=1e-6)
    slots = len(split_slots(circuit, inputs, weights))
    # One forward call of 5 circuits, one backward call of 2·5·slots.
    assert shifted.sampler_calls == 2
    assert shifted.executions == 5 + 2 * 5 * slots and shifted.shots == 0


def test_parameter_shift_on_two_qubit_rotations_matches_finite_differences():
    x, w = Parameter("x"), ParameterVector("w", 4)
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.rxx(w[0], 0, 1)
    qc.ryy(0.5 * x, 0, 1)
    qc.rzx(w[1] - 1.0, 0, 1)
    qc.rx(w[2], 1)
    qc.rzz(w[3], 0, 1)
    qc.h(1)
    slots = split_slots(qc, [x], list(w))
    assert len(slots) == 5

    def exact(values: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in values.tolist():
            bound = slots.circuit.assign_parameters(dict(zip(slots.parameters, row, strict=True)))
            rows.append(QiskitStatevector(bound).probabilities())
        return torch.tensor(np.array(rows))

    fn = ParameterShift(slots, exact, depth=qc.depth(), width=2)
    xs, ws, coeffs = randn(2, 1, seed=4), randn(4, seed=5), randn(4, seed=6)
    _, gx, gw = grads(fn, xs, ws, coeffs)

    def loss(xv, wv):
        return float((fn(xv, wv) @ coeffs).sum())

    eps = 1e-5
    for i in range(4):
        step = torch.zeros(4, dtype=torch.float64)
        step[i] = eps
        numeric = (loss(xs, ws + step) - loss(xs, ws - step)) / (2 * eps)
        assert abs(numeric - float(gw[i])) < 1e-6
    for b in range(2):
        step = torch.zeros(2, 1, dtype=torch.float64)
        step[b, 0] = eps
        numeric = (loss(xs + step, ws) - loss(xs - step, ws)) / (2 * eps)
        assert abs(numeric - float(gx[b, 0])) < 1e-6


def test_slots_without_needed_gradient_are_not_run():
    circuit, inputs, weights = student_circuit()
    fn = Statevector(gradient="parameter-shift").compile(circuit, inputs, weights, seed=0)
    x = randn(4, 3, seed=7)  # inputs need no gradient: only the 3 weight slots shift
    w = randn(3, seed=8).requires_grad_(True)
    fn(x, w).sum().backward()
    assert fn.executions == 4 + 2 * 4 * 3 and w.grad is not None


def test_unsupported_parameterized_gate_is_named():
    p = Parameter("p")
    qc = QuantumCircuit(2)
    qc.append(XXPlusYYGate(p, 0.1), [0, 1])
    with pytest.raises(ValueError, match="'xx_plus_yy'"):
        split_slots(qc, [p], [])


def test_aer_agrees_with_statevector_within_shot_noise():
    shots = 20000
    circuit, inputs, weights = mixed_circuit()
    x, w = randn(3, len(inputs), seed=9), randn(len(weights), seed=10)
    coeffs = randn(2**circuit.num_qubits, seed=11)
    p0, gx0, gw0 = grads(Statevector().compile(circuit, inputs, weights, seed=0), x, w, coeffs)
    fn = Aer(shots=shots).compile(circuit, inputs, weights, seed=0)
    p1, gx1, gw1 = grads(fn, x, w, coeffs)
    sigma = torch.sqrt(p0 * (1 - p0) / shots)
    assert torch.all((p1 - p0).abs() < 5 * sigma + 2e-3)
    # A slot's derivative is ½(P+ − P−) of two independent runs: its coefficient-weighted sum
    # has variance <= ½·max(c)²/shots; the chain rule sums slope² times that over slots.
    slots = split_slots(circuit, inputs, weights)
    var_slot = 0.5 * float(coeffs.abs().max()) ** 2 / shots
    var_x = torch.zeros(len(inputs), dtype=torch.float64)
    var_w = torch.zeros(len(weights), dtype=torch.float64)
    for column, slope in zip(slots.columns, slots.slopes, strict=True):
        if column < len(inputs):
            var_x[column] += slope**2 * var_slot
        else:
            var_w[column - len(inputs)] += len(x) * slope**2 * var_slot
    assert torch.all((gx1 - gx0).abs() < 5 * var_x.sqrt() + 1e-3)
    assert torch.all((gw1 - gw0).abs() < 5 * var_w.sqrt() + 1e-3)
    assert fn.shots == fn.executions * shots


@pytest.mark.parametrize("aer_shots", [False, True], ids=["drawn", "aer-sampled"])
def test_aer_repeats_with_its_seed_and_counts_one_job_per_pass(aer_shots):
    circuit, inputs, weights = student_circuit()
    x, w, coeffs = randn(4, 3, seed=12), randn(3, seed=13), randn(8, seed=14)
    backend = Aer(shots=1000, aer_shots=aer_shots, smoothing=0)
    first = backend.compile(circuit, inputs, weights, seed=5)
    expected = aer.PrimitiveSampler if aer_shots else aer.ProbabilitySampler
    assert isinstance(first.sampler, expected)
    jobs = count_runs(first)
    p1, gx1, gw1 = grads(first, x, w, coeffs)
    assert jobs == [4, 2 * 4 * 6]  # forward, then every shifted circuit of the batch at once
    assert first.sampler_calls == 2 and first.executions == 4 + 48
    assert torch.all(p1 * 1000 == (p1 * 1000).round())  # frequencies of 1000 shots
    again = backend.compile(circuit, inputs, weights, seed=5)
    p2, gx2, gw2 = grads(again, x, w, coeffs)
    assert torch.equal(p1, p2) and torch.equal(gx1, gx2) and torch.equal(gw1, gw2)
    other = backend.compile(circuit, inputs, weights, seed=6)
    assert not torch.equal(other(x, w), p1)
    # The next call of the same function draws new shots.
    assert not torch.equal(first(x, w), p1)


def test_drawn_shots_follow_aer_sampling():
    """Shots drawn from Aer's probabilities and shots Aer samples: one distribution."""
    shots = 20000
    circuit, inputs, weights = mixed_circuit()
    x, w = randn(4, len(inputs), seed=20), randn(len(weights), seed=21)
    exact = Statevector().compile(circuit, inputs, weights, seed=0)(x, w)
    sigma = torch.sqrt(exact * (1 - exact) / shots)
    for aer_shots in (False, True):
        fn = Aer(shots=shots, aer_shots=aer_shots).compile(circuit, inputs, weights, seed=1)
        assert torch.all((fn(x, w) - exact).abs() < 5 * sigma + 1e-3)


@pytest.mark.parametrize("aer_shots", [False, True], ids=["drawn", "aer-sampled"])
def test_aer_outcomes_are_in_qiskit_bit_order(aer_shots):
    """RX(π) on qubit 1 of 3 gives outcome 0b010 = 2, whoever samples the shots."""
    x = Parameter("x")
    qc = QuantumCircuit(3)
    qc.rx(x, 1)
    fn = Aer(shots=100, aer_shots=aer_shots, smoothing=0).compile(qc, [x], [], seed=0)
    probs = fn(torch.full((2, 1), math.pi, dtype=torch.float64), torch.zeros(0))
    assert torch.all(probs[:, 2] == 1.0)


def deterministic_circuit():
    """x = π flips qubit 0 and the CNOTs copy it: exactly |111⟩ without noise."""
    x = Parameter("x")
    qc = QuantumCircuit(3)
    qc.rx(x, 0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    return qc, [x], []


@pytest.mark.parametrize(
    "backend",
    [
        Aer(shots=4000, noise="FakeManilaV2"),
        Aer(shots=4000, depolarizing=0.05),
        IbmRuntime(shots=4000, backend="FakeManilaV2"),
    ],
    ids=["aer-fake-manila", "aer-depolarizing", "ibm-runtime-fake-manila"],
)
def test_noise_changes_the_distribution(backend):
    circuit, inputs, weights = deterministic_circuit()
    x, w = torch.full((2, 1), math.pi, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    clean = Aer(shots=4000, smoothing=0).compile(circuit, inputs, weights, seed=0)(x, w)
    assert torch.all(clean[:, 7] == 1.0)
    noisy = backend.compile(circuit, inputs, weights, seed=0)(x, w)
    assert torch.all(noisy[:, 7] < 0.98) and torch.all(noisy[:, 7] > 0.5)


@pytest.mark.parametrize(
    "backend",
    [
        Statevector(shots=50),
        Statevector(shots=50, gradient="parameter-shift"),
        Aer(shots=50),
    ],
    ids=["statevector", "statevector-shift", "aer"],
)
def test_smoothing_keeps_the_gradient_of_an_outcome_no_shot_landed_on(backend):
    """RY(x) at x = 0.01 on |0>: P(1) = 2.5e-5, so 50 shots never see outcome 1. Its log
    probability, the loss of an image of class 1, keeps a finite, nonzero gradient with the
    default pseudo-count (0.5) and has none with raw frequencies (smoothing = 0)."""
    from dataclasses import replace

    from kdbench.losses import probabilities_to_log

    x = Parameter("x")
    qc = QuantumCircuit(1)
    qc.ry(x, 0)
    assert backend.smoothing == 0.5

    def loss_and_gradient(b):
        angle = torch.full((3, 1), 0.01, dtype=torch.float64, requires_grad=True)
        probs = b.compile(qc, [x], [], seed=0)(angle, torch.zeros(0, dtype=torch.float64))
        loss = -probabilities_to_log(probs)[:, 1].sum()
        loss.backward()
        return probs.detach(), angle.grad

    probs, grad = loss_and_gradient(backend)
    assert torch.allclose(probs[:, 1], torch.full((3,), 0.5 / 51, dtype=torch.float64))
    # Nonzero (parameter shift estimates it from shots too, so its sign is noisy).
    assert torch.all(grad != 0) and torch.all(torch.isfinite(grad))
    raw, raw_grad = loss_and_gradient(replace(backend, smoothing=0))
    assert torch.all(raw[:, 1] == 0) and torch.all(raw_grad == 0)


def test_smoothing_is_recorded_only_where_shots_are_drawn():
    """Exact statevector cells keep the ids they had before smoothing existed."""
    from kdbench.options import resolved

    assert "smoothing" not in resolved(Statevector())
    assert resolved(Statevector(shots=100))["smoothing"] == 0.5
    assert resolved(Aer())["smoothing"] == 0.5


def test_ibm_runtime_smooths_its_counts():
    """A fake device's readout errors give every outcome a few shots: here only the
    pseudo-count is checked (the other shot backends' gradient test shows its effect)."""
    circuit, inputs, weights = deterministic_circuit()
    assert (
        IbmRuntime(backend="FakeManilaV2").compile(circuit, inputs, weights, seed=0).smoothing
        == 0.5
    )
    fn = IbmRuntime(backend="FakeManilaV2", smoothing=2).compile(circuit, inputs, weights, seed=0)
    probs = fn(
        torch.full((1, 1), math.pi, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    )
    assert torch.all(probs >= 2 / (fn.shots_per_circuit + 2 * 8))


def test_smoothed_is_additive_smoothing_of_the_counts():
    from kdbench import smoothed

    frequencies = torch.tensor([[0.0, 0.3, 0.7]], requires_grad=True)
    out = smoothed(frequencies, 10, 0.5)
    assert torch.allclose(out, torch.tensor([[0.5, 3.5, 7.5]]) / 11.5)
    out[0, 0].backward()
    assert torch.allclose(frequencies.grad, torch.tensor([[10 / 11.5, 0, 0]]))
    assert smoothed(frequencies, 10, 0) is frequencies


def test_noise_names_are_resolved_case_insensitively():
    for name in ("FakeManilaV2", "fake_manila", "FAKE-MANILA", "fakemanilav2"):
        Aer(noise=name).check()
    with pytest.raises(OptionError) as info:
        Aer(noise="FakeNowhereV2").check()
    assert info.value.key == "noise" and "FakeManilaV2" in info.value.message
    with pytest.raises(OptionError, match="method"):
        Aer(method="quantum").check()
    with pytest.raises(OptionError) as info:
        IbmRuntime(backend="fake_nowhere").check()
    assert info.value.key == "backend"


def test_ibm_runtime_fake_device_runs_isa_circuits():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    circuit, inputs, weights = student_circuit()
    fn = IbmRuntime(shots=1000).compile(circuit, inputs, weights, seed=0)
    submitted = []
    original = fn.sampler.primitive.run

    def run(pubs, **kwargs):
        submitted.extend(pub[0] for pub in pubs)
        return original(pubs, **kwargs)

    fn.sampler.primitive.run = run
    x, w, coeffs = randn(3, 3, seed=15), randn(3, seed=16), randn(8, seed=17)
    probs, gx, gw = grads(fn, x, w, coeffs)
    assert probs.shape == (3, 8) and torch.allclose(probs.sum(1), torch.ones(3, dtype=probs.dtype))
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0
    assert len(submitted) == 2 and all(c is fn.sampler.circuit for c in submitted)
    isa = fn.sampler.circuit
    allowed = set(FakeManilaV2().operation_names) | {"barrier"}
    assert set(isa.count_ops()) <= allowed and "ry" not in isa.count_ops()
    assert fn.width == isa.num_qubits == 5
    assert fn.depth == isa.depth(lambda i: i.operation.name not in ("measure", "barrier"))
    assert fn.depth > circuit.depth()
    assert fn.executions == 3 + 2 * 3 * 6 and fn.shots == fn.executions * 1000


def test_ibm_runtime_refuses_more_than_max_circuits():
    circuit, inputs, weights = student_circuit(2)
    fn = IbmRuntime(shots=100, max_circuits=9).compile(circuit, inputs, weights, seed=0)
    x = randn(2, 2, seed=18).requires_grad_(True)
    probs = fn(x, randn(2, seed=19))
    with pytest.raises(KdbenchError, match="max_circuits"):
        probs.sum().backward()
    assert fn.executions == 2


def test_real_backend_needs_confirmation_and_credentials(no_ibm_account, monkeypatch):
    circuit, inputs, weights = student_circuit(2)
    with pytest.raises(OptionError) as info:
        IbmRuntime(backend="ibm_brisbane").check()
    assert info.value.key == "confirm_hardware"
    with pytest.raises(KdbenchError, match="confirm_hardware") as info:
        IbmRuntime(backend="ibm_brisbane").compile(circuit, inputs, weights, seed=0)
    assert "\n" not in str(info.value)
    backend = IbmRuntime(backend="ibm_brisbane", confirm_hardware=True)
    with pytest.raises(KdbenchError, match="QISKIT_IBM_TOKEN") as info:
        backend.compile(circuit, inputs, weights, seed=0)
    assert "\n" not in str(info.value)


def test_token_never_shows(no_ibm_account, monkeypatch):
    import qiskit_ibm_runtime

    monkeypatch.setenv("QISKIT_IBM_TOKEN", TOKEN)

    class LeakyService:
        def __init__(self, **kwargs):
            raise RuntimeError(f"401 Unauthorized for token {TOKEN}\nretry later")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", LeakyService)
    circuit, inputs, weights = student_circuit(2)
    messages = []
    for backend in (
        IbmRuntime(backend="ibm_brisbane"),
        IbmRuntime(backend="ibm_brisbane", confirm_hardware=True),
    ):
        with pytest.raises(KdbenchError) as info:
            backend.compile(circuit, inputs, weights, seed=0)
        messages += [str(info.value), repr(info.value), repr(backend), str(vars(backend))]
        assert "\n" not in str(info.value)
    assert "401 Unauthorized" in messages[-4]
    assert not any("Secret-Token" in message for message in messages)


def test_real_backend_path_logs_each_submission(no_ibm_account, monkeypatch, caplog):
    """A service stub hands out a fake device: the real-hardware path runs offline."""
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    class Service:
        def __init__(self, **kwargs):
            pass

        def backend(self, name):
            return FakeManilaV2()

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", Service)
    circuit, inputs, weights = student_circuit(2)
    backend = IbmRuntime(backend="ibm_test", confirm_hardware=True, shots=100, mode="job")
    with caplog.at_level(logging.INFO, logger="kdbench.ibm_runtime"):
        fn = backend.compile(circuit, inputs, weights, seed=0)
        fn(randn(2, 2, seed=20), randn(2, seed=21).requires_grad_(True)).sum().backward()
    lines = [r.getMessage() for r in caplog.records if r.name == "kdbench.ibm_runtime"]
    assert any("real hardware ibm_test" in line for line in lines)
    assert any("2 circuits x 100 shots" in line for line in lines)
    assert any("8 circuits x 100 shots" in line for line in lines)


def test_gradients_reach_the_whole_student():
    torch.manual_seed(0)
    context = StudentContext(
        num_classes=3, input_shape=(1, 28, 28), backend=Aer(shots=2000), encoder=Angle(), seed=0
    )
    model = Pqc(qubits=2, front="linear", layers=1).build(context)
    images = torch.rand(4, 1, 28, 28)
    out = model(images)
    assert out.shape == (4, 3)
    torch.nn.functional.nll_loss(out.log(), torch.tensor([0, 1, 2, 0])).backward()
    assert model.weights.grad is not None and model.weights.grad.abs().sum() > 0
    front = [p.grad for p in model.front.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in front)
    assert model.run_circuit.sampler_calls == 2


def test_registered_under_their_names():
    registered = []
    aer.register_backends(registered.append)
    ibm_runtime.register_backends(registered.append)
    assert registered == [Aer, IbmRuntime]
    assert (Aer.name, IbmRuntime.name) == ("aer", "ibm-runtime")
    assert Aer.summary() == (
        "Qiskit Aer's sampler with shots and optional noise, gradients by parameter shift."
    )


def _paper_backends():
    """The paper profile's shot backend, and the Aer one of its `aer` profile."""
    from kdbench.config import load_spec
    from kdbench.plugins import registry

    path = ROOT / "benchmarks.toml"
    paper, on_aer = (load_spec(path, registry(), profile=p) for p in (None, "aer"))
    return paper.instance("backends", "sim").component, on_aer.instance("backends", "sim").component


def test_paper_profile_shots_and_aer_are_one_distribution():
    """The paper profile's statevector shots and a noiseless Aer QASM simulation (Aer draws
    the shots) give the same counts and the same parameter-shift gradients, statistically:
    per image a chi-square test of homogeneity on 20 × 5000 shots, per weight a Welch t-test
    of 24 gradient draws, Holm over all; a control with one weight moved by 0.05 is refused."""
    from scipy.stats import chi2_contingency, ttest_ind

    from kdbench.report.stats import holm

    paper, aer_backend = _paper_backends()
    assert isinstance(paper, Statevector) and isinstance(aer_backend, Aer)
    assert paper.shots == aer_backend.shots == 5000 and paper.gradient == "parameter-shift"
    circuit, inputs, weights = student_circuit(3, 2)
    x, w = randn(6, len(inputs), seed=30), randn(len(weights), seed=31)
    ours = paper.compile(circuit, inputs, weights, seed=2)
    theirs = Aer(shots=5000, aer_shots=True).compile(circuit, inputs, weights, seed=3)

    def counts(fn, weights_used):
        return sum(fn(x, weights_used) * 5000 for _ in range(20)).round()

    def homogeneity(a, b):
        tables = (torch.stack([ra, rb]) for ra, rb in zip(a, b, strict=True))
        # Outcomes neither side ever saw carry no information (and no expected count).
        return [chi2_contingency(t[:, t.sum(0) > 0].numpy()).pvalue for t in tables]

    reference = counts(theirs, w)
    p_counts = homogeneity(counts(ours, w), reference)
    coeffs = randn(2**circuit.num_qubits, seed=32)
    draws = {
        name: torch.stack([grads(fn, x, w, coeffs)[2] for _ in range(24)])
        for name, fn in (("ours", ours), ("aer", theirs))
    }
    p_grads = ttest_ind(draws["ours"].numpy(), draws["aer"].numpy(), equal_var=False).pvalue
    adjusted = holm([*p_counts, *p_grads.tolist()])
    assert min(adjusted) > 0.01, adjusted
    # The tests can see a difference: the weight of the last layer's qubit 0 moved by 0.05.
    moved = w.clone()
    moved[-3] += 0.05
    assert min(holm(homogeneity(counts(ours, moved), reference))) < 1e-3

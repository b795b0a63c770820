"""Student plugins: the paper's presets in both readings, and the classical control."""

from __future__ import annotations

import pytest
import torch

from kdbench.api import StudentContext
from kdbench.plugins import load_registry
from kdbench_plugins.statevector import Statevector


def build(name: str, num_classes: int, **options):
    registry = load_registry(environ={})
    student = registry.get("students", name)(**options)
    encoder = registry.get("encoders", student.encoder)() if student.encoder else None
    torch.manual_seed(0)
    context = StudentContext(num_classes, (1, 28, 28), Statevector(), encoder, seed=0)
    return student, student.build(context)


@pytest.mark.parametrize(
    ("name", "qubits", "circuit_weights", "gates", "most_classes"),
    [
        ("released-q3", 3, 0, {"h", "ry"}, 8),
        ("released-q4", 4, 0, {"h", "ry"}, 16),
        ("paper-q3", 3, 3, {"h", "ry", "cx"}, 8),  # amplitude encoding uses CNOTs
        ("paper-q4", 4, 4, {"h", "ry", "cx"}, 16),
        ("pqc", 3, 3, {"h", "ry", "cx"}, None),  # its linear readout takes any class count
    ],
)
def test_presets_build_the_papers_students(name, qubits, circuit_weights, gates, most_classes):
    student, model = build(name, num_classes=6)
    assert student.qubits == qubits and student.max_classes() == most_classes
    assert model.weights.numel() == circuit_weights
    assert set(model.circuit.count_ops()) == gates
    probs = model(torch.rand(5, 1, 28, 28))
    assert probs.shape == (5, 6)
    if student.readout == "sigmoid-pair":  # the rest of the softmax is on no class
        assert torch.all(probs.sum(1) < 1)
    else:
        assert torch.allclose(probs.sum(1), torch.ones(5, dtype=probs.dtype), atol=1e-6)


def test_sigmoid_pair_is_the_released_notebooks_loss_and_kd_term():
    """The notebooks: `x = torch.sigmoid(p); torch.cat((x, 1 - x), -1)` fed to
    nn.CrossEntropyLoss, and KLDivLoss(log_softmax(y / T), softmax(t / T)) on its first C
    entries y. kdbench's nll of log(readout) and its KD on log(readout) / T are the same."""
    import torch.nn.functional as F

    from kdbench_plugins.students import ReadOut

    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(7, 16, dtype=torch.float64), 1)
    labels = torch.randint(0, 8, (7,))
    logits = torch.cat((torch.sigmoid(probs), 1 - torch.sigmoid(probs)), -1)
    ours = torch.log(ReadOut("sigmoid-pair", 4, 8).double()(probs))
    assert torch.allclose(F.nll_loss(ours, labels), F.cross_entropy(logits, labels))
    temperature = 3.0
    assert torch.allclose(
        F.log_softmax(ours / temperature, 1), F.log_softmax(logits[:, :8] / temperature, 1)
    )


@pytest.mark.parametrize(
    ("readout", "reads_qubit_3"),
    [("first-c", False), ("sigmoid-pair", True), ("z-linear", True), ("linear", True)],
)
def test_the_fourth_qubit_counts_unless_the_readout_ignores_it(readout, reads_qubit_3):
    """released-q4 on 8 classes: the front's 4th feature (qubit 3's angle) has a gradient
    with every readout but first-c, where it cancels exactly."""
    _, model = build("released-q4", 8, readout=readout, allow_unused_qubits=True)
    model.eval()  # no dropout: one deterministic function
    torch.log(model(torch.rand(6, 1, 28, 28)))[:, :8].sum().backward()
    grad = model.front[-1].weight.grad.abs().amax(1)  # per feature
    relative = (grad[3] / grad[:3].max()).item()  # float32: rounding leaves ~1e-7
    assert (relative > 1e-3) if reads_qubit_3 else (relative < 1e-5)


@pytest.mark.parametrize(
    ("readout", "qubits", "classes", "unused"),
    [
        ("first-c", 4, 8, [3]),
        ("first-c", 3, 2, [1, 2]),
        ("first-c", 3, 6, []),
        ("mod-c", 4, 8, [3]),
        ("mod-c", 3, 6, []),
        ("mod-c", 3, 4, [2]),
        ("sigmoid-pair", 4, 8, []),
        ("parity", 4, 8, []),
        ("parity", 3, 2, []),
        ("parity", 3, 6, []),
        ("parity", 4, 5, []),
        ("z-linear", 4, 2, []),
    ],
)
def test_unused_qubits_are_those_that_never_decide_the_class(readout, qubits, classes, unused):
    from kdbench_plugins.students import ReadOut, unused_qubits

    assert unused_qubits(readout, qubits, classes) == unused
    # Checked numerically: flipping an unused qubit in every outcome moves no class
    # probability of a product state.
    torch.manual_seed(2)
    marginals = torch.rand(qubits, dtype=torch.float64)  # P(qubit q = 1)
    head = ReadOut(readout, qubits, classes).double()
    for q in range(qubits):
        flipped = marginals.clone()
        flipped[q] = 1 - flipped[q]
        same = torch.allclose(head(product(marginals)), head(product(flipped)))
        assert same == (q in unused) or marginals[q] == 0.5


def product(marginals: torch.Tensor) -> torch.Tensor:
    """The outcome probabilities [1, 2^n] of independent qubits with P(1) = marginals."""
    outcomes = torch.arange(2 ** len(marginals))
    bits = (outcomes[:, None] >> torch.arange(len(marginals))) & 1
    return torch.where(bits == 1, marginals, 1 - marginals).prod(1)[None]


def test_a_readout_that_ignores_a_qubit_is_refused_unless_allowed(write_config, registry):
    from kdbench.config import load_spec
    from kdbench.errors import ConfigError

    text = """
    [datasets.mnist-0-7]
    plugin = "mnist"
    classes = [0, 1, 2, 3, 4, 5, 6, 7]
    [students.q4]
    plugin = "pqc"
    qubits = 4
    readout = "first-c"
    [[matrix]]
    datasets = ["mnist-0-7"]
    students = ["q4"]
    """
    with pytest.raises(
        ConfigError,
        match=r"students\.q4: student 'q4' on dataset 'mnist-0-7': readout 'first-c' ignores"
        r" qubit 3 of 4 with 8 classes .* or set allow_unused_qubits = true",
    ):
        load_spec(write_config(text), registry)
    allowed = text.replace("qubits = 4", "qubits = 4\nallow_unused_qubits = true")
    spec = load_spec(write_config(allowed), registry)
    assert spec.instance("students", "q4").component.allow_unused_qubits


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


@pytest.mark.parametrize("qubits", [3, 4])
def test_trainable_circuits_and_their_twins_match_in_size_and_both_learn(qubits):
    """vqc-qN: 3 ring layers of RY (3n weights); twin-qN: the same linear front and parity
    readout around a ring Ising model with as many parameters. One Adam step on 8 images
    moves the circuit's weights and the twin's head."""
    vqc, quantum = build(f"vqc-q{qubits}", num_classes=8)
    _, twin = build(f"twin-q{qubits}", num_classes=8)
    assert quantum.weights.numel() == 3 * qubits == sum(p.numel() for p in twin.layer.parameters())
    assert quantum.weights.abs().max() <= 0.1  # near the CNOTs alone (RESULTS.md)
    assert vqc.encoder == "monotone-angle"
    assert set(quantum.circuit.count_ops()) == {"h", "ry", "cx"}
    assert quantum.circuit.count_ops()["cx"] == 3 * qubits  # a ring: n CNOTs per layer
    front = sum(p.numel() for p in quantum.front.parameters())
    assert front == sum(p.numel() for p in twin.front.parameters()) == 784 * qubits + qubits
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8)
    for model, head in ((quantum, quantum.weights), (twin, twin.layer.coupling)):
        probs = model(images)
        assert torch.allclose(probs.sum(1), torch.ones(8, dtype=probs.dtype), atol=1e-5)
        torch.nn.functional.nll_loss(torch.log(probs), labels).backward()
        assert head.grad is not None and head.grad.abs().sum() > 0


def test_the_ising_twin_starts_as_independent_qubits():
    from kdbench_plugins.students import IsingRing

    features = torch.randn(5, 3)
    probs = IsingRing(3)(features)
    # p(s) ∝ exp(Σ f_q s_q): qubit q is 0 (s = +1) with probability σ(2 f_q), independently.
    p_zero = torch.sigmoid(2 * features)
    expected = torch.stack([product(1 - row)[0] for row in p_zero]).float()
    assert torch.allclose(probs, expected, atol=1e-6)

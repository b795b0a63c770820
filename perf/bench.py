"""Training throughput: one dressed student trained by kdbench and by each peer, interleaved.

The student (the same for every implementation): Linear 784 -> n, x' = (π/2)·tanh(x), per
qubit H then RY(x'), then 2 layers of (CNOT chain, RY(w) per qubit), all qubits measured,
the first C of the 2**n outcome probabilities renormalized as class probabilities, NLL loss,
Adam (lr 0.01), batch 32, one epoch of 900 MNIST images (classes 0, 1, 2; 300 per class).

Every implementation starts from the same weights and sees the same images in the same
order. Each repeat runs all implementations one after the other (A B C ..., A B C ...), so
that slow drifts of the machine hit them alike; the median over repeats is reported.

Shot-based and slow implementations train on the first `--samples` images only: the measure
is training samples per second, which does not depend on how many samples were timed (each
model is compiled and warmed up on one batch before timing).

Run: `python perf/bench.py` (see perf/README.md). Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SCALE = math.pi / 2  # x' = (π/2)·tanh(x)
LAYERS = 2
NUM_CLASSES = 3
SHOTS = 5000
DEVICE = "FakeManilaV2"  # the noise rows' fake IBM device
DEPOLARIZING = 0.01  # the noise rows' uniform depolarizing probability (Qiskit's λ)
LR = 0.01
BATCH = 32
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"

# The issues' targets: (kdbench implementation, peer, minimum speed-up); the performance
# issue raised PennyLane's to 3.5x and shot training's to 1000x, and added the hand-fused floor.
TARGETS = [
    ("kdbench-sv", "qml-exact", 300.0),
    ("kdbench-sv", "pl-backprop", 3.5),
    ("kdbench-sv", "fused-ref", 0.9),
    ("kdbench-aer", "qml-aer", 5.0),
    ("kdbench-sv-shots", "qml-aer", 1000.0),
    # The noise issue: exact noisy training against shot-sampled noise, and PennyLane's
    # mixed-state simulator with the same depolarizing channels. Time the second pair in a
    # run without Aer (`--only kdbench-dm-dep pl-mixed`): Aer's OpenMP threads stay busy
    # after its jobs and slow the torch implementations timed after them.
    ("kdbench-dm-device", "kdbench-aer-device", 50.0),
    ("kdbench-dm-dep", "pl-mixed", 10.0),
]
# Implementations that must give the same outputs from the same weights: the exact ones, and
# the two exact simulations of the depolarized circuit.
AGREEING = [
    ("kdbench-sv", "pl-backprop", "qml-exact", "fused-ref"),
    ("kdbench-dm-dep", "pl-mixed"),
]


# ---------------------------------------------------------------------------------------
# The student, built by each implementation


class Dressed(nn.Module):
    """A peer's student: the same front, squash and readout as kdbench's around `quantum`.

    `quantum` maps angles [B, n] to the 2**n outcome probabilities, bit q of the index
    being qubit q (Qiskit's order).
    """

    def __init__(self, qubits: int, quantum: nn.Module):
        super().__init__()
        self.front = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, qubits))
        self.quantum = quantum

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probs = self.quantum(SCALE * torch.tanh(self.front(images)))
        kept = probs[:, :NUM_CLASSES]
        return kept / kept.sum(dim=1, keepdim=True).clamp_min(1e-12)


def qiskit_circuit(qubits: int) -> tuple[Any, list, list]:
    """The student's circuit from kdbench's own fragments: (circuit, inputs, weights)."""
    from kdbench_plugins.encoders import Angle
    from kdbench_plugins.students import ansatz

    encoding, inputs = Angle().circuit(qubits)
    trainable, weights = ansatz(qubits, LAYERS, "linear", "ry")
    return encoding.compose(trainable), list(inputs), list(weights)


def build_kdbench(backend: Any) -> Callable[[int], tuple[nn.Module, nn.Parameter]]:
    """kdbench's `pqc` student on `backend`, exactly as a benchmark cell builds it."""

    def build(qubits: int) -> tuple[nn.Module, nn.Parameter]:
        from kdbench import StudentContext
        from kdbench_plugins.encoders import Angle
        from kdbench_plugins.students import Pqc

        student = Pqc(qubits=qubits, front="linear", layers=LAYERS, entanglement="linear")
        context = StudentContext(NUM_CLASSES, (1, 28, 28), backend, Angle(scale=SCALE), SEED)
        model = student.build(context)
        return model, model.weights

    return build


def build_kdbench_sv(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.statevector import Statevector

    return build_kdbench(Statevector())(qubits)


def build_kdbench_sv_shots(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.statevector import Statevector

    return build_kdbench(Statevector(shots=SHOTS, gradient="parameter-shift"))(qubits)


def build_kdbench_aer(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.aer import Aer

    return build_kdbench(Aer(shots=SHOTS))(qubits)


def build_kdbench_dm_device(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.density_matrix import DensityMatrix

    return build_kdbench(DensityMatrix(noise=DEVICE))(qubits)


def build_kdbench_aer_device(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.aer import Aer

    return build_kdbench(Aer(shots=SHOTS, noise=DEVICE))(qubits)


def build_kdbench_dm_dep(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from kdbench_plugins.density_matrix import DensityMatrix

    return build_kdbench(DensityMatrix(depolarizing=DEPOLARIZING))(qubits)


def _qml_model(qubits: int, sampler: Any, gradient: Any) -> tuple[nn.Module, nn.Parameter]:
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import SamplerQNN

    circuit, inputs, weights = qiskit_circuit(qubits)
    qnn = SamplerQNN(
        circuit=circuit,
        sampler=sampler,
        gradient=gradient,
        input_params=inputs,
        weight_params=weights,
        # The front is trained too, so the circuit must pass gradients to its inputs.
        input_gradients=True,
    )
    connector = TorchConnector(qnn)
    return Dressed(qubits, connector), connector.weight


def build_qml_exact(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    # sampler=None, gradient=None: qiskit-machine-learning's defaults, its exact reference
    # sampler (QMLSampler, shots=None) and parameter shift evaluated on it.
    return _qml_model(qubits, None, None)


def build_qml_aer(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    from qiskit_aer.primitives import SamplerV2
    from qiskit_machine_learning.gradients import ParamShiftSamplerGradient

    sampler = SamplerV2(default_shots=SHOTS, seed=SEED)
    return _qml_model(qubits, sampler, ParamShiftSamplerGradient(sampler=sampler))


def _pl_model(
    qubits: int, expand: bool = False, **qnode_options: Any
) -> tuple[nn.Module, nn.Parameter]:
    import pennylane as qml

    device = qml.device("default.qubit", wires=qubits)

    def circuit(inputs, weights):
        # inputs[..., q]: PennyLane broadcasts the batch through the circuit.
        for q in range(qubits):
            qml.Hadamard(wires=q)
            qml.RY(inputs[..., q], wires=q)
        for layer in range(LAYERS):
            for q in range(qubits - 1):
                qml.CNOT(wires=[q, q + 1])
            for q in range(qubits):
                qml.RY(weights[layer * qubits + q], wires=q)
        # Wire 0 is PennyLane's most significant bit: reversed, bit q of the index is qubit q.
        return qml.probs(wires=list(reversed(range(qubits))))

    qnode = qml.QNode(circuit, device, interface="torch", **qnode_options)
    if expand:
        # PennyLane's parameter shift cannot differentiate a broadcast (batched) input: one
        # tape per sample, as its error message advises.
        qnode = qml.transforms.broadcast_expand(qnode)
    layer = qml.qnn.TorchLayer(qnode, {"weights": (LAYERS * qubits,)})
    return Dressed(qubits, layer), layer.qnode_weights["weights"]


def build_pl_mixed(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    """PennyLane's default.mixed, backprop, with kdbench's uniform depolarizing after every
    gate. Qiskit's depolarizing λ keeps ρ with 1 − λ and replaces it by I/d with λ: on one
    qubit, PennyLane's DepolarizingChannel(3λ/4); on two, a Pauli channel of 15 Paulis at
    λ/16 each (PennyLane has no 2-qubit depolarizing channel)."""
    import itertools

    import numpy as np
    import pennylane as qml

    device = qml.device("default.mixed", wires=qubits)
    paulis = [
        np.eye(2),
        np.array([[0, 1], [1, 0]]),
        np.array([[0, -1j], [1j, 0]]),
        np.diag([1, -1]),
    ]
    pairs = [np.kron(a, b) for a, b in itertools.product(paulis, paulis)]
    kraus = [math.sqrt(1 - 15 * DEPOLARIZING / 16) * pairs[0]]
    kraus += [math.sqrt(DEPOLARIZING / 16) * pair for pair in pairs[1:]]
    one = 3 * DEPOLARIZING / 4

    def circuit(inputs, weights):
        for q in range(qubits):
            qml.Hadamard(wires=q)
            qml.DepolarizingChannel(one, wires=q)
            qml.RY(inputs[..., q], wires=q)
            qml.DepolarizingChannel(one, wires=q)
        for layer in range(LAYERS):
            for q in range(qubits - 1):
                qml.CNOT(wires=[q, q + 1])
                qml.QubitChannel(kraus, wires=[q, q + 1])
            for q in range(qubits):
                qml.RY(weights[layer * qubits + q], wires=q)
                qml.DepolarizingChannel(one, wires=q)
        return qml.probs(wires=list(reversed(range(qubits))))

    qnode = qml.QNode(circuit, device, interface="torch", diff_method="backprop")
    layer = qml.qnn.TorchLayer(qnode, {"weights": (LAYERS * qubits,)})
    return Dressed(qubits, layer), layer.qnode_weights["weights"]


def build_pl_backprop(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    return _pl_model(qubits, diff_method="backprop")


def build_pl_shots(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    return _pl_model(qubits, expand=True, diff_method="parameter-shift", shots=SHOTS)


class FusedReference(nn.Module):
    """The floor torch can reach here for this student: written by hand for its one ansatz.

    The encoding is a product state, each qubit H·RY(x')|0> = ((c − s), (c + s))/√2 with
    c, s = cos, sin(x'/2), its amplitudes multiplied out over the qubits; the weight-only
    layers (CNOT chain, RY(w) per qubit) are one real 2^n × 2^n matrix per forward pass,
    built from w differentiably; probabilities are the squared amplitudes. Bit q of the
    index is qubit q, as in Qiskit.
    """

    def __init__(self, qubits: int):
        super().__init__()
        self.qubits = qubits
        self.weights = nn.Parameter(torch.zeros(LAYERS * qubits))
        dim = 2**qubits
        index = torch.arange(dim)
        chain = torch.eye(dim)
        for q in range(qubits - 1):  # CNOT(q, q+1): flip bit q+1 where bit q is set
            flipped = index ^ (((index >> q) & 1) << (q + 1))
            chain = torch.eye(dim)[flipped] @ chain
        self.register_buffer("chain", chain)

    def layers(self) -> torch.Tensor:
        """U(w): every weight layer as one matrix."""
        n, total = self.qubits, torch.eye(2**self.qubits)
        for layer in range(LAYERS):
            half = self.weights[layer * n : (layer + 1) * n] / 2
            c, s = torch.cos(half), torch.sin(half)
            rotation = torch.ones(1, 1)
            for q in reversed(range(n)):  # the most significant qubit first in kron
                ry = torch.stack([torch.stack([c[q], -s[q]]), torch.stack([s[q], c[q]])])
                rotation = torch.kron(rotation, ry)
            total = rotation @ self.chain @ total
        return total

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        c, s = torch.cos(angles / 2), torch.sin(angles / 2)
        qubit = torch.stack([c - s, c + s], dim=2) / math.sqrt(2)  # [B, n, 2]
        state = qubit[:, self.qubits - 1]
        for q in reversed(range(self.qubits - 1)):  # bit q varies fastest for q = 0
            state = (state[:, :, None] * qubit[:, q, None, :]).flatten(1)
        return (state @ self.layers().T) ** 2


def build_fused(qubits: int) -> tuple[nn.Module, nn.Parameter]:
    quantum = FusedReference(qubits)
    return Dressed(qubits, quantum), quantum.weights


@dataclass(frozen=True)
class Implementation:
    """One way to train the student. `slow` ones see only `--samples` images per repeat."""

    key: str
    label: str
    build: Callable[[int], tuple[nn.Module, nn.Parameter]]
    package: str  # the module that must be importable
    slow: bool = False
    kdbench: bool = False


IMPLEMENTATIONS = [
    Implementation(
        "kdbench-sv", "kdbench statevector exact", build_kdbench_sv, "kdbench", kdbench=True
    ),
    Implementation(
        "kdbench-sv-shots",
        f"kdbench statevector {SHOTS} shots, param-shift",
        build_kdbench_sv_shots,
        "kdbench",
        kdbench=True,
    ),
    Implementation(
        "kdbench-aer",
        f"kdbench aer {SHOTS} shots",
        build_kdbench_aer,
        "qiskit_aer",
        slow=True,
        kdbench=True,
    ),
    Implementation(
        "qml-exact",
        "qiskit-ML SamplerQNN exact",
        build_qml_exact,
        "qiskit_machine_learning",
        slow=True,
    ),
    Implementation(
        "qml-aer",
        f"qiskit-ML SamplerQNN Aer {SHOTS} shots",
        build_qml_aer,
        "qiskit_machine_learning",
        slow=True,
    ),
    Implementation(
        "pl-backprop", "PennyLane default.qubit backprop", build_pl_backprop, "pennylane"
    ),
    Implementation("fused-ref", "hand-fused torch reference (one ansatz)", build_fused, "torch"),
    Implementation(
        "kdbench-dm-device",
        f"kdbench density-matrix, {DEVICE} noise, exact",
        build_kdbench_dm_device,
        "kdbench",
        kdbench=True,
    ),
    Implementation(
        "kdbench-aer-device",
        f"kdbench aer {SHOTS} shots, {DEVICE} noise",
        build_kdbench_aer_device,
        "qiskit_aer",
        slow=True,
        kdbench=True,
    ),
    Implementation(
        "kdbench-dm-dep",
        f"kdbench density-matrix, depolarizing {DEPOLARIZING}",
        build_kdbench_dm_dep,
        "kdbench",
        kdbench=True,
    ),
    Implementation(
        "pl-mixed",
        f"PennyLane default.mixed backprop, depolarizing {DEPOLARIZING}",
        build_pl_mixed,
        "pennylane",
        slow=True,
    ),
    Implementation(
        "pl-shots",
        f"PennyLane default.qubit {SHOTS} shots, param-shift",
        build_pl_shots,
        "pennylane",
        slow=True,
    ),
]
BY_KEY = {impl.key: impl for impl in IMPLEMENTATIONS}


def available(impl: Implementation) -> bool:
    """Whether the package `impl` needs is installed (peers are optional)."""
    return importlib.util.find_spec(impl.package) is not None


# ---------------------------------------------------------------------------------------
# Data, initial weights, training


def load_data(train_per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [N, 1, 28, 28], labels [N], a seeded order of the N indices) of MNIST 0-2."""
    from kdbench.data import make_splits
    from kdbench.paths import data_dir
    from kdbench_plugins.datasets import Mnist

    splits = make_splits(
        Mnist(classes=[0, 1, 2], train_per_class=train_per_class), data_dir(), seed=SEED
    )
    order = torch.randperm(len(splits.train_x), generator=torch.Generator().manual_seed(SEED))
    return splits.train_x, splits.train_y, order


def initial_weights(qubits: int) -> dict[str, torch.Tensor]:
    """The starting point of every implementation: PyTorch's Linear init, circuit U(-π, π)."""
    generator = torch.Generator().manual_seed(SEED + qubits)
    bound = 1 / math.sqrt(28 * 28)
    return {
        "weight": torch.empty(qubits, 28 * 28).uniform_(-bound, bound, generator=generator),
        "bias": torch.empty(qubits).uniform_(-bound, bound, generator=generator),
        "circuit": torch.empty(LAYERS * qubits).uniform_(-math.pi, math.pi, generator=generator),
    }


def reset(model: nn.Module, circuit: nn.Parameter, init: dict[str, torch.Tensor]) -> None:
    """Put the shared initial weights into a model (front Linear and circuit weights)."""
    with torch.no_grad():
        linear = model.front[1]
        linear.weight.copy_(init["weight"])
        linear.bias.copy_(init["bias"])
        circuit.copy_(init["circuit"])


def nll(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(probs.clamp_min(1e-12)), labels)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    samples: int,
    batch: int,
) -> tuple[float, float]:
    """One pass over the first `samples` indices of `order`: (seconds, loss of each batch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    start = time.perf_counter()
    for first in range(0, samples, batch):
        index = order[first : first + batch]
        loss = nll(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return time.perf_counter() - start, losses


def warm_up(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One untimed forward and backward: caches, transpilation and lazy imports happen here."""
    nll(model(images), labels).backward()
    model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------
# Correctness


def check_agreement(
    models: dict[str, tuple[nn.Module, nn.Parameter]],
    images: torch.Tensor,
    labels: torch.Tensor,
    tol: float = 1e-5,
    group: tuple[str, ...] = AGREEING[0],
) -> dict[str, Any]:
    """Exact implementations of `group` from the same weights give the same outputs (and
    gradients).

    Raises AssertionError unless the class probabilities are allclose (rtol = atol = `tol`):
    kdbench runs in float32 like the front, and renormalizing the first C outcomes can
    magnify its rounding a little where they hold little of the probability.
    """
    exact = [k for k in group if k in models]
    outputs, grads = {}, {}
    for key in exact:
        model, circuit = models[key]
        model.zero_grad(set_to_none=True)
        probs = model(images)
        nll(probs, labels).backward()
        outputs[key] = probs.detach().double()
        grads[key] = torch.cat([model.front[1].weight.grad.flatten(), circuit.grad.flatten()])
        grads[key] = grads[key].double()
        model.zero_grad(set_to_none=True)
    report: dict[str, Any] = {"compared": exact, "rtol_atol": tol}
    if len(exact) < 2:
        report["agree"] = None
        return report
    base = exact[0]
    report["max_abs_output_diff"] = {
        k: float((outputs[k] - outputs[base]).abs().max()) for k in exact[1:]
    }
    report["max_abs_gradient_diff"] = {
        k: float((grads[k] - grads[base]).abs().max()) for k in exact[1:]
    }
    report["max_abs_gradient"] = float(grads[base].abs().max())
    report["agree"] = all(
        torch.allclose(outputs[k], outputs[base], rtol=tol, atol=tol) for k in exact[1:]
    )
    if not report["agree"]:
        raise AssertionError(f"outputs disagree: {report['max_abs_output_diff']}")
    return report


def trajectory_diff(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Largest batch-loss difference from kdbench exact over the batches both trained on.

    Exact gradients from the same start give the same training run up to rounding, so the
    exact peers' differences are small; the shot-based ones differ by shot noise.
    """
    if "kdbench-sv" not in runs or not runs["kdbench-sv"]["batch_losses"]:
        return {}
    base = runs["kdbench-sv"]["batch_losses"][0]
    out = {}
    for key, run_ in runs.items():
        if key != "kdbench-sv" and run_["batch_losses"]:
            pairs = zip(base, run_["batch_losses"][0], strict=False)
            out[key] = max(abs(a - b) for a, b in pairs)
    return out


# ---------------------------------------------------------------------------------------
# Reporting


def machine_info() -> dict[str, Any]:
    """CPU, cores, threads and the versions of everything measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in (
        "torch",
        "numpy",
        "qiskit",
        "qiskit_aer",
        "qiskit_machine_learning",
        "pennylane",
        "kdbench",
    ):
        try:
            from importlib.metadata import version

            versions[name] = version(name.replace("_", "-"))
        except Exception:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def ratios(medians: dict[str, float]) -> dict[str, float]:
    """Every kdbench implementation's median samples/s over every peer's, and each target's
    (one may compare two kdbench implementations)."""
    out = {
        f"{mine}/{peer}": medians[mine] / medians[peer]
        for mine, peer, _ in TARGETS
        if mine in medians and peer in medians
    }
    for mine in medians:
        if not BY_KEY[mine].kdbench:
            continue
        for peer in medians:
            if not BY_KEY[peer].kdbench:
                out[f"{mine}/{peer}"] = medians[mine] / medians[peer]
    return out


def print_tables(result: dict[str, Any]) -> None:
    """The medians and the targets of the issue as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    qubit_keys = list(result["qubits"])
    table = Table(title="Median training samples/s (batch 32, Adam, one epoch)")
    table.add_column("implementation")
    for q in qubit_keys:
        table.add_column(f"{q} qubits", justify="right")
        table.add_column("samples", justify="right")
    keys = [k for k in BY_KEY if any(k in result["qubits"][q]["runs"] for q in qubit_keys)]
    for key in keys:
        row = [BY_KEY[key].label]
        for q in qubit_keys:
            run = result["qubits"][q]["runs"].get(key)
            row += [f"{run['median_samples_per_s']:.4g}", str(run["samples"])] if run else ["-"] * 2
        table.add_row(*row)
    console.print(table)

    targets = Table(title="Issue targets: kdbench / peer, median samples/s")
    targets.add_column("kdbench")
    targets.add_column("peer")
    targets.add_column("target", justify="right")
    for q in qubit_keys:
        targets.add_column(f"{q} qubits", justify="right")
    for mine, peer, goal in TARGETS:
        row = [mine, peer, f"≥{goal:g}×"]
        for q in qubit_keys:
            value = result["qubits"][q]["ratios"].get(f"{mine}/{peer}")
            if value is None:
                row.append("-")
            else:
                mark = "[green]met[/]" if value >= goal else "[red]missed[/]"
                row.append(f"{value:.3g}× {mark}")
        targets.add_row(*row)
    console.print(targets)
    samples = result["settings"]["samples"]
    console.print(
        f"Slow implementations (samples column) trained on the first {samples} images only;"
        " samples/s is comparable across sample counts."
    )


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--samples", type=int, default=96, help="images per repeat for the slow implementations"
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(BY_KEY), help="run only these implementations"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument(
        "--stacked", action="store_true",
        help="then the stacked rows (perf/stacked.py): an arm's seeds trained as one, against"
        " one at a time",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the result (what is written to JSON)."""
    torch.set_num_threads(2)
    train_per_class = 300
    if args.quick:
        # Two batches for everyone: only that it runs and what it writes are checked.
        train_per_class, args.repeats, args.samples = 22, min(args.repeats, 2), 2 * BATCH
    images, labels, order = load_data(train_per_class)
    full = len(order)

    chosen = [BY_KEY[k] for k in args.only] if args.only else IMPLEMENTATIONS
    impls = []
    for impl in chosen:
        if available(impl):
            impls.append(impl)
        else:
            print(f"skipped {impl.key}: {impl.package} is not installed")

    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "repeats": args.repeats,
            "samples": args.samples,
            "full_epoch": full,
            "batch": BATCH,
            "lr": LR,
            "shots": SHOTS,
            "layers": LAYERS,
            "classes": NUM_CLASSES,
            "slow": [i.key for i in impls if i.slow],
        },
        "skipped": [i.key for i in chosen if i not in impls],
        "qubits": {},
    }
    for qubits in args.qubits:
        init = initial_weights(qubits)
        models = {}
        for impl in impls:
            model, circuit = impl.build(qubits)
            reset(model, circuit, init)
            models[impl.key] = (model, circuit)
        first = order[:BATCH]
        check = check_agreement(models, images[first], labels[first])
        check["noisy"] = check_agreement(models, images[first], labels[first], group=AGREEING[1])
        for agreed in (check, check["noisy"]):
            if agreed["agree"]:
                print(f"{qubits} qubits: outputs agree ({', '.join(agreed['compared'])})")
        for model, _ in models.values():
            warm_up(model, images[first], labels[first])

        runs: dict[str, dict[str, Any]] = {
            impl.key: {
                "label": impl.label,
                "samples": min(args.samples, full) if impl.slow else full,
                "seconds": [],
                "samples_per_s": [],
                "batch_losses": [],
            }
            for impl in impls
        }
        for repeat in range(args.repeats):
            for impl in impls:  # interleaved: A B C ..., A B C ...
                model, circuit = models[impl.key]
                reset(model, circuit, init)
                run_ = runs[impl.key]
                seconds, losses = train(model, images, labels, order, run_["samples"], BATCH)
                run_["seconds"].append(seconds)
                run_["samples_per_s"].append(run_["samples"] / seconds)
                run_["batch_losses"].append(losses)
                print(
                    f"{qubits} qubits, repeat {repeat + 1}/{args.repeats}: {impl.key:<17}"
                    f" {run_['samples'] / seconds:10.1f} samples/s, last loss {losses[-1]:.4f}",
                    flush=True,
                )
        for run_ in runs.values():
            run_["median_samples_per_s"] = statistics.median(run_["samples_per_s"])
        check["loss_trajectory_diff"] = trajectory_diff(runs)
        medians = {k: v["median_samples_per_s"] for k, v in runs.items()}
        result["qubits"][str(qubits)] = {"check": check, "runs": runs, "ratios": ratios(medians)}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    print(f"wrote {args.out}")
    if args.stacked:
        sys.path.insert(0, str(Path(__file__).parent))
        import stacked

        result["stacked"] = stacked.main(["--repeats", str(min(args.repeats, 3))])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

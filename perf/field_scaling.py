"""The field's students at 8 to 20 qubits: kdbench's statevector backend against PennyLane.

Each student (`reuploading`, `dressed`, `iqp`, `separable`, `circuit-centric`, `tree-tensor`,
`qcnn`) is built by kdbench for inputs with as many features as it needs for the qubits of
the point. PennyLane runs the very same Qiskit circuit, translated gate by gate, inside the
very same torch module (its classical parts and readout untouched): on `lightning.qubit`
with adjoint gradients and on `default.qubit` with backprop, measuring the ⟨Z⟩ values (and
⟨Z0 Z1⟩ for IQP) the readout reads, as PennyLane users would; kdbench computes the 2^n
probabilities its backends return. An amplitude encoding is handed to PennyLane as its state
(`qml.StatePrep`, the benchmark's AmplitudeEmbedding), as kdbench loads it. Outputs agree
before timing. Each implementation trains two steps untimed (the first steps' memory comes
from the system a page at a time: kdbench's first two at 16 qubits took twice as long as
the next ones), then each repeat trains `--steps` Adam steps at batch `--batch`
(cross-entropy), implementations interleaved; medians.

    .venv/bin/pip install -e '.[perf]'                    # PennyLane, once
    .venv/bin/python perf/field_scaling.py                # every student, 8 12 16 20 qubits
    .venv/bin/python perf/field_scaling.py --students iqp --qubits 8 12

Prints a table of samples/s and ratios; writes perf/results/field_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from kdbench import AMPLITUDES, linear_angle, parameter_columns
from kdbench.api import StudentContext
from kdbench.testing import make, plugin_registry
from kdbench_plugins.students.field import Iqp, _two

RESULTS = Path(__file__).resolve().parent / "results"
STUDENTS = ["reuploading", "dressed", "iqp", "separable", "circuit-centric", "tree-tensor", "qcnn"]
PEERS = {
    "pl-lightning-adjoint": ("lightning.qubit", "adjoint"),
    "pl-default-backprop": ("default.qubit", "backprop"),
}
PEER_NAMES = {"lightning": "pl-lightning-adjoint", "default": "pl-default-backprop"}


def features_for(student: str, qubits: int) -> int | None:
    """The input size that gives `student` `qubits` qubits (None: no size does)."""
    if student == "reuploading":
        return 3 * qubits
    if student == "circuit-centric":  # two copies of ⌈log2 d⌉ qubits
        return 2 ** (qubits // 2) if qubits % 2 == 0 else None
    if student == "tree-tensor":  # a power of 2 with 2^n ≥ d
        return 2**qubits if qubits & (qubits - 1) == 0 else None
    return qubits


def build(student: str, features: int) -> torch.nn.Module:
    torch.manual_seed(0)
    registry = plugin_registry()
    component = make(registry, "students", student)
    backend = make(registry, "backends", "statevector")
    return component.build(StudentContext(2, (features,), backend, None, 0))


def pennylane_forward(model: torch.nn.Module, device_name: str, diff_method: str):
    """model's forward with its circuit run by PennyLane: the circuit translated gate by
    gate, each angle `slope * value + offset` of one input or weight (as kdbench reads it)."""
    import pennylane as qml

    circuit, n = model.circuit, model.circuit.num_qubits
    columns = parameter_columns(model.parameters_in_order, [])
    gates = {
        "h": qml.Hadamard,
        "x": qml.PauliX,
        "cx": qml.CNOT,
        "cz": qml.CZ,
        "rx": qml.RX,
        "ry": qml.RY,
        "rz": qml.RZ,
        "rzz": qml.IsingZZ,
        "crz": qml.CRZ,
        "crx": qml.CRX,
    }
    ops = []
    # The amplitude encoding as PennyLane users write it (the benchmark's AmplitudeEmbedding):
    # the state itself, loaded by the device; wire n-1 first, as Qiskit's most significant bit.
    loads = circuit.data[0].operation.name == AMPLITUDES
    for instruction in circuit.data[1:] if loads else circuit.data:
        wires = [circuit.find_bit(q).index for q in instruction.qubits]
        angles = [linear_angle(p, columns, "perf") for p in instruction.operation.params]
        ops.append((gates[instruction.operation.name], wires, angles))
    read_zz = isinstance(model, Iqp)

    def run(values, state=None):
        if state is not None:
            qml.StatePrep(state, wires=list(range(n - 1, -1, -1)))
        for gate, wires, angles in ops:
            params = [
                slope * values[:, c] + offset if c is not None else offset
                for c, slope, offset in angles
            ]
            gate(*params, wires=wires)
        measured = [qml.expval(qml.PauliZ(q)) for q in range(n)]
        return [*measured, qml.expval(qml.PauliZ(0) @ qml.PauliZ(1))] if read_zz else measured

    qnode = qml.QNode(
        run, qml.device(device_name, wires=n), interface="torch", diff_method=diff_method
    )

    def forward(x: torch.Tensor) -> torch.Tensor:
        angles = model.angles(x.flatten(1)).double()
        values = torch.cat((angles, model.weights.double().expand(len(x), -1)), dim=1)
        state = model.amplitudes(x.flatten(1)).double() if loads else None
        out = [torch.as_tensor(o) for o in qnode(values, state)]
        z = torch.stack(out[:n], dim=1).to(x.dtype)
        if model.map is not None:
            return torch.softmax(model.map(z), dim=1)
        if read_zz:
            return _two((1 + out[n].to(x.dtype)) / 2)
        return model.own(z, None)

    return forward


def train(forward, parameters, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> float:
    optimizer = torch.optim.Adam(parameters, lr=0.01)
    started = time.perf_counter()
    for step in range(steps):
        rows = slice((step * batch) % len(x), (step * batch) % len(x) + batch)
        loss = torch.nn.functional.nll_loss(torch.log(forward(x[rows])), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def measure(
    student: str, qubits: int, steps: int, batch: int, repeats: int, peers: list[str]
) -> dict[str, Any]:
    features = features_for(student, qubits)
    model = build(student, features)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4 * batch, features, generator=generator)
    y = torch.randint(0, 2, (4 * batch,), generator=generator)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    forwards = {"kdbench-sv": model}
    forwards |= {key: pennylane_forward(model, *PEERS[key]) for key in peers}
    with torch.no_grad():
        reference = model(x[:4])
        agreement = max(float((f(x[:4]) - reference).abs().max()) for f in forwards.values())
    for forward in forwards.values():  # untimed: memory and caches warm
        model.load_state_dict(start)
        train(forward, model.parameters(), x, y, 2, batch)
    rates: dict[str, list[float]] = {key: [] for key in forwards}
    for _ in range(repeats):
        for key, forward in forwards.items():  # interleaved
            model.load_state_dict(start)
            seconds = train(forward, model.parameters(), x, y, steps, batch)
            rates[key].append(steps * batch / seconds)
    medians = {key: statistics.median(v) for key, v in rates.items()}
    return {
        "student": student,
        "qubits": qubits,
        "features": features,
        "samples_per_s": rates,
        "median": medians,
        "ratios": {peer: medians["kdbench-sv"] / medians[peer] for peer in peers},
        "max_abs_output_diff": agreement,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="+", default=STUDENTS, choices=STUDENTS)
    parser.add_argument("--qubits", type=int, nargs="+", default=[8, 12, 16, 20])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900, help="seconds a point may take")
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(PEER_NAMES),
        choices=list(PEER_NAMES),
        help="PennyLane devices to time against (one that runs out of memory can be left out;"
        " none: kdbench alone, its peak memory then its own)",
    )
    parser.add_argument("--point", nargs=2, help=argparse.SUPPRESS)  # one point, in a child
    args = parser.parse_args()
    torch.set_num_threads(1)  # a cell's default
    if args.point:
        student, qubits = args.point[0], int(args.point[1])
        peers = [PEER_NAMES[name] for name in args.peers]
        print(json.dumps(measure(student, qubits, args.steps, args.batch, args.repeats, peers)))
        return
    header = ["student", "qubits", "kdbench (samples/s)", "lightning adjoint", "default.qubit"]
    print("| " + " | ".join([*header, "×lightning", "×default", "max |Δ|", "peak GiB"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    points = []
    for student in args.students:
        for qubits in args.qubits:
            if features_for(student, qubits) is None:
                continue
            point = _in_child(args, student, qubits)
            points.append(point)
            if "error" in point:
                print(f"| {student} | {qubits} | {point['error']} | | | | | | |", flush=True)
                continue
            m, r = point["median"], point["ratios"]
            cells = [f"{m[k]:.1f}" if k in m else "–" for k in ("kdbench-sv", *PEERS)]
            cells += [f"{r[k]:.2f}" if k in r else "–" for k in PEERS]
            cells += [f"{point['max_abs_output_diff']:.1e}", f"{point['peak_rss_gb']:.1f}"]
            print(f"| {student} | {qubits} | " + " | ".join(cells) + " |", flush=True)
    # Points measured before (other students, qubits or peers) are kept beside these.
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / "field_scaling.json"
    measured = {(p["student"], p["qubits"]) for p in points}
    kept = json.loads(saved.read_text()) if saved.exists() else []
    kept = [p for p in kept if (p["student"], p["qubits"]) not in measured]
    saved.write_text(json.dumps(kept + points, indent=1))


def _in_child(args: argparse.Namespace, student: str, qubits: int) -> dict[str, Any]:
    """One point in its own process: one that runs out of memory (the machine's OOM killer)
    or time is reported, and the others go on."""
    command = [
        sys.executable,
        __file__,
        "--point",
        student,
        str(qubits),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--peers",
        *args.peers,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"student": student, "qubits": qubits, "error": f"over {args.timeout:.0f} s"}
    if done.returncode != 0:
        killed = done.returncode in (-9, 137)
        why = "out of memory (killed)" if killed else done.stderr.strip().splitlines()[-1]
        return {"student": student, "qubits": qubits, "error": why}
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()

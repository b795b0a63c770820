"""The `statevector` backend: its options, what it compiles a circuit into, its memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch

from kdbench import (
    Backend,
    CircuitPlan,
    ParameterShift,
    decompose_to,
    hookimpl,
    option,
    smoothing_option,
    split_slots,
)

from .builder import _FIXED_MONOMIAL, NATIVE_GATES, loads_amplitudes_first
from .simulate import CompiledStatevector

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit


@dataclass(kw_only=True)
class Statevector(Backend):
    """Exact batched statevector simulation in torch, autograd gradients.

    The circuit is compiled once into a short list of tensor operations on a [B, 2**n] state:
    constant permutation and phase gates (x, y, z, s, sdg, t, cx, cz, swap, ccx, rz/p/rzz with
    a fixed angle) are fused into one gather-and-multiply; h, rx and ry combine the two halves
    of a qubit's axis; rz, p and rzz with a parameter multiply by per-sample phases; crx, cry,
    crz and cp apply their rotation to the control's half of the state. A circuit of real
    gates (h, x, y, z, ry, cry, cx, cz, swap, ccx, ...) runs in a real dtype. The other gates
    of `kdbench.EXACT_GATES` (rxx, ryy, rzx, u, sx, cy, ch, ...) run as their exact
    definitions in these gates.

    The compiler fuses further, for any circuit: the leading single-qubit gates become a
    product state (each qubit's 2-vector, multiplied out: a circuit without entangling gates is
    one); each qubit's single-qubit gates between two gates on more qubits that read an input
    become one 2x2 matrix per sample, and each run of diagonal gates that reads an input one
    phase per sample and basis state. Up to FUSE_MAX_QUBITS qubits every run of gates whose
    angles involve no input becomes one 2^n x 2^n matrix, built per call from the weights
    (layers of single-qubit gates as Kronecker products) and applied to the whole batch in one
    matmul; past it, each such run on one or two qubits becomes one 2x2 or 4x4 matrix. The
    tensor operations per call then no longer grow with the gates: they dominated the time of
    the small circuits students use, and each keeps a state for autograd in large ones.

    With `shots` set, each row of probabilities is replaced by the frequencies of `shots`
    multinomial draws (a generator seeded with the compile seed, so runs repeat), smoothed
    with the pseudo-count `smoothing` (`kdbench.ShotSampler`). Gradients
    use the straight-through estimator: the forward value is the sampled frequencies, the
    backward pass is that of the exact probabilities, so training still works.

    With `gradient = "parameter-shift"` the gradients come from `kdbench.ParameterShift`
    instead, run on this simulator's (exact or sampled) probabilities: what a sampling
    backend computes, at torch speed, to check it against autograd or study shot noise.
    """

    name: ClassVar[str] = "statevector"

    shots: int | None = option(
        None,
        help="sample this many shots per circuit (multinomial) instead of exact probabilities",
        minimum=1,
    )
    smoothing: float = smoothing_option(recorded_if="shots")  # exact: nothing to smooth
    gradient: Literal["autograd", "parameter-shift"] = option(
        "autograd",
        help="autograd (exact, through the simulation) or parameter-shift (2 circuits per "
        "rotation and sample, as on a sampling backend)",
    )

    @property
    def stackable(self) -> bool:
        return self.shots is None  # shots draw from the circuit's own sampler

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> CompiledStatevector | ParameterShift:
        """Compile `circuit` once; raise ValueError for an unsupported gate or angle."""
        if self.gradient == "autograd":
            return CompiledStatevector(
                circuit, inputs, weights, shots=self.shots, seed=seed, smoothing=self.smoothing
            )
        slots = split_slots(circuit, inputs, weights)
        # The slot circuit's parameters are all "inputs": one value per slot and row. Its raw
        # frequencies are smoothed once, by ParameterShift.
        run = CompiledStatevector(slots.circuit, slots.parameters, [], shots=self.shots, seed=seed)
        empty = torch.zeros(0, dtype=torch.float64)
        return ParameterShift(
            slots,
            lambda values: run(values, empty.to(values.device)),
            depth=run.depth,
            width=run.width,
            shots_per_circuit=self.shots or 0,
            smoothing=self.smoothing,
        )

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Refuse a circuit whose simulation cannot fit in this machine's memory."""
        estimate = self.memory_needed(plan)
        if estimate is not None:
            self.check_memory(*estimate)

    def memory_needed(self, plan: CircuitPlan) -> tuple[int, str] | None:
        """(bytes, what they are for) at the peak of a cell running `circuit`; None for a
        circuit `compile` refuses (it says why).

        An estimate, its factors a little below what was measured at 20 qubits: a state is 2**n
        amplitudes of 4 bytes (float32, the angles' dtype in a float32 student; 8 when a gate
        makes it complex: rx, rz, p, s, sdg, t, crx, crz, cp, rzz), twice that with
        parameter-shift (float64 angles). Training with autograd keeps every parameterized
        rotation's input state for the backward pass: R + 3 states per input for R rotations
        (measured R + 5 gate by gate; fused, fewer: a training step at 16 qubits, batch 32,
        peaked at 0.6 of this estimate for re-uploading, 0.75-0.95 for IQP), an amplitude
        encoding loaded at once counting as one rotation; parameter shift runs 2 circuits per
        input and shifted weight (their inputs too when the front trains, not counted);
        without gradients 2 states per input (measured 2.6). Compiling adds 8 bytes per
        amplitude (the basis index), 40 while constant permutation and phase gates are fused
        (measured 50-65).
        """
        from qiskit.circuit import ParameterExpression

        circuit, train_batch, eval_batch = plan.circuit, plan.train_batch, plan.eval_batch
        try:
            slots = split_slots(circuit, plan.inputs, plan.weights)
        except ValueError:
            return None
        flat = decompose_to(slots.circuit, NATIVE_GATES)  # the gates the builder sees
        names = {i.operation.name for i in flat.data}
        constant = any(
            i.operation.name in _FIXED_MONOMIAL
            or (
                i.operation.name in ("rz", "p", "crz", "cp")
                and not isinstance(i.operation.params[0], ParameterExpression)
            )
            for i in flat.data
        )
        n, rotations = circuit.num_qubits, len(slots)
        if loads_amplitudes_first(circuit):  # its 2**n - 1 rotations are one operation
            rotations -= 2**n - 2
        complex_state = bool(names & {"rx", "rz", "p", "s", "sdg", "t", "crx", "crz", "cp", "rzz"})
        shift = self.gradient == "parameter-shift"
        itemsize = (4 if not complex_state else 8) * (2 if shift else 1)
        dtype = {4: "float32", 8: "complex64" if complex_state else "float64", 16: "complex128"}
        state = 2**n * itemsize
        tables = 2**n * (40 if constant else 8)
        # (bytes, rows, states per row, what for), without gradients and in training.
        parts = [(eval_batch * 2 * state, eval_batch, 2, f"tested on batches of {eval_batch}")]
        if train_batch is not None:
            if shift:
                rows, kept = max(1, 2 * slots.shifted_in_training) * train_batch, 2
            else:
                rows, kept = train_batch, rotations + 3
            parts.append((rows * kept * state, rows, kept, f"training on batches of {train_batch}"))
        needed, rows, kept, what = max(parts)
        kept_for = ", kept for autograd" if kept > 2 else ""
        return tables + needed, (
            f"a {n}-qubit circuit {what} ({rows} × {kept} states of 2^{n} {dtype[itemsize]} "
            f"amplitudes{kept_for}, and the compiled tables)"
        )


@hookimpl
def register_backends(register) -> None:
    """Register the built-in backends."""
    register(Statevector)

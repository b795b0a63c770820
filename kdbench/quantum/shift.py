"""The parameter-shift engine: gradients for backends that can only sample a circuit.

A backend that returns measurement probabilities but no derivatives (a shot simulator, a
quantum computer) gets its gradients here:

1. `split_slots` rewrites the circuit so that every parameterized rotation gate occurrence
   has a Parameter of its own, a *slot*, whose value is the gate's whole angle
   `slope * values[column] + offset` (values = inputs, then weights).
2. The backend prepares that slot circuit once (transpiling, adding measurements) and hands
   `ParameterShift` a sampler: values [K, S] of the S slots -> probabilities [K, 2**n].
3. `ParameterShift` is a `CircuitFunction`. Its forward pass runs the B circuits of a batch in
   one sampler call; its backward pass runs every shifted circuit of the batch, 2·B·S' of
   them for the S' slots whose gradient is needed, in ONE more call, and applies
   dP/dθ = ½[P(θ + π/2) − P(θ − π/2)], exact for gates exp(-iθG/2) with G² = I (rx, ry, rz,
   rxx, ryy, rzz, rzx) and for p (an rz up to a global phase), then the chain rule. Other
   gates with angles (crx, cp, u, ...: `EXACT_GATES`) are first expanded into these exactly.

Qiskit is imported only when a circuit is prepared: it is slow to import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kdbench.quantum.angles import linear_angle, parameter_columns
from kdbench.quantum.counters import CircuitCounters, check_circuit_call
from kdbench.quantum.gates import EXACT_GATES, decompose_to
from kdbench.quantum.shots import smoothed
from kdbench.quantum.tensors import call_dtype

if TYPE_CHECKING:
    from qiskit.circuit import Parameter, QuantumCircuit

SHIFTABLE_GATES = ("p", "rx", "rxx", "ry", "ryy", "rz", "rzx", "rzz")
"""Gates whose angle may depend on a parameter: the two-term shift rule is exact for them."""

Sampler = Callable[[torch.Tensor], torch.Tensor]
"""values [K, S] of the slots -> outcome probabilities [K, 2**num_qubits] (any float dtype)."""

_SHIFT = math.pi / 2


@dataclass(frozen=True)
class Slots:
    """A circuit whose parameterized rotations each read a slot Parameter of their own.

    Slot s of a batch row is `slopes[s] * values[columns[s]] + offsets[s]`, where values are
    the row's inputs followed by the weights.
    """

    circuit: QuantumCircuit
    parameters: tuple[Parameter, ...]
    columns: tuple[int, ...]
    slopes: tuple[float, ...]
    offsets: tuple[float, ...]
    num_inputs: int
    num_weights: int

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def shifted_in_training(self) -> int:
        """The rotations counted as shifted in a training step (2 circuits each, per input):
        those reading a weight, or all of them when none does."""
        return sum(1 for c in self.columns if c >= self.num_inputs) or len(self)


def split_slots(
    circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter]
) -> Slots:
    """Give every parameterized rotation of `circuit` its own slot Parameter.

    Composite gates, and gates of `EXACT_GATES` whose angles depend on a Parameter (crx,
    u, ...), are expanded first (`decompose_to`), so that their rotations get slots; gates
    with constant angles are kept as they are, for the backend's transpiler. Raise
    ValueError for a parameterized gate that expands into no `SHIFTABLE_GATES` or an angle
    not linear in one input or weight.
    """
    from qiskit.circuit import ParameterExpression, ParameterVector, QuantumCircuit
    from qiskit.circuit.library import (
        PhaseGate,
        RXGate,
        RXXGate,
        RYGate,
        RYYGate,
        RZGate,
        RZXGate,
        RZZGate,
    )

    gates = {
        "p": PhaseGate,
        "rx": RXGate,
        "rxx": RXXGate,
        "ry": RYGate,
        "ryy": RYYGate,
        "rz": RZGate,
        "rzx": RZXGate,
        "rzz": RZZGate,
    }
    circuit = decompose_to(circuit, SHIFTABLE_GATES, keep_constant=True)
    columns = parameter_columns(inputs, weights)

    def parameterized(value: Any) -> bool:
        if isinstance(value, ParameterExpression):
            return bool(value.parameters)
        return isinstance(value, QuantumCircuit) and bool(value.parameters)

    # Enough slot Parameters for every gate; the unused tail is dropped below.
    vector = ParameterVector("slot", sum(1 for i in circuit.data if i.operation.params))
    out = circuit.copy_empty_like()
    if parameterized(out.global_phase):
        out.global_phase = 0.0  # a global phase never changes probabilities
    table: list[tuple[int, float, float]] = []
    for instruction in circuit.data:
        operation = instruction.operation
        if not any(parameterized(v) for v in operation.params):
            out.append(instruction)
            continue
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        where = f"parameter-shift: gate '{operation.name}' on qubits {qubits}"
        if operation.name not in gates:
            raise ValueError(
                f"{where} has a parameterized angle; parameter-shift supports "
                f"{', '.join(_parameterized_gates())} (decompose or transpile the circuit first)"
            )
        column, slope, offset = linear_angle(operation.params[0], columns, where)
        # Linear in a parameter with slope 0 (e.g. 0*p + 0.2): a constant angle.
        if column is None or slope == 0.0:
            out.append(gates[operation.name](offset), instruction.qubits, instruction.clbits)
            continue
        slot = vector[len(table)]
        table.append((column, slope, offset))
        out.append(gates[operation.name](slot), instruction.qubits, instruction.clbits)
    return Slots(
        circuit=out,
        parameters=tuple(vector[: len(table)]),
        columns=tuple(c for c, _, _ in table),
        slopes=tuple(a for _, a, _ in table),
        offsets=tuple(b for _, _, b in table),
        num_inputs=len(inputs),
        num_weights=len(weights),
    )


def _parameterized_gates() -> list[str]:
    """The gates whose angles may depend on a parameter: `SHIFTABLE_GATES` and those of
    `EXACT_GATES` with angles, which expand into them."""
    from qiskit.circuit.library import get_standard_gate_name_mapping

    standard = get_standard_gate_name_mapping()
    return sorted({*SHIFTABLE_GATES, *(name for name in EXACT_GATES if standard[name].params)})


class ParameterShift(CircuitCounters):
    """A `CircuitFunction` over a sampler, differentiable by the parameter-shift rule.

    Call it with inputs [B, n_inputs] and weights [n_weights]; it returns the probabilities
    [B, 2**n] the sampler gives for the B rows (one sampler call), and on backward runs every
    needed shifted circuit of the batch in one more sampler call. Slots of a tensor that does
    not require grad, and slots listed as `unused` (absent from the circuit the sampler runs),
    are not shifted.

    `executions` counts circuits run (forward and shifted), `shots` the shots spent
    (`shots_per_circuit` each) and `sampler_calls` the calls to the sampler. With shots, the
    frequencies returned are smoothed with the pseudo-count `smoothing` (`smoothed`).
    """

    def __init__(
        self,
        slots: Slots,
        sampler: Sampler,
        *,
        depth: int,
        width: int,
        shots_per_circuit: int = 0,
        unused: Sequence[int] = (),
        smoothing: float = 0.0,
    ):
        super().__init__(depth=depth, width=width, shots_per_circuit=shots_per_circuit)
        self.smoothing = smoothing
        self.slots = slots
        self.sampler = sampler
        self.sampler_calls = 0
        self.num_inputs = slots.num_inputs
        self.num_weights = slots.num_weights
        self._columns = torch.tensor(slots.columns, dtype=torch.long)
        self._slopes = torch.tensor(slots.slopes, dtype=torch.float64)
        self._offsets = torch.tensor(slots.offsets, dtype=torch.float64)
        used = torch.ones(len(slots), dtype=torch.bool)
        used[list(unused)] = False
        self._used = used

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_qubits]."""
        check_circuit_call(inputs, weights, self.num_inputs, self.num_weights)
        frequencies = _ShiftFunction.apply(inputs, weights, self)
        if not self.shots_per_circuit:
            return frequencies
        return smoothed(frequencies, self.shots_per_circuit, self.smoothing)

    def angles(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The slot values [B, S] of a batch, in float64 on the inputs' device."""
        device = inputs.device
        values = torch.cat(
            [
                inputs.detach().to(torch.float64),
                weights.detach().to(device, torch.float64).expand(inputs.shape[0], -1),
            ],
            1,
        )
        columns = self._columns.to(device)
        return self._offsets.to(device) + self._slopes.to(device) * values[:, columns]

    def sample(self, values: torch.Tensor) -> torch.Tensor:
        """Run the sampler once on slot values [K, S] and count what it ran."""
        probs = torch.as_tensor(self.sampler(values))
        if probs.shape[0] != values.shape[0]:
            raise RuntimeError(f"sampler returned {probs.shape[0]} rows for {values.shape[0]}")
        self.sampler_calls += 1
        self.count(values.shape[0])
        return probs

    def gradients(
        self, angles: torch.Tensor, grad_probs: torch.Tensor, need_inputs: bool, need_weights: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(d loss/d inputs [B, n_in], d loss/d weights [n_w]) given d loss/d probs [B, 2**n]."""
        batch, device = angles.shape[0], angles.device
        needed = self._used.clone()
        if not need_inputs:
            needed &= self._columns >= self.num_inputs
        if not need_weights:
            needed &= self._columns < self.num_inputs
        slots = needed.nonzero().flatten().to(device)
        grad_values = torch.zeros(
            batch, self.num_inputs + self.num_weights, dtype=torch.float64, device=device
        )
        if len(slots) and batch:
            count = len(slots)
            # shifted[sign, b, j] = angles[b] with slot slots[j] moved by sign·π/2.
            shifted = angles[None, :, None, :].repeat(2, 1, count, 1)
            step = torch.zeros(count, angles.shape[1], dtype=torch.float64, device=device)
            step[torch.arange(count, device=device), slots] = _SHIFT
            shifted[0] += step
            shifted[1] -= step
            probs = self.sample(shifted.reshape(-1, angles.shape[1]))
            probs = probs.to(device, torch.float64).reshape(2, batch, count, -1)
            derivative = 0.5 * (probs[0] - probs[1])  # [B, S', 2**n]
            grad_slots = torch.einsum("bsk,bk->bs", derivative, grad_probs.to(torch.float64))
            # Chain rule: slot = slope * values[column] + offset.
            slopes = self._slopes.to(device)[slots]
            columns = self._columns.to(device)[slots]
            grad_values.index_add_(1, columns, grad_slots * slopes)
        grad_inputs = grad_values[:, : self.num_inputs] if need_inputs else None
        grad_weights = grad_values[:, self.num_inputs :].sum(0) if need_weights else None
        return grad_inputs, grad_weights


class _ShiftFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, weights, engine: ParameterShift):
        angles = engine.angles(inputs, weights)
        probs = engine.sample(angles)
        dtype = call_dtype(inputs, weights)
        ctx.engine = engine
        ctx.dtypes = (inputs.dtype, weights.dtype, weights.device)
        ctx.save_for_backward(angles)
        return probs.to(inputs.device, dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_probs):
        (angles,) = ctx.saved_tensors
        need_inputs, need_weights = ctx.needs_input_grad[:2]
        grad_inputs, grad_weights = ctx.engine.gradients(
            angles, grad_probs, need_inputs, need_weights
        )
        input_dtype, weight_dtype, weight_device = ctx.dtypes
        if grad_inputs is not None:
            grad_inputs = grad_inputs.to(input_dtype)
        if grad_weights is not None:
            grad_weights = grad_weights.to(weight_device, weight_dtype)
        return grad_inputs, grad_weights, None

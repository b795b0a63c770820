"""A compiled statevector circuit: angles, the state gate by gate, its probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from kdbench import (
    AMPLITUDES,
    CircuitCounters,
    ShotSampler,
    call_dtype,
    check_circuit_call,
    complex_dtype,
    decompose_to,
)

from .builder import NATIVE_GATES, _Builder, loads_amplitudes_first
from .fusion import FUSE_MAX_QUBITS, _fuse, angle_columns

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit


class CompiledStatevector(CircuitCounters):
    """A circuit compiled for `Statevector`: call it with inputs [B, n_in] and weights [n_w].

    Returns the probabilities [B, 2**num_qubits] of all qubits in Qiskit's order (bit q of the
    index is qubit q), as `qiskit.quantum_info.Statevector(...).probabilities()` gives them.
    `executions` counts circuits evaluated (B per call) and `shots` the shots spent (0 when
    exact). `is_real` tells whether the state is simulated in a real dtype. Composite gates,
    and standard gates without an operation of their own (rxx, u, sx, ...), are expanded
    into native ones first (`decompose_to`); `kdbench.amplitude_circuit`'s gate is loaded at
    once where it comes first, else expanded too.
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        shots: int | None,
        seed: int,
        fuse: bool = True,
        smoothing: float = 0.0,
    ):
        flat = decompose_to(circuit, NATIVE_GATES)
        if loads_amplitudes_first(circuit):  # kept whole: its state is loaded at once
            circuit = decompose_to(circuit, (*NATIVE_GATES, AMPLITUDES))
        else:
            circuit = flat
        super().__init__(depth=flat.depth(), width=circuit.num_qubits, shots_per_circuit=shots or 0)
        self.num_qubits = circuit.num_qubits
        self.num_inputs = len(inputs)
        self.num_weights = len(weights)
        self.seed = seed
        self.smoothing = smoothing
        self._shots = ShotSampler(shots, seed, smoothing) if shots else None
        builder = _Builder(circuit, list(inputs), list(weights))
        self.is_real = all(op.real for op in builder.ops)
        self._start, self._ops = None, builder.ops
        if fuse:
            weight_only = [column >= len(inputs) for column in builder.columns]
            blocks = circuit.num_qubits <= FUSE_MAX_QUBITS
            self._start, self._ops = _fuse(builder.ops, circuit.num_qubits, weight_only, blocks)
        # Which operations read inputs' angles only: with inputs that need no gradient, they
        # run on a table without one (an amplitude encoding's 2^n - 1 angles, an IQP
        # embedding's, are then not differentiated for nothing).
        input_columns = [column < len(inputs) for column in builder.columns]
        self._inputs_only = [
            all(input_columns[g] for g in angle_columns(op)) for op in [self._start, *self._ops]
        ]
        # angle_g = slope_g * values[:, column_g] + offset_g; halved where the gate uses θ/2.
        self._columns = torch.tensor(builder.columns, dtype=torch.long)
        self._slopes = torch.tensor(builder.slopes, dtype=torch.float64)
        self._offsets = torch.tensor(builder.offsets, dtype=torch.float64)
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        # Exact, it takes S models' weights at once (stacked training); drawn shots would
        # come from one generator in another order than each model's alone.
        self.stacks_weights = self._shots is None

    @property
    def num_operations(self) -> int:
        """How many gate operations one call runs (after fusion; each is a few tensor ops)."""
        return len(self._ops) + (self._start is not None)

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_qubits]; or
        weights [S, n_weights], one set for each block of B/S rows (`stacks_weights`)."""
        check_circuit_call(
            inputs, weights, self.num_inputs, self.num_weights, stacked=self.stacks_weights
        )
        dtype = call_dtype(inputs, weights)
        device = inputs.device
        batch = inputs.shape[0]
        weights = weights.to(device=device, dtype=dtype)
        # Rows sharing weights: operations whose angles are weights' alone build one matrix
        # for each such block (`per_block`), from its first row.
        block = batch if weights.dim() == 1 else batch // len(weights)

        cos = sin = None
        if len(self._columns):
            if weights.dim() == 1:
                rows = weights.expand(batch, -1)
            else:
                rows = weights.repeat_interleave(block, 0)
            values = torch.cat([inputs.to(dtype), rows], 1)
            columns, slopes, offsets = self._angle_table(device, dtype)
            angles = torch.addcmul(offsets, values[:, columns], slopes)
            # One cos and one sin for every parameterized gate of the circuit.
            cos, sin = torch.cos(angles), torch.sin(angles)
        tables = [(cos, sin)] * (1 + len(self._ops))
        if cos is not None and cos.requires_grad and not inputs.requires_grad:
            frozen = (cos.detach(), sin.detach())
            tables = [frozen if only else (cos, sin) for only in self._inputs_only]

        state_dtype = dtype if self.is_real else complex_dtype(dtype)
        if self._start is not None:
            state = self._start.state(*tables[0], batch, state_dtype, device)
        else:
            state = torch.zeros(batch, 2**self.num_qubits, dtype=state_dtype, device=device)
            state[:, 0] = 1
        for op, (op_cos, op_sin) in zip(self._ops, tables[1:], strict=True):
            if op_cos is not None and getattr(op, "per_block", False):
                op_cos, op_sin = op_cos[::block], op_sin[::block]
            state = op.apply(state, op_cos, op_sin, self.num_qubits)
        probs = state.square() if self.is_real else state.real.square() + state.imag.square()

        self.count(batch)
        return probs if self._shots is None else self._shots(probs)

    def _angle_table(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The angle table on `device` in `dtype`, copied there once."""
        key = (device, dtype)
        if key not in self._tables:
            self._tables[key] = (
                self._columns.to(device),
                self._slopes.to(device, dtype),
                self._offsets.to(device, dtype),
            )
        return self._tables[key]

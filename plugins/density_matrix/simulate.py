"""A compiled density-matrix circuit: the product state, the blocks, the observables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from kdbench import (
    CircuitCounters,
    ShotSampler,
    call_dtype,
    check_circuit_call,
    complex_dtype,
    constant_tensor,
)

from .compiler import _Compiler
from .fusion import _blocks, _FusedBlocks, _paired_order, _ProductState, _segments
from .measure import _observables
from .steps import _MATRIX_TOL

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit_aer.noise import NoiseModel


class CompiledDensityMatrix(CircuitCounters):
    """A circuit compiled for `DensityMatrix`: call it with inputs [B, n_in], weights [n_w].

    Returns the outcome probabilities [B, 2**num_clbits] of the measured circuit `isa`, bit j
    of the index being classical bit j (logical qubit j: `kdbench.measured` measures qubit j
    into bit j before transpiling), as the statevector backend orders them. `qubits` lists
    the physical qubits simulated.
    """

    def __init__(
        self,
        isa: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        noise_model: NoiseModel | None = None,
        depolarizing: float = 0.0,
        readout: bool = True,
        shots: int | None = None,
        seed: int = 0,
        smoothing: float = 0.0,
    ):
        compiled = _Compiler(isa, inputs, weights, noise_model, depolarizing, readout)
        super().__init__(
            depth=CircuitCounters.gate_depth(isa),
            width=len(compiled.physical),
            shots_per_circuit=shots or 0,
        )
        self.isa = isa
        self.qubits = compiled.physical
        self.num_qubits = n = len(compiled.physical)
        self.num_inputs, self.num_weights = len(inputs), len(weights)
        self._shots = ShotSampler(shots, seed, smoothing) if shots else None
        # angle_g = Σ_c slopes[g, c] · values[c] + offsets[g]
        slopes = np.zeros((len(compiled.slopes), len(inputs) + len(weights)))
        for g, row in enumerate(compiled.slopes):
            for column, slope in row.items():
                slopes[g, column] = slope
        self._slopes_in = torch.from_numpy(slopes[:, : len(inputs)].T.copy())
        self._slopes_w = torch.from_numpy(slopes[:, len(inputs) :].T.copy())
        self._offsets = torch.tensor(compiled.offsets, dtype=torch.float64)

        product, middle, tail = _segments(compiled.steps, n)
        self._product = _ProductState(product, n)
        self._middle = _FusedBlocks(_blocks(middle), n)
        self._tail = _FusedBlocks(_blocks(tail), n)
        self._observables = _observables(compiled.confusion, compiled.measured, n)
        self._paired = _paired_order(n)
        # Real gates and real errors (H, RY, CX, depolarizing: Y ⊗ conj(Y) is real) keep every
        # density matrix real: simulated in the real dtype, half the arithmetic.
        self.is_real = _is_real(
            self._product.start,
            *(f.terms for f in self._product.positions),
            *(b.first for part in (self._middle, self._tail) for b in part.blocks),
            *(f.terms for part in (self._middle, self._tail) for f in part.factors.values()),
        )
        self._tensors: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_clbits]."""
        check_circuit_call(inputs, weights, self.num_inputs, self.num_weights)
        dtype = call_dtype(inputs, weights)
        device, batch = inputs.device, inputs.shape[0]
        slopes_in, slopes_w, offsets, observables, paired = self._on(device, dtype)
        weight_angles = (weights.to(device, dtype) @ slopes_w + offsets)[None]  # [1, G]
        angles = inputs.to(dtype) @ slopes_in + weight_angles  # [B, G]

        # The trainable layers, backwards on the observables: once per call.
        observables = self._tail.run(observables, weight_angles, heisenberg=True)
        state_dtype = self._state_dtype(dtype)
        # [B or 1, 4^n], the paired order
        state = self._product.vector(angles, state_dtype)
        if self._middle:
            rows = state.expand(batch, -1)[:, paired.argsort()]  # to row-major [B, 4^n]
            rows = self._middle.run(rows, angles.expand(batch, -1), heisenberg=False)
            probs = rows @ observables.T
        else:
            probs = (state @ observables[:, paired].T).expand(batch, -1)
        if probs.is_complex():
            probs = probs.real
        self.count(batch)
        probs = probs.clamp_min(0.0)  # rounding: a probability is never below 0
        return probs if self._shots is None else self._shots(probs)

    def _state_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The density matrices' dtype for angles in `dtype`."""
        return dtype if self.is_real else complex_dtype(dtype)

    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The angle table, the observables and the pairing on `device`, copied there once."""
        key = (device, dtype)
        if key not in self._tensors:
            self._tensors[key] = (
                self._slopes_in.to(device, dtype),
                self._slopes_w.to(device, dtype),
                self._offsets.to(device, dtype),
                constant_tensor(self._observables, device, self._state_dtype(dtype)),
                torch.from_numpy(self._paired).to(device),
            )
        return self._tensors[key]


def _is_real(*arrays: np.ndarray) -> bool:
    return all(np.abs(np.imag(a)).max(initial=0.0) < _MATRIX_TOL for a in arrays)

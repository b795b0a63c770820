"""The measured outcomes' probabilities as observables, the readout errors folded in."""

from __future__ import annotations

import numpy as np


def _observables(confusion: list[np.ndarray], measured: list[int], n: int) -> np.ndarray:
    """[2^m, 4^n] vectorized diagonal observables: outcome j's probability is <O_j, ρ>, the
    product over classical bits of P(read bit | the measured qubit's state)."""
    d = 2**n
    basis = np.arange(d)
    outcomes = np.arange(2 ** len(measured))
    weight = np.ones((len(outcomes), d))
    for bit, (qubit, matrix) in enumerate(zip(measured, confusion, strict=True)):
        state = (basis >> qubit) & 1
        read = (outcomes >> bit) & 1
        weight *= matrix[state[None, :], read[:, None]]
    out = np.zeros((len(outcomes), d, d), dtype=complex)
    out[:, basis, basis] = weight
    return out.reshape(len(outcomes), d * d)

"""Torch helpers the simulators share: a call's dtype, constant tables, product states."""

from __future__ import annotations

import numpy as np
import torch


def call_dtype(inputs: torch.Tensor, weights: torch.Tensor) -> torch.dtype:
    """The real dtype a circuit call computes its angles in: the inputs' and weights'
    promoted, float64 unless that is float32 or float64 (an integer or half input)."""
    dtype = torch.promote_types(inputs.dtype, weights.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float64


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision as the real `dtype`."""
    return torch.complex64 if dtype == torch.float32 else torch.complex128


def constant_tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A compiled numpy table as a tensor on `device` in `dtype`: for a real dtype, its real
    part (the caller knows the table is real; torch would refuse to drop an imaginary part)."""
    values = array if dtype.is_complex else np.ascontiguousarray(array.real)
    return torch.from_numpy(values).to(device, dtype)


def product_state(vectors: torch.Tensor) -> torch.Tensor:
    """Each qubit's vector [R, n, k] multiplied out: their tensor product [R, k**n], qubit 0
    varying fastest (the least significant digit, as in Qiskit's order)."""
    state = vectors[:, -1]
    for q in range(vectors.shape[1] - 2, -1, -1):
        state = (state[:, :, None] * vectors[:, q, None, :]).flatten(1)
    return state

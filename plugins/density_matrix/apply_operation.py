"""A superoperator on some qubits applied to a batch of vectorized density matrices."""

from __future__ import annotations

import numpy as np
import torch


class _Local:
    """A superoperator on some qubits applied to rows of vectorized density matrices (or
    observables) [R, 4^n]: a gather puts the qubits' row and column bits last, a matmul
    applies it, a gather puts them back."""

    def __init__(self, qubits: tuple[int, ...], num_qubits: int):
        d, k = 2**num_qubits, len(qubits)
        r, c = np.divmod(np.arange(d * d), d)
        local_r = sum(((r >> q) & 1) << j for j, q in enumerate(qubits))
        local_c = sum(((c >> q) & 1) << j for j, q in enumerate(qubits))
        mask = sum(1 << q for q in qubits)
        _, rest = np.unique((r & ~mask) * d + (c & ~mask), return_inverse=True)
        position = rest * 4**k + local_r * 2**k + local_c
        self.gather = np.empty(d * d, dtype=np.int64)
        self.gather[position] = np.arange(d * d)
        self.scatter = np.argsort(self.gather)
        self.size = 4**k
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(self, rows: torch.Tensor, superop: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """rows [R, 4^n] with `superop` S ([4^k, 4^k] or [R, 4^k, 4^k]) applied to each; with
        `adjoint`, rows are observables Q read as <Q, vec ρ>, and <Q, S vec ρ> = <Sᵀ Q, vec ρ>:
        each becomes Sᵀ Q."""
        if rows.device not in self._cache:
            self._cache[rows.device] = (
                torch.from_numpy(self.gather).to(rows.device),
                torch.from_numpy(self.scatter).to(rows.device),
            )
        gather, scatter = self._cache[rows.device]
        local = rows.index_select(1, gather).reshape(len(rows), -1, self.size)
        # Each row's local part x becomes S x, or Sᵀ x for the adjoint.
        out = local @ (superop if adjoint else superop.transpose(-1, -2))
        return out.reshape(len(rows), -1).index_select(1, scatter)

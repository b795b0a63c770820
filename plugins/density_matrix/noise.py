"""The errors of an Aer noise model, looked up as Aer's simulator applies them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qiskit_aer.noise import NoiseModel


class _NoiseErrors:
    """The errors an Aer `NoiseModel` applies, looked up as Aer's simulator applies them.

    The one place that reads the model's private maps: its public API (qiskit-aer 0.18) adds
    errors and serializes them (`to_dict`, instruction lists no public call turns back into
    `QuantumError`s), but has no lookup of the error after a gate on given qubits.
    """

    def __init__(self, model: NoiseModel | None):
        self.model = model

    def after(self, name: str, physical: tuple[int, ...]) -> Any:
        """The QuantumError after gate `name` on `physical` (local, else all-qubit), or None."""
        if self.model is None:
            return None
        local = self.model._local_quantum_errors.get(name, {})
        return local.get(physical, self.model._default_quantum_errors.get(name))

    def readout(self, physical: int) -> Any:
        """The ReadoutError of `physical`'s measurement (local, else all-qubit), or None."""
        if self.model is None:
            return None
        local = self.model._local_readout_errors
        return local.get((physical,), self.model._default_readout_error)

    def noisy_instructions(self) -> set[str]:
        """Instructions that carry a quantum error somewhere."""
        if self.model is None:
            return set()
        return {*self.model._local_quantum_errors, *self.model._default_quantum_errors}

    def correlated_readout(self) -> bool:
        """Whether a readout error spans several qubits."""
        return self.model is not None and any(
            len(qubits) > 1 for qubits in self.model._local_readout_errors
        )

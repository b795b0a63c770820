"""The `density-matrix` backend: its options, the noise it reads, its transpiling, its memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kdbench import (
    Backend,
    CircuitPlan,
    KdbenchError,
    decompose_to,
    depolarizing_option,
    fake_backend,
    hookimpl,
    load_noise_model,
    measured,
    names_device,
    noise_source,
    option,
    smoothing_option,
)

from .simulate import CompiledDensityMatrix

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit


@dataclass(kw_only=True)
class DensityMatrix(Backend):
    """Exact batched density-matrix simulation in torch, autograd gradients, optional noise.

    With `noise` naming a fake IBM device, the circuit is transpiled once to the device's
    gates and layout (as the `aer` backend does), and the device's noise model
    (`NoiseModel.from_backend`: a depolarizing error and thermal relaxation from T1, T2 and
    the gate times after every gate, and each qubit's readout confusion matrix) is applied:
    gate errors as quantum channels after each gate, readout errors on the outcome
    probabilities. `noise` may instead be the path of a pickled `qiskit_aer` NoiseModel: the
    circuit is then transpiled to the model's basis gates, its qubit i on the model's qubit
    i. `depolarizing` adds a uniform depolarizing error after every 1- and 2-qubit gate (on
    top of the device's, as in the `aer` backend). Without either, it equals the statevector
    backend.

    How it runs: the gates on each qubit before its first multi-qubit gate (the encoding)
    make a product of 2x2 density matrices, per sample; the gates after the last one that
    reads an input (the trainable layers) run backwards, in the Heisenberg picture, on the
    measured observables (the readout confusion folded in) once per call, whatever the
    batch; what lies between runs on the batch's [B, 2^n, 2^n] density matrices. Gates and
    their errors on at most 2 qubits are fused into one superoperator each. With `shots`,
    the probabilities are replaced by multinomial frequencies (straight-through gradients,
    as in the statevector backend).
    """

    name: ClassVar[str] = "density-matrix"

    noise: str | None = option(
        None,
        help="fake IBM device whose gates, layout and noise to use (e.g. FakeManilaV2), or the "
        "path of a pickled qiskit_aer NoiseModel (default: noiseless)",
    )
    depolarizing: float | None = depolarizing_option()
    readout: bool = option(True, help="apply the noise model's readout errors", recorded_if="noise")
    shots: int | None = option(
        None,
        help="sample this many shots per circuit (multinomial) instead of exact probabilities",
        minimum=1,
    )
    smoothing: float = smoothing_option(recorded_if="shots")
    optimization_level: int = option(
        1, help="transpiler optimization level", minimum=0, maximum=3, recorded_if="noise"
    )

    def check(self) -> None:
        """Reject a `noise` that is neither a fake device nor a saved noise model."""
        if self.noise is None:
            return
        if names_device(self.noise):
            fake_backend(self.noise, "noise")
        else:
            load_noise_model(self.noise)

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
    ) -> CompiledDensityMatrix:
        """Transpile `circuit` (with `noise`) and compile it once; raise ValueError for a gate
        or angle it cannot simulate, KdbenchError for a circuit wider than the device."""
        isa, noise_model = self.transpiled(circuit, seed)
        return CompiledDensityMatrix(
            isa,
            inputs,
            weights,
            noise_model=noise_model,
            depolarizing=self.depolarizing or 0.0,
            readout=self.readout,
            shots=self.shots,
            seed=seed,
            smoothing=self.smoothing,
        )

    def transpiled(self, circuit: QuantumCircuit, seed: int) -> tuple[QuantumCircuit, Any]:
        """(the measured circuit as it is simulated, the noise model or None)."""
        if self.noise is None:
            from qiskit.circuit.library import get_standard_gate_name_mapping

            # The compiler takes a standard gate's matrix: it runs them as they are, each
            # with one error, as in Aer; composites are expanded.
            return measured(decompose_to(circuit, get_standard_gate_name_mapping())), None
        from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

        noise_model = noise_source(self.noise)
        if names_device(self.noise):
            device = fake_backend(self.noise, "noise")()
            self._check_width(circuit, device.num_qubits)
            manager = generate_preset_pass_manager(
                optimization_level=self.optimization_level, backend=device, seed_transpiler=seed
            )
        else:
            gates = sorted(set(noise_model.basis_gates) - {"for_loop", "if_else", "switch_case"})
            manager = generate_preset_pass_manager(
                optimization_level=self.optimization_level,
                basis_gates=gates,
                seed_transpiler=seed,
            )
        return manager.run(measured(circuit)), noise_model

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Refuse a circuit wider than the noise device, or whose density matrices cannot fit
        in memory: 4^n complex amplitudes per sample (float32 students: 8 bytes), kept for
        autograd once per gate when the gates between the encoding and the trainable layers
        read inputs (an upper estimate), and the 2^n observables of the readout."""
        if self.noise is not None and names_device(self.noise):
            self._check_width(plan.circuit, fake_backend(self.noise, "noise")().num_qubits)
        n = plan.circuit.num_qubits
        rows = max(plan.train_batch or 0, plan.eval_batch)
        kept = len(plan.circuit.data) + 3 if plan.train_batch else 2
        needed = 4**n * 8 * (rows * kept + 2**n * 2)
        self.check_memory(
            needed,
            f"a {n}-qubit circuit on batches of {rows} ({rows} × {kept} density matrices of "
            f"4^{n} complex64 entries, and 2^{n} observables)",
        )

    def _check_width(self, circuit: QuantumCircuit, device_qubits: int) -> None:
        if circuit.num_qubits > device_qubits:
            raise KdbenchError(
                f"density-matrix: the circuit has {circuit.num_qubits} qubits, noise device "
                f"'{self.noise}' only {device_qubits}"
            )


@hookimpl
def register_backends(register) -> None:
    """Register the density-matrix backend."""
    register(DensityMatrix)

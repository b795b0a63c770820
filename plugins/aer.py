"""The `aer` backend: Qiskit Aer's shot simulator, noiseless or with a noise model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from kdbench import (
    Backend,
    CircuitCounters,
    CircuitPlan,
    KdbenchError,
    ParameterShift,
    PrimitiveSampler,
    bind_order,
    depolarizing_option,
    depolarizing_targets,
    draw_frequencies,
    fake_backend,
    hookimpl,
    measured,
    measured_qubits,
    option,
    smoothing_option,
    split_slots,
)

if TYPE_CHECKING:  # qiskit-aer is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit

# AerSimulator methods that sample shots of a measured circuit.
METHODS = (
    "automatic",
    "statevector",
    "density_matrix",
    "matrix_product_state",
    "stabilizer",
    "extended_stabilizer",
)
# Methods without `save_probabilities`: Aer samples their shots itself.
_NO_PROBABILITIES = frozenset({"extended_stabilizer"})


@dataclass(kw_only=True)
class Aer(Backend):
    """Qiskit Aer's sampler with shots and optional noise, gradients by parameter shift.

    The circuit is measured and transpiled once, then run as one Aer job per forward pass of a
    mini-batch and one per backward pass, which runs the shifted circuits of the
    parameter-shift rule (2 per parameterized rotation and sample). Each job is seeded from the
    compile seed, so a run repeats.

    Noiseless, Aer computes each circuit's outcome probabilities once (`save_probabilities` in
    place of the final measurements) and the shots are drawn from them: the same distribution
    as Aer's own measurement sampling, whose cost grows with the shots. With noise, or with
    `aer_shots`, `qiskit_aer.primitives.SamplerV2` samples every shot.

    `noise` names a fake IBM device of `qiskit_ibm_runtime.fake_provider`: the circuit is
    transpiled to its coupling map and basis gates and simulated with its noise model.
    `depolarizing` adds a depolarizing error of that probability to every 1- and 2-qubit gate
    of the transpiled circuit (on top of the device's errors, if any).
    """

    name: ClassVar[str] = "aer"

    shots: int = option(5000, help="shots per circuit", minimum=1)
    smoothing: float = smoothing_option()
    noise: str | None = option(
        None,
        help="fake IBM device whose noise and gates to use, e.g. FakeManilaV2 or fake_manila "
        "(default: noiseless)",
    )
    depolarizing: float | None = depolarizing_option()
    method: str = option("automatic", help="AerSimulator method", choices=METHODS)
    optimization_level: int = option(1, help="transpiler optimization level", minimum=0, maximum=3)
    aer_shots: bool = option(
        False,
        help="let Aer sample every shot even when noiseless (slower; by default the shots are "
        "drawn from the probabilities Aer computes)",
    )

    def check(self) -> None:
        """Reject an unknown noise device (bounds and choices hold from construction on)."""
        if self.noise is not None:
            fake_backend(self.noise, "noise")

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> AerCircuit:
        """Transpile `circuit` once and return its differentiable function.

        Raise OptionError for a bad option, KdbenchError for a circuit wider than the noise
        device or the simulator, ValueError for a gate the parameter-shift rule does not cover.
        """
        self.check()
        from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager
        from qiskit_aer import AerSimulator
        from qiskit_aer.noise import NoiseModel, depolarizing_error
        from qiskit_aer.primitives import SamplerV2

        slots = split_slots(circuit, inputs, weights)
        target = self._target()
        self._check_width(circuit, target)
        noise_model = NoiseModel.from_backend(target) if self.noise is not None else None
        manager = generate_preset_pass_manager(
            optimization_level=self.optimization_level, backend=target, seed_transpiler=seed
        )
        isa = manager.run(measured(slots.circuit))
        if self.depolarizing:
            noise_model = noise_model or NoiseModel()
            for name, qubits in depolarizing_targets(isa):
                # Composed with the device's error on those qubits, if there is one.
                error = depolarizing_error(self.depolarizing, len(qubits))
                noise_model.add_quantum_error(error, name, qubits, warnings=False)
        sampler: PrimitiveSampler | ProbabilitySampler
        if noise_model is None and not self.aer_shots and self.method not in _NO_PROBABILITIES:
            sampler = ProbabilitySampler(
                AerSimulator(method=self.method), isa, slots.parameters, shots=self.shots, seed=seed
            )
        else:
            backend_options: dict[str, Any] = {"method": self.method}
            if noise_model is not None:
                backend_options["noise_model"] = noise_model
            primitive = SamplerV2(
                default_shots=self.shots, options={"backend_options": backend_options}
            )
            rng = np.random.default_rng(seed)

            def reseed(count: int) -> None:
                # Each job draws fresh shots, yet the whole run repeats from the compile seed.
                # The sampler's own seed (set at construction, read at each run): a
                # `seed_simulator` run option clashes with it in qiskit-aer 0.17.
                primitive._seed = int(rng.integers(2**31))

            sampler = PrimitiveSampler(
                primitive, isa, slots.parameters, shots=self.shots, before_submit=reseed
            )
        return AerCircuit(
            slots, isa=isa, sampler=sampler, shots=self.shots, smoothing=self.smoothing
        )

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Refuse a circuit wider than the noise device or than the simulator method takes
        here (Aer sizes its statevector limit to this machine's memory), or whose outcome
        frequencies cannot fit in memory (`check_sampled_memory`)."""
        self._check_width(plan.circuit, self._target())
        self.check_sampled_memory(plan)

    def _target(self) -> Any:
        """What the circuit is transpiled for: the noise device, or the simulator."""
        if self.noise is not None:
            return fake_backend(self.noise, "noise")()
        from qiskit_aer import AerSimulator

        return AerSimulator(method=self.method)

    def _check_width(self, circuit: QuantumCircuit, target: Any) -> None:
        if circuit.num_qubits > target.num_qubits:
            where = (
                f"noise device '{self.noise}'"
                if self.noise is not None
                else f"AerSimulator (method '{self.method}') on this machine"
            )
            raise KdbenchError(
                f"aer: the circuit has {circuit.num_qubits} qubits, {where} only "
                f"{target.num_qubits}"
            )


class ProbabilitySampler:
    """A parameter-shift `Sampler`: Aer computes each circuit's probabilities, shots are drawn.

    The measured, transpiled circuit `isa` runs with its final measurements replaced by one
    `save_probabilities` over the measured qubits in clbit order, so that outcome k means the
    same bitstring as in Aer's counts. All rows of a call are one Aer job (`parameter_binds`);
    `shots` multinomial draws per row follow, from a generator seeded with `seed`.
    """

    def __init__(
        self,
        simulator: Any,
        isa: QuantumCircuit,
        slots: Sequence[Parameter],
        *,
        shots: int,
        seed: int,
    ):
        self.simulator = simulator
        self.shots = shots
        self.circuit = _probabilities_circuit(isa)
        self._generator = torch.Generator().manual_seed(seed)
        self._parameters = list(self.circuit.parameters)
        self._order, self.unused = bind_order(self.circuit, slots)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        rows = values.detach().to("cpu", torch.float64).numpy()[:, self._order]
        # A circuit without parameters runs once; its rows are all the same distribution.
        binds = [{p: rows[:, j] for j, p in enumerate(self._parameters)}] if self._order else None
        result = self.simulator.run(self.circuit, parameter_binds=binds, shots=1).result()
        runs = len(rows) if self._order else 1
        exact = np.stack([result.data(i)["probabilities"] for i in range(runs)])
        probs = torch.from_numpy(exact).expand(len(rows), -1)
        return draw_frequencies(probs, self.shots, self._generator)


def _probabilities_circuit(isa: QuantumCircuit) -> QuantumCircuit:
    """`isa` with its measurements replaced by `save_probabilities` of the measured qubits.

    Qubit q of the saved distribution is the qubit measured into clbit q: the transpiler may
    have moved the logical qubits.
    """
    import qiskit_aer.library  # noqa: F401  (adds QuantumCircuit.save_probabilities)

    out = isa.copy_empty_like()
    for instruction in isa.data:
        if instruction.operation.name not in ("measure", "barrier"):
            out.append(instruction)
    out.save_probabilities(measured_qubits(isa))
    return out


class AerCircuit(ParameterShift):
    """An `aer` circuit: `ParameterShift` over an Aer sampler.

    `sampler` is a `ProbabilitySampler` (noiseless) or a `PrimitiveSampler` over Aer's
    SamplerV2; `depth` counts the gate layers of the transpiled circuit (measurements excluded,
    as for the statevector backend) and `width` its qubits.
    """

    def __init__(
        self,
        slots: Any,
        *,
        isa: QuantumCircuit,
        sampler: PrimitiveSampler | ProbabilitySampler,
        shots: int,
        smoothing: float,
    ):
        super().__init__(
            slots,
            sampler,
            depth=CircuitCounters.gate_depth(isa),
            width=isa.num_qubits,
            shots_per_circuit=shots,
            unused=sampler.unused,
            smoothing=smoothing,
        )


@hookimpl
def register_backends(register) -> None:
    """Register the aer backend."""
    register(Aer)

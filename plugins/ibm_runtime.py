"""The `ibm-runtime` backend: IBM Quantum devices, or their fake twins simulated offline."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

import kdbench
from kdbench import Backend, KdbenchError, OptionError, hookimpl, option

if TYPE_CHECKING:  # qiskit-ibm-runtime takes seconds to import; it is imported on first use
    from qiskit.circuit import Parameter, QuantumCircuit

logger = logging.getLogger("kdbench.ibm_runtime")

_CHANNELS = ("ibm_quantum_platform", "ibm_cloud")
# Long runs of token characters are redacted from library messages, in case one echoes a key.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9_\-]{32,}")


def _redact(text: str) -> str:
    """`text` on one line, without the token of the environment or anything like a key."""
    token = os.environ.get("QISKIT_IBM_TOKEN")
    if token:
        text = text.replace(token, "***")
    line = " ".join(text.split())
    return _SECRET_LIKE.sub("***", line)[:300]


@dataclass(kw_only=True)
class IbmRuntime(Backend):
    """IBM Quantum through qiskit-ibm-runtime; fake devices run offline (local testing mode).

    The circuit is measured, transpiled once to the device's ISA and submitted with the
    client-side `qiskit_ibm_runtime.executor_sampler.Sampler`: one job per forward pass and one
    per backward pass of a mini-batch, whose gradients come from the parameter-shift rule
    (2 circuits per parameterized rotation and sample).

    A fake device name (FakeManilaV2, fake_manila, ...) runs in qiskit-ibm-runtime's local
    testing mode, on Aer with the device's noise, and needs no account; its execution mode is
    accepted but has no effect there. Any other name is a real device: it needs
    `confirm_hardware = true` and credentials (the QISKIT_IBM_TOKEN environment variable, or
    an account saved with `QiskitRuntimeService.save_account`).
    """

    name: ClassVar[str] = "ibm-runtime"

    backend: str = option(
        "fake_manila",
        help="device: a fake one (e.g. fake_manila, FakeBrisbane) runs offline; "
        "any other name (e.g. ibm_brisbane) is real hardware",
    )
    shots: int = option(5000, help="shots per circuit", minimum=1)
    smoothing: float = kdbench.smoothing_option()
    mode: Literal["job", "batch", "session"] = option(
        "batch", help="execution mode on real hardware (ignored by fake devices)"
    )
    optimization_level: int = option(1, help="transpiler optimization level", minimum=0, maximum=3)
    channel: str | None = option(
        None,
        help="IBM Quantum channel (default: QISKIT_IBM_CHANNEL or the account's)",
        choices=_CHANNELS,
    )
    instance: str | None = option(
        None, help="IBM Cloud instance CRN or name (default: the account's)"
    )
    confirm_hardware: bool = option(
        False, help="set to true to run on a real device (spends your IBM Quantum time)"
    )
    max_circuits: int | None = option(
        None,
        help="refuse to run more than this many circuits in all (default: no limit)",
        minimum=1,
    )

    @property
    def local(self) -> bool:
        """Whether `backend` names a fake device, simulated offline."""
        return kdbench.is_fake_name(self.backend)

    def check(self) -> None:
        """Reject an unknown fake device and real hardware without confirmation (the TOML loader
        checks types and bounds)."""
        if self.local:
            kdbench.fake_backend(self.backend, "backend")
        elif not self.confirm_hardware:
            raise OptionError(
                "confirm_hardware",
                f"backend '{self.backend}' is real IBM Quantum hardware, which spends your "
                "account's time; set confirm_hardware = true to run on it (or use a fake "
                "device such as fake_manila)",
            )

    def preflight(self) -> None:
        """On real hardware: open the account and find the device now, before anything is
        logged (missing credentials fail the run at once, not each cell)."""
        if not self.local:
            self._device()

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> RuntimeCircuit:
        """Transpile `circuit` once for the device and return its differentiable function.

        Raise KdbenchError for a refused option, missing credentials or an unavailable device.
        """
        try:
            self.check()
        except OptionError as exc:
            raise KdbenchError(f"ibm-runtime: {exc}") from None
        from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager
        from qiskit_ibm_runtime import Batch, Session

        try:  # the sampler recommended since 0.50, which deprecated SamplerV2
            from qiskit_ibm_runtime.executor_sampler import Sampler
        except ImportError:  # older releases
            from qiskit_ibm_runtime import SamplerV2 as Sampler

        device = kdbench.fake_backend(self.backend, "backend")() if self.local else self._device()
        self._check_width(circuit, device)
        slots = kdbench.split_slots(circuit, inputs, weights)
        manager = generate_preset_pass_manager(
            optimization_level=self.optimization_level, backend=device, seed_transpiler=seed
        )
        isa = manager.run(kdbench.measured(slots.circuit))
        # Local testing mode accepts a Batch or Session and runs at once, so that one path
        # serves both; on real hardware the Batch or Session opens here.
        mode: Any = device
        if self.mode == "batch":
            mode = Batch(backend=device)
        elif self.mode == "session":
            mode = Session(backend=device)
        primitive = Sampler(mode=mode)
        primitive.options.default_shots = self.shots
        compiled = RuntimeCircuit(
            slots,
            isa=isa,
            primitive=primitive,
            mode=mode if mode is not device else None,
            device_name=self.backend,
            local=self.local,
            shots=self.shots,
            smoothing=self.smoothing,
            max_circuits=self.max_circuits,
            seed=seed,
        )
        if not self.local:
            logger.warning(
                "ibm-runtime: real hardware %s (%s mode), %d shots per circuit; a mini-batch "
                "of B samples runs B circuits forward and up to %d·B backward",
                self.backend,
                self.mode,
                self.shots,
                2 * (len(slots) - len(compiled.sampler.unused)),
            )
        return compiled

    def check_circuit(self, plan: kdbench.CircuitPlan) -> None:
        """Refuse a circuit wider than the device (a real one is looked up again, through the
        account `preflight` opened), or whose outcome frequencies cannot fit in memory
        (`check_sampled_memory`)."""
        device = kdbench.fake_backend(self.backend, "backend")() if self.local else self._device()
        self._check_width(plan.circuit, device)
        self.check_sampled_memory(plan)

    def _check_width(self, circuit: QuantumCircuit, device: Any) -> None:
        if circuit.num_qubits > device.num_qubits:
            raise KdbenchError(
                f"ibm-runtime: the circuit has {circuit.num_qubits} qubits, device "
                f"'{self.backend}' only {device.num_qubits}"
            )

    def _device(self) -> Any:
        """The real IBM backend, through the user's credentials (never stored or shown)."""
        from qiskit_ibm_runtime import QiskitRuntimeService
        from qiskit_ibm_runtime.accounts import AccountNotFoundError

        # QiskitRuntimeService reads QISKIT_IBM_TOKEN or the saved account itself: the token
        # never passes through kdbench.
        try:
            service = QiskitRuntimeService(channel=self.channel, instance=self.instance)
        except AccountNotFoundError:
            raise KdbenchError(
                f"ibm-runtime: no IBM Quantum credentials for backend '{self.backend}': set "
                "the QISKIT_IBM_TOKEN environment variable (and QISKIT_IBM_INSTANCE), or save "
                "an account once with QiskitRuntimeService.save_account(token=..., "
                "instance=...)"
            ) from None
        except Exception as exc:
            raise KdbenchError(
                f"ibm-runtime: cannot open IBM Quantum ({type(exc).__name__}): {_redact(str(exc))}"
            ) from None
        try:
            return service.backend(self.backend)
        except Exception as exc:
            raise KdbenchError(
                f"ibm-runtime: backend '{self.backend}' is not available to this account "
                f"({type(exc).__name__}): {_redact(str(exc))}"
            ) from None


class RuntimeCircuit(kdbench.ParameterShift):
    """An `ibm-runtime` circuit: `ParameterShift` over the runtime sampler.

    `sampler.circuit` is the ISA circuit submitted and `sampler.primitive` the runtime
    sampler. `close()` closes the Batch or Session on real hardware (they also expire).
    """

    def __init__(
        self,
        slots: Any,
        *,
        isa: QuantumCircuit,
        primitive: Any,
        mode: Any,
        device_name: str,
        local: bool,
        shots: int,
        smoothing: float,
        max_circuits: int | None,
        seed: int,
    ):
        self.device_name, self.local, self.max_circuits, self.mode = (
            device_name,
            local,
            max_circuits,
            mode,
        )
        self._rng = np.random.default_rng(seed)
        sampler = kdbench.PrimitiveSampler(
            primitive, isa, slots.parameters, shots=shots, before_submit=self._before_submit
        )
        super().__init__(
            slots,
            sampler,
            depth=kdbench.CircuitCounters.gate_depth(isa),
            width=isa.num_qubits,
            shots_per_circuit=shots,
            unused=sampler.unused,
            smoothing=smoothing,
        )

    def _before_submit(self, count: int) -> None:
        if self.max_circuits is not None and self.executions + count > self.max_circuits:
            raise KdbenchError(
                f"ibm-runtime: running {count} more circuits would pass max_circuits = "
                f"{self.max_circuits} ({self.executions} run so far)"
            )
        primitive = self.sampler.primitive
        if self.local:
            # Each job draws fresh shots, yet the whole run repeats from the compile seed.
            primitive.options.simulator.seed_simulator = int(self._rng.integers(2**31))
            return
        logger.info(
            "ibm-runtime: submitting %d circuits x %d shots = %d shots to %s "
            "(%d circuits run so far)",
            count,
            self.shots_per_circuit,
            count * self.shots_per_circuit,
            self.device_name,
            self.executions,
        )

    def close(self) -> None:
        """Close the Batch or Session, if any; later calls fail."""
        if self.mode is not None:
            self.mode.close()


@hookimpl
def register_backends(register) -> None:
    """Register the ibm-runtime backend."""
    register(IbmRuntime)

"""What runs circuits: the compiled-circuit protocol, the plan, the backend and encoder bases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from kdbench.api.component import Component

if TYPE_CHECKING:  # torch and qiskit are slow to import (`kdbench --help`); annotations only
    import torch
    from qiskit.circuit import Parameter, QuantumCircuit


class CircuitFunction(Protocol):
    """A compiled circuit: differentiable map from parameter values to outcome probabilities.

    `executions` counts circuits run so far and `shots` the shots spent (0 when exact);
    `depth` and `width` describe the circuit as it runs (after transpilation, if any). One
    that holds something open (a hardware session) may define `close()`: the harness calls it
    once when the cell is done with the circuit, whether the cell finished or failed.

    One that defines `stacks_weights = True` also takes the weights of S models, [S,
    n_weights], with inputs [S·B, n_inputs] in S blocks of B rows (block s run with
    weights[s]): stacked training then runs S models' circuits in one call (`executions`
    counts all S·B).
    """

    executions: int
    shots: int
    depth: int
    width: int

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_qubits]."""
        ...


@dataclass(frozen=True)
class CircuitPlan:
    """A circuit a cell will compile, as `Backend.check_circuit` sees it before the run:
    what `compile` would get, and the most inputs one call of it will take."""

    circuit: QuantumCircuit
    inputs: Sequence[Parameter]
    weights: Sequence[Parameter]
    train_batch: int | None
    """The most inputs of a training call (gradients on); None on a backend that only tests
    (an `eval_backend`)."""
    eval_batch: int
    """The most inputs of a call without gradients (validation, test)."""


@dataclass(kw_only=True)
class Backend(Component):
    """Runs parameterized Qiskit circuits and returns measurement probabilities."""

    kind: ClassVar[str] = "backend"
    required: ClassVar[tuple[str, ...]] = ("compile",)

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> CircuitFunction:
        """Prepare `circuit` once; the result is called with a batch of parameter values."""
        raise NotImplementedError

    @property
    def stackable(self) -> bool:
        """Whether its compiled circuits are torch operations that draw nothing (exact
        simulation), so that `torch.func.vmap` can batch the seeds of an arm (`[train]
        stacked`). Default: no (sampled shots, a simulator or device outside torch)."""
        return False

    def preflight(self) -> None:
        """Check what options cannot show (credentials, a device) before a run logs anything;
        raise KdbenchError with a one-line reason. Called once per run and backend."""

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Raise KdbenchError with a one-line reason if this backend cannot run the planned
        circuit: wider than its device, a state too large for memory (`check_memory`,
        `check_sampled_memory`).

        Called before a run logs anything (after `preflight`), in place of `compile`, for
        every circuit a cell's student compiles; the student is built on the meta device and
        its circuits never run. Keep it cheap: transpile, allocate and connect nothing.
        Default: accept."""

    def check_memory(self, needed: int, what: str) -> None:
        """Raise KdbenchError if `needed` bytes, this backend's estimate for `what` (e.g.
        "a 30-qubit circuit training on batches of 16 (...)"), exceed this machine's memory
        (physical, or a smaller cgroup limit)."""
        from kdbench.memory import check_memory

        check_memory(needed, f"{self.name}: {what}", "use fewer qubits or smaller batches")

    def check_sampled_memory(self, plan: CircuitPlan) -> None:
        """`check_memory` for a backend of `kdbench.ParameterShift` over a sampler: each row
        of a sampler call comes back as 2**n float64 frequencies, held at least twice (the
        sampler's and the ones drawn), and a training batch's backward pass runs 2 circuits
        per input and shifted weight (the inputs' rotations too when the front trains, not
        counted). A lower estimate: what it refuses cannot run."""
        from kdbench.quantum import split_slots

        try:
            slots = split_slots(plan.circuit, plan.inputs, plan.weights)
        except ValueError:  # compile says why
            return
        rows, what = plan.eval_batch, f"tested on batches of {plan.eval_batch}"
        if plan.train_batch is not None:
            shifted = slots.shifted_in_training
            if 2 * shifted * plan.train_batch > rows:
                rows = 2 * shifted * plan.train_batch
                what = f"training on batches of {plan.train_batch}"
        n = plan.circuit.num_qubits
        self.check_memory(
            rows * 2 * 8 * 2**n,
            f"a {n}-qubit circuit {what} ({rows} rows of 2^{n} float64 outcome frequencies, twice)",
        )


@dataclass(kw_only=True)
class Encoder(Component):
    """Loads classical features into qubits: a circuit fragment and its parameter values."""

    kind: ClassVar[str] = "encoder"
    required: ClassVar[tuple[str, ...]] = ("num_features", "circuit")

    def num_features(self, qubits: int) -> int:
        """How many classical features the student's front must produce."""
        raise NotImplementedError

    def circuit(self, qubits: int) -> tuple[QuantumCircuit, list[Parameter]]:
        """The encoding fragment on `qubits` qubits and its input parameters, in order."""
        raise NotImplementedError

    def parameter_values(self, features: torch.Tensor) -> torch.Tensor:
        """Features [B, num_features] -> values of the fragment's parameters, differentiably."""
        return math.pi * features.tanh()

"""The student base class and the context the harness builds a student in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from kdbench.api.circuits import Backend, CircuitFunction, Encoder
from kdbench.api.component import Component
from kdbench.options import option

if TYPE_CHECKING:  # torch and qiskit are slow to import (`kdbench --help`); annotations only
    from qiskit.circuit import Parameter, QuantumCircuit
    from torch import nn


@dataclass(frozen=True)
class StudentContext:
    """What the harness hands a student when building it for one cell.

    A quantum student compiles its circuits through `compile`, never through `backend`
    directly: the harness then logs each circuit's counters and closes it (a hardware
    session, say) when the cell is done, whether it finished or failed.
    """

    num_classes: int
    input_shape: tuple[int, ...]  # one input's: (C, H, W) for images, (F,) for vectors
    backend: Backend
    encoder: Encoder | None
    seed: int
    circuits: list[CircuitFunction] = field(default_factory=list, compare=False, repr=False)
    """What `compile` returned so far, in order (read by the harness)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`input_shape` as (C, H, W), for a student that takes images only (a ValueError
        saying so otherwise)."""
        from kdbench.api.dataset import as_image

        return as_image(self.input_shape, "this student")

    def compile(
        self, circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter]
    ) -> CircuitFunction:
        """`circuit` compiled on the cell's backend with the cell's seed; call it with inputs
        [B, len(inputs)] and weights [len(weights)] for probabilities [B, 2**num_qubits]."""
        compiled = self.backend.compile(circuit, inputs, weights, seed=self.seed)
        self.circuits.append(compiled)
        return compiled


@dataclass(kw_only=True)
class Student(Component):
    """A small model that learns from labels and, optionally, from a teacher."""

    kind: ClassVar[str] = "student"
    required: ClassVar[tuple[str, ...]] = ("build",)

    encoder: str | None = option(None, help="encoder instance or plugin name")

    stackable: ClassVar[bool] = False
    """Whether the seeds of an arm may train as one batched model (`[train] stacked`): its
    module is torch operations that `torch.func.vmap` batches (no buffer updated in place
    while training, no Python branching on values, randomness only from dropout layers)."""

    def stacking_pays(self, batch_size: int) -> bool:
        """Whether training its seeds stacked beats one at a time at `batch_size` (asked
        for a stackable student by `stacked = "auto"`); default: yes."""
        return True

    def max_classes(self) -> int | None:
        """The most classes this student can read out (None: no limit)."""
        return None

    def readout_problem(self, num_classes: int) -> str | None:
        """Why this student should not be run on `num_classes` classes, or None (default).

        For a readout that ignores part of the model (a qubit whose measured value never
        decides the class): the matrix is refused before a run, with this reason, so that
        models are not compared as if the ignored part mattered."""
        return None

    def front_module(self, model: nn.Module) -> nn.Module | None:
        """The submodule of the built `model` that maps images to the features its circuit
        encodes (its classical front), for feature distillers; default: `model.front` if it
        has one."""
        return getattr(model, "front", None)

    def build(self, context: StudentContext) -> nn.Module:
        """Return a module mapping images [B, C, H, W] to class probabilities [B, num_classes].

        Circuits are compiled with `context.compile`; the module is trained by the harness
        (Adam on all its parameters) with gradients through the circuits."""
        raise NotImplementedError

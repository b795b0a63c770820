"""The classes a plugin subclasses: one per kind of component.

Each component is a keyword-only dataclass; its fields are the options a user sets in TOML
(declare them with `kdbench.option`). Register the class, not an instance, from the matching
hook in `kdbench.hookspecs`; the harness builds one instance per config table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from kdbench.errors import DataError, OptionError
from kdbench.options import check_limits, option

if TYPE_CHECKING:  # torch and qiskit are slow to import (`kdbench --help`); annotations only
    import torch
    from qiskit.circuit import Parameter, QuantumCircuit
    from torch import nn


def _inherited(cls: type, method: str) -> bool:
    """True if `cls` takes `method` unchanged from the base class of its kind."""
    base = next(b for b in reversed(cls.__mro__) if b.__dict__.get("kind") == cls.kind)
    return getattr(cls, method) is getattr(base, method)


@dataclass(kw_only=True)
class Component:
    """Base of every plugin component."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    """The methods a plugin's class must implement (its kind's base only declares them)."""
    title: ClassVar[str | None] = None
    """How reports name an instance: a format string over its options and `{instance}`
    (e.g. "Quantum, {qubits} qubit"); None: the instance name."""

    def __post_init__(self) -> None:
        # Bounds and choices hold however the component was made: from a config (where
        # `options.build` has checked them already, naming the file) or in code.
        check_limits(self)

    def check(self) -> None:
        """Reject option values that are valid one by one but not together (raise OptionError)."""

    @classmethod
    def definition_problem(cls) -> str | None:
        """What makes this class unusable as its kind (a required method it does not
        implement), or None; checked when it is registered, so that an author learns it from
        `kdbench plugins`, not from the first cell that calls the method."""
        missing = [m for m in cls.required if _inherited(cls, m)]
        if missing:
            return f"does not implement {', '.join(missing)} (required of a {cls.kind})"
        return None

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


MAX_SEED = 2**32 - 1
"""The largest seed kdbench accepts: what numpy's `np.random.seed` takes (torch takes up to
2**64 - 1), so that a seed works with whatever generator a plugin seeds with it."""


@dataclass(kw_only=True)
class Dataset(Component):
    """A labelled image data set, from which the harness draws class-balanced subsets."""

    kind: ClassVar[str] = "dataset"
    required: ClassVar[tuple[str, ...]] = ("load",)
    class_names: ClassVar[tuple[str, ...]]
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)

    classes: list[int] | None = option(
        None, help="labels to keep, in this order (default: all)", minimum=0
    )
    train_per_class: int = option(150, help="training images per class", minimum=1)
    val_per_class: int = option(
        50, help="validation images per class, held out of training", minimum=1
    )
    test_per_class: int | Literal["all"] = option(
        150, help='test images per class ("all": the whole test set)', minimum=1
    )
    order: Literal["random", "first"] = option(
        "random",
        help="which images of each class: random (drawn with the seed), or first (in the"
        " files' order: training the first train_per_class, validation the next"
        " val_per_class, test the first test_per_class; the released notebooks' split)",
        recorded_at_default=False,
    )
    sample_seed: int | None = option(
        None,
        help="seed of the per-class sampling (default: the cell's seed)",
        minimum=0,
        maximum=MAX_SEED,
    )

    def fetch(self, root: Path, report: Callable[[str], None] | None = None) -> None:
        """Put the data set's files under `root`, verified; raise DataError if impossible.

        `report` receives one-line progress messages for the user. A data set without a
        fetch step (its files come from elsewhere) keeps this default, which says so.
        """
        raise DataError(
            f"{getattr(self, 'name', type(self).__name__)}: this data set has no fetch step;"
            f" put its files under {root} yourself, where its plugin's documentation says"
        )

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (uint8 images [N, H, W] or [N, C, H, W], int64 labels [N]) of `split`
        ('train' or 'test'); the images are reshaped to `image_shape`."""
        raise NotImplementedError

    @classmethod
    def definition_problem(cls) -> str | None:
        """What makes this class unusable as a data set (a missing or malformed `class_names`
        or `image_shape`, no `load`), or None; checked when it is registered and when it is
        used."""
        problem = super().definition_problem()
        if problem:
            return problem
        names = getattr(cls, "class_names", None)
        if (
            not isinstance(names, (tuple, list))
            or len(names) < 2
            or not all(isinstance(n, str) for n in names)
        ):
            return (
                f"class_names must be a tuple of at least 2 strings (one per label), got {names!r}"
            )
        shape = getattr(cls, "image_shape", None)
        if (
            not isinstance(shape, tuple)
            or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
        ):
            return f"image_shape must be a tuple (C, H, W) of 3 positive integers, got {shape!r}"
        return None

    @property
    def selected_classes(self) -> list[int]:
        return (
            list(self.classes) if self.classes is not None else list(range(len(self.class_names)))
        )

    def check(self) -> None:
        classes, available = self.selected_classes, len(self.class_names)
        if len(set(classes)) != len(classes):
            raise OptionError("classes", f"repeats a label: {classes}")
        if len(classes) < 2:
            raise OptionError("classes", "needs at least 2 labels")
        outside = [c for c in classes if c >= available]
        if outside:
            raise OptionError("classes", f"{outside} not among the labels 0..{available - 1}")


@dataclass(kw_only=True)
class Teacher(Component):
    """A classical classifier, trained (or loaded) once and frozen while it teaches."""

    kind: ClassVar[str] = "teacher"
    # `build`, or for a teacher made of others `member_names` and `combine`: see
    # `definition_problem`.

    epochs: int = option(10, help="training epochs", minimum=1)
    lr: float = option(1e-3, help="Adam learning rate", minimum=0, exclusive_minimum=True)
    batch_size: int = option(64, help="training batch size", minimum=1)
    train_per_class: int | None = option(
        None, help="training images per class (default: every image of the class)", minimum=1
    )
    precision: Literal["float32", "bfloat16"] = option(
        "float32",
        help="training arithmetic: bfloat16 autocasts convolutions and matmuls (weights, loss "
        "and evaluation stay float32)",
        recorded_at_default=False,
    )
    schedule: Literal["constant", "one-cycle"] = option(
        "constant",
        help="learning rate: constant, or one-cycle (up to lr over the first quarter of the "
        "steps, then cosine down to ~0)",
        recorded_at_default=False,
    )
    checkpoint: str | None = option(
        None, help="load this state dict (torch.save) instead of training"
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto: CUDA when present")
    seed: int | None = option(
        None,
        help="train with this seed (default: the cell's), to share one teacher across seeds",
        minimum=0,
        maximum=MAX_SEED,
    )
    shuffled: bool = option(
        False, help="permute its outputs across training images: a control for what KD adds"
    )
    within_class: bool = option(
        False,
        help="with shuffled: permute only among images of the same class (the label"
        " information kept, the per-image knowledge removed)",
        recorded_at_default=False,
    )

    class_prior: bool = option(
        False,
        help="replace its outputs on each image by its mean distribution over the images of"
        " that class: a control that keeps what the labels and the teacher's class confusions"
        " say and removes all per-image knowledge",
        recorded_at_default=False,
    )
    disjoint: bool = option(
        False,
        help="train on none of the images of the student's training and validation split (of"
        " the seed it is trained with): its outputs on them are then predictions, not"
        " memories. With a fixed `seed`, set the data set's `sample_seed` too, or leave"
        " `seed` unset (one teacher per seed)",
        recorded_at_default=False,
    )

    def check(self) -> None:
        """Refuse within_class without shuffled, and shuffled with class_prior (subclasses
        extend, calling super)."""
        if self.within_class and not self.shuffled:
            raise OptionError("within_class", "needs shuffled = true")
        if self.class_prior and self.shuffled:
            raise OptionError("class_prior", "is a control of its own; drop shuffled")

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        """Return an untrained network mapping images [B, C, H, W] to logits [B, num_classes]."""
        raise NotImplementedError

    def member_names(self) -> list[str]:
        """Teacher instances this teacher is made of (it combines them); [] for one of its own.

        kdbench prepares each member (trained or cached once) and passes them to `combine`.
        """
        return []

    def combine(self, members: list[nn.Module]) -> nn.Module:
        """Return a module mapping images to logits from the prepared, frozen `members`."""
        raise NotImplementedError

    @classmethod
    def definition_problem(cls) -> str | None:
        """A teacher trains a network of its own (`build`) or combines others
        (`member_names` and `combine`)."""
        composite = not _inherited(cls, "member_names") or not _inherited(cls, "combine")
        if composite:
            missing = [m for m in ("member_names", "combine") if _inherited(cls, m)]
        else:
            missing = ["build"] if _inherited(cls, "build") else []
        if missing:
            return (
                f"does not implement {', '.join(missing)} (a teacher implements build, or"
                " member_names and combine)"
            )
        return None

    def classifier_layer(self, model: nn.Module) -> nn.Module | None:
        """The layer of the built `model` whose input is the teacher's penultimate features,
        for feature distillers; default: its last `nn.Linear`, and none for a composite
        teacher (its members' features are not one vector)."""
        from torch import nn

        if self.member_names():
            return None
        return next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)


class CircuitFunction(Protocol):
    """A compiled circuit: differentiable map from parameter values to outcome probabilities.

    `executions` counts circuits run so far and `shots` the shots spent (0 when exact);
    `depth` and `width` describe the circuit as it runs (after transpilation, if any). One
    that holds something open (a hardware session) may define `close()`: the harness calls it
    once when the cell is done with the circuit, whether the cell finished or failed.
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


@dataclass(frozen=True)
class StudentContext:
    """What the harness hands a student when building it for one cell.

    A quantum student compiles its circuits through `compile`, never through `backend`
    directly: the harness then logs each circuit's counters and closes it (a hardware
    session, say) when the cell is done, whether it finished or failed.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    backend: Backend
    encoder: Encoder | None
    seed: int
    circuits: list[CircuitFunction] = field(default_factory=list, compare=False, repr=False)
    """What `compile` returned so far, in order (read by the harness)."""

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


@dataclass(frozen=True)
class DistillBatch:
    """What a distiller sees of one batch: the student's outputs, the labels, the teacher's.

    kdbench's students return class probabilities; their logits are taken to be log p
    (paper §3.4), so `log_probs` is both. Everything is on one device; only the student's
    side carries gradients.
    """

    log_probs: torch.Tensor
    """[B, C] the log of the student's class probabilities (its logits)."""
    labels: torch.Tensor
    """[B] int64 class indices."""
    teacher_logits: torch.Tensor | None
    """[B, C] the frozen teacher's logits; None for a distiller that `uses_teacher = False`."""
    student_features: torch.Tensor | None = None
    """[B, F_s] the output of the student's front (`Student.front_module`), with gradients;
    only for a distiller that `uses_features`."""
    teacher_features: torch.Tensor | None = None
    """[B, F_t] the teacher's penultimate features, the input of its `classifier_layer`;
    only for a distiller that `uses_features`."""
    learned: nn.Module | None = None
    """What the distiller's `build` returned for this cell (e.g. a projection), trained with
    the student."""

    @property
    def probs(self) -> torch.Tensor:
        """[B, C] the student's class probabilities."""
        return self.log_probs.exp()

    def cross_entropy(self) -> torch.Tensor:
        """The mean cross-entropy with the labels, CE(s, y)."""
        import torch.nn.functional as F

        return F.nll_loss(self.log_probs, self.labels)

    def teacher(self) -> torch.Tensor:
        """The teacher's logits; raises if this batch has none (a teacher-free distiller)."""
        if self.teacher_logits is None:
            raise ValueError("this batch has no teacher logits")
        return self.teacher_logits


@dataclass(frozen=True)
class Loss:
    """A distiller's training loss and its named terms (each logged per epoch as
    `train_<name>` and `val_<name>`; kdbench logs the plain cross-entropy as `ce` itself)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(kw_only=True)
class Distiller(Component):
    """A distillation method: the loss a student trains on, from its outputs and a teacher's.

    The harness calls `loss` on every training batch (gradients on) and on every validation
    batch (off); a cell without a teacher trains on the plain cross-entropy and never calls
    it. A method that needs no teacher (label smoothing) sets `uses_teacher = False`: it then
    runs once per student, not once per teacher, and is paired with the same baseline.
    """

    kind: ClassVar[str] = "distiller"
    required: ClassVar[tuple[str, ...]] = ("loss",)
    uses_teacher: ClassVar[bool] = True
    uses_features: ClassVar[bool] = False
    """True: the batch carries the student's and the teacher's features (a config whose
    teacher or student exposes none is refused before anything runs)."""

    def build(self, student_features: int, teacher_features: int) -> nn.Module | None:
        """Modules of the method's own that train with the student (a feature distiller's
        projection between the two feature widths), made once per cell; they reach `loss` as
        `batch.learned`. Called only when `uses_features`; default: none."""
        return None

    def loss(self, batch: DistillBatch) -> Loss:
        """The training loss of one batch (a scalar tensor) and its named parts."""
        raise NotImplementedError


KINDS: dict[str, type[Component]] = {
    "datasets": Dataset,
    "teachers": Teacher,
    "students": Student,
    "encoders": Encoder,
    "backends": Backend,
    "distillers": Distiller,
}

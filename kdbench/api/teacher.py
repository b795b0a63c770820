"""The teacher base class: a classical classifier, trained or loaded once, frozen as it teaches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from kdbench.api.component import MAX_SEED, Component, _inherited
from kdbench.errors import OptionError
from kdbench.options import option

if TYPE_CHECKING:  # torch is slow to import (`kdbench --help`); annotations only
    import torch
    from torch import nn


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

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        """Return an untrained network mapping inputs [B, *input_shape] to logits
        [B, num_classes]; a network for images only refuses other shapes with
        `kdbench.as_image(input_shape, "...")` (checked before anything runs)."""
        raise NotImplementedError

    def fit(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> None:
        """Train the built `model` by the teacher's own means (scikit-learn's `fit`, say) on
        its training pool, `inputs` [N, *input_shape] and `labels` [N], instead of kdbench's
        Adam on the cross-entropy (the default: a teacher that does not implement `fit`).

        Such a model's state is not cached, only its outputs (by input): kdbench calls `fit`
        when the model is first asked for an input whose output is not cached yet, in each
        process, so `fit` must give the same model for the same `seed` and data.
        """
        raise NotImplementedError

    @classmethod
    def fits_itself(cls) -> bool:
        """Whether the teacher implements `fit`: kdbench then neither trains nor caches its
        model, and caches its outputs."""
        return not _inherited(cls, "fit")

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

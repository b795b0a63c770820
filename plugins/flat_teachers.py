"""Teachers for inputs of any shape, flattened: a multilayer perceptron, and any scikit-learn
classifier that gives probabilities (registered with the other teachers, in teachers.py)."""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from kdbench import OptionError, Teacher, did_you_mean, one_of, option

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


@dataclass(kw_only=True)
class Mlp(Teacher):
    """A multilayer perceptron: the input flattened, hidden layers (linear, activation), logits.

    For feature vectors, or any input read as one; its penultimate features (for feature
    distillers) are the last hidden layer's. The defaults suit small tabular data: a few
    hundred standardised vectors, which need more, larger steps than the image teachers' 10
    epochs at 1e-3.
    """

    name: ClassVar[str] = "mlp"
    title: ClassVar[str | None] = "MLP"

    hidden: list[int] = option([64, 64], help="width of each hidden layer", minimum=1)
    activation: Literal["relu", "tanh", "gelu", "silu", "sigmoid"] = option(
        "relu", help="the nonlinearity after each hidden layer"
    )
    epochs: int = option(100, help="training epochs", minimum=1)
    lr: float = option(1e-2, help="Adam learning rate", minimum=0, exclusive_minimum=True)
    batch_size: int = option(32, help="training batch size", minimum=1)

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in self.hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[self.activation]()]
            width = size
        return nn.Sequential(*layers, nn.Linear(width, num_classes))


DEFAULT_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"


@dataclass(kw_only=True)
class Sklearn(Teacher):
    """Any scikit-learn classifier with `predict_proba`, fitted on the flattened inputs.

    Named by import path (`estimator`) and built with `params`; where it has a
    `random_state`, that is the teacher's seed. It is fitted by scikit-learn, on the CPU, not
    trained by torch (the options of torch training do not apply), and has no penultimate
    features for a distiller of features. Its outputs, what distillers read as the teacher's
    logits, are the log-probabilities log(max(p, tiny)) (tiny: float32's smallest normal
    number), so that softmax(logits / T) is p^(1/T) renormalised. Its outputs are cached, not
    the fitted model: it is fitted again (the same model) only for inputs it has not seen.
    """

    name: ClassVar[str] = "sklearn"
    title: ClassVar[str | None] = "scikit-learn"

    estimator: str = option(
        DEFAULT_ESTIMATOR, help="import path of a scikit-learn classifier with predict_proba"
    )
    params: dict[str, Any] = option(
        {},
        help="the estimator's constructor arguments, e.g. {max_iter = 200} (random_state is"
        " the teacher's seed)",
    )
    # Fitted by scikit-learn on the CPU: the options of torch training are not options here.
    epochs: ClassVar[int] = 1  # type: ignore[misc]  # one fit (the progress display's step)
    lr: ClassVar[float] = Teacher.lr  # type: ignore[misc]
    batch_size: ClassVar[int] = Teacher.batch_size  # type: ignore[misc]
    precision: ClassVar[str] = "float32"  # type: ignore[misc]
    schedule: ClassVar[str] = "constant"  # type: ignore[misc]
    checkpoint: ClassVar[str | None] = None  # type: ignore[misc]
    device: ClassVar[str] = "cpu"  # type: ignore[misc]

    def check(self) -> None:
        """Refuse an estimator that cannot be imported, is no scikit-learn estimator or gives
        no probabilities, and parameters it does not take (or values it refuses)."""
        super().check()
        self.make_estimator()

    def make_estimator(self) -> Any:
        """A new, unfitted estimator, `estimator(**params)`; OptionError for what is wrong."""
        cls = estimator_class(self.estimator)
        if "random_state" in self.params:
            raise OptionError("params", "random_state is the teacher's seed: set `seed` instead")
        parameters = inspect.signature(cls).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        unknown = sorted(set(self.params) - set(parameters))
        if unknown and not takes_any:
            raise OptionError(
                "params",
                f"{cls.__name__} takes no parameter '{unknown[0]}'"
                f"{did_you_mean(unknown[0], parameters)}; it takes:"
                f" {one_of(set(parameters) - {'random_state'})}",
            )
        try:
            estimator = cls(**self.params)
        except TypeError as exc:  # a required argument missing
            raise OptionError("params", f"{cls.__name__}: {exc}") from None
        # scikit-learn checks values only when fitting; its own check, early (since 1.2).
        validate = getattr(estimator, "_validate_params", None)
        if validate is not None:
            try:
                validate()
            except (TypeError, ValueError) as exc:  # InvalidParameterError is both
                raise OptionError("params", str(exc).strip().splitlines()[0]) from None
        if not hasattr(estimator, "predict_proba"):
            raise OptionError(
                "estimator",
                f"{self.estimator} has no predict_proba (some classifiers need a parameter"
                " for it, e.g. SVC's probability = true); name a classifier that gives"
                f" probabilities, e.g. {DEFAULT_ESTIMATOR}",
            )
        return estimator

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return EstimatorModule(self.make_estimator(), num_classes)

    def fit(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, seed: int
    ) -> None:
        """scikit-learn's `fit` on the flattened inputs, its random_state (if any) `seed`, on
        as many threads as torch has (a cell's: OpenMP's default, every core, fought the
        other cells for them: 27 s instead of 0.4 s seen on 2 busy cores)."""
        from threadpoolctl import threadpool_limits

        assert isinstance(model, EstimatorModule)
        if "random_state" in model.estimator.get_params():
            model.estimator.set_params(random_state=seed)
        with threadpool_limits(torch.get_num_threads()):
            model.estimator.fit(inputs.flatten(1).numpy(), labels.numpy())


class EstimatorModule(nn.Module):
    """A fitted scikit-learn classifier as a module: inputs [B, ...] → log(max(p, tiny))
    [B, num_classes], computed on the CPU (no gradients), returned on the inputs' device."""

    def __init__(self, estimator: Any, num_classes: int):
        super().__init__()
        self.estimator = estimator
        self.num_classes = num_classes

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        probs = self.estimator.predict_proba(inputs.detach().cpu().flatten(1).numpy())
        full = torch.zeros(len(inputs), self.num_classes, dtype=torch.float64)
        # Its columns are the classes it saw (`classes_`): one absent from the training pool
        # has probability 0.
        full[:, torch.as_tensor(self.estimator.classes_)] = torch.as_tensor(probs).double()
        log_probs = full.clamp_min(torch.finfo(torch.float32).tiny).log()
        return log_probs.float().to(inputs.device)


def estimator_class(path: str) -> type:
    """The scikit-learn estimator class at import path `path`; OptionError if there is none."""
    from sklearn.base import BaseEstimator

    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise OptionError(
            "estimator", f"'{path}' is not an import path (module.Class), e.g. {DEFAULT_ESTIMATOR}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # not found, or failing as it is imported
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OptionError(
            "estimator",
            f"cannot import '{module_name}' ({reason}); give a classifier's import path, e.g."
            f" {DEFAULT_ESTIMATOR}",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        public = [name for name in dir(module) if not name.startswith("_")]
        raise OptionError(
            "estimator",
            f"module '{module_name}' has no '{class_name}'{did_you_mean(class_name, public)}",
        )
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise OptionError("estimator", f"'{path}' is not a scikit-learn estimator class")
    return cls

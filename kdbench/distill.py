"""One training loop for every model: a distiller's loss (or the cross-entropy), Adam, and
selection on validation."""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.torch_version import TorchVersion

from kdbench import bfloat16
from kdbench.api import Distiller
from kdbench.losses import Hint, training_loss


@dataclass
class Split:
    """Images, labels and (for distillation) the frozen teacher's logits on the same images."""

    x: torch.Tensor
    y: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None  # for a distiller that `uses_features`


@dataclass
class EpochMetrics:
    """One epoch: the mean loss, its parts and the accuracy on the training and validation
    splits (keys "loss", "ce", the distiller's parts, "accuracy"), and on the test split
    where selection looks at it (`fit`'s `test`)."""

    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    seconds: float
    test: dict[str, float] = field(default_factory=dict)

    @property
    def val_accuracy(self) -> float:
        return self.val["accuracy"]

    def logged(self) -> dict[str, float]:
        """As MLflow metrics: train_loss, train_ce, ..., val_accuracy, seconds."""
        return (
            {f"train_{k}": v for k, v in self.train.items()}
            | {f"val_{k}": v for k, v in self.val.items()}
            | {f"epoch_test_{k}": v for k, v in self.test.items()}
            | {"seconds": self.seconds}
        )


@dataclass
class Evaluation:
    loss: float
    parts: dict[str, float]
    accuracy: float
    confusion: torch.Tensor  # [true class, predicted class] counts

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, **self.parts, "accuracy": self.accuracy}


# A run "collapsed" when its validation accuracy, after having risen this far above chance,
# fell back to within COLLAPSE_MARGIN of it: an optimisation failure that selection on
# validation hides (it keeps an earlier epoch) and the report counts.
LEARNED_MARGIN = 0.2
COLLAPSE_MARGIN = 0.05


def collapsed(val_accuracies: Sequence[float], num_classes: int) -> bool:
    """Whether validation accuracy fell back to chance after having been above it."""
    chance = 1 / num_classes
    learned = False
    for accuracy in val_accuracies:
        learned = learned or accuracy >= chance + LEARNED_MARGIN
        if learned and accuracy <= chance + COLLAPSE_MARGIN:
            return True
    return False


@dataclass
class FitResult:
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0  # the epoch kept
    val_epoch: int = 0  # the epoch validation selects (the one kept, unless selected on test)
    # The best epoch's weights, serialized: in memory up to SPILL_BYTES, on disk beyond, so
    # that a 94.7 M-parameter teacher does not hold a second 380 MB copy while it trains.
    # It lives as long as the result (closed, and deleted, when the result is collected).
    _best: tempfile.SpooledTemporaryFile = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES),  # noqa: SIM115
        repr=False,
    )
    # The best validation (accuracy, -cross-entropy) and test accuracy so far.
    _best_val: tuple[float, float] = field(default=(-math.inf, -math.inf), repr=False)
    _best_test: float = field(default=-math.inf, repr=False)

    @property
    def best_state(self) -> dict[str, torch.Tensor]:
        """The weights of the best epoch."""
        self._best.seek(0)
        return torch.load(self._best, weights_only=True)

    def keep(self, epoch: int, model: nn.Module) -> None:
        """Keep `model`'s weights as the best epoch's."""
        self.best_epoch = epoch
        self._best.seek(0)
        self._best.truncate()
        torch.save(model.state_dict(), self._best)

    def close_epoch(
        self, metrics: EpochMetrics, val: Evaluation, test: Evaluation | None, model: nn.Module
    ) -> None:
        """Record an epoch and keep `model`'s weights if selection prefers them: the best
        validation accuracy, ties to the lower cross-entropy (or, given `test`, the best test
        accuracy, the first of equals)."""
        self.history.append(metrics)
        if (val.accuracy, -val.parts["ce"]) > self._best_val:
            self._best_val = (val.accuracy, -val.parts["ce"])
            self.val_epoch = metrics.epoch
            if test is None:
                self.keep(metrics.epoch, model)
        if test is not None and test.accuracy > self._best_test:
            self._best_test = test.accuracy
            self.keep(metrics.epoch, model)

    def state(self) -> dict:
        """Everything the result holds, as `torch.load(weights_only=True)` reads it back
        (`restored`)."""
        return {
            "history": [asdict(m) for m in self.history],
            "best_epoch": self.best_epoch,
            "val_epoch": self.val_epoch,
            "best_val": list(self._best_val),
            "best_test": self._best_test,
            "best_state": self.best_state if self.best_epoch else None,
        }

    @classmethod
    def restored(cls, state: dict) -> FitResult:
        """The result whose `state()` this is."""
        result = cls([EpochMetrics(**m) for m in state["history"]])
        result.best_epoch, result.val_epoch = state["best_epoch"], state["val_epoch"]
        result._best_val, result._best_test = tuple(state["best_val"]), state["best_test"]
        if state["best_state"] is not None:
            torch.save(state["best_state"], result._best)
        return result


SPILL_BYTES = 64 * 2**20


# Raised when a snapshot's contents change, so that an older one is not misread.
SNAPSHOT_VERSION = 1


def _write_snapshot(path: Path, epoch: int, result: FitResult, state: dict) -> None:
    """Training's state after `epoch`."""
    saved = {
        "version": SNAPSHOT_VERSION,
        "epoch": epoch,
        "result": result.state(),
        "rng": torch.get_rng_state(),
        # Dropout on a GPU draws from its own generators.
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "order": state["order"].get_state(),
    }
    for name in ("model", "optimizer", "scheduler", "hint"):
        saved[name] = None if state[name] is None else state[name].state_dict()
    save_atomically(saved, path)


def save_atomically(state: dict, target: Path) -> None:
    """torch.save to `target` so that no reader ever sees half a file."""
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(state, tmp.name)
    os.replace(tmp.name, target)


def _read_snapshot(path: Path) -> dict | None:
    """The snapshot at `path`; None where there is none, or none this version reads."""
    try:
        saved = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None  # none, or unreadable: training from the start is always right
    return saved if isinstance(saved, dict) and saved.get("version") == SNAPSHOT_VERSION else None


def _resume(saved: dict, state: dict) -> tuple[FitResult, int]:
    """Put training's state back as `saved` has it; the result so far and its last epoch."""
    for name in ("model", "optimizer", "scheduler", "hint"):
        if state[name] is not None:
            state[name].load_state_dict(saved[name])
    state["order"].set_state(saved["order"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return FitResult.restored(saved["result"]), saved["epoch"]


def evaluate(
    model: nn.Module,
    log_probs: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    split: Split,
    num_classes: int,
    distiller: Distiller | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    hint: Hint | None = None,
) -> Evaluation:
    """Loss parts, accuracy and confusion matrix of `model` on `split`, without gradients.

    Without a distiller (the test split, a student alone) the loss is the cross-entropy.
    """
    model.eval().to(memory_format=torch.channels_last)
    if hint is not None:
        hint.train(False)
    with torch.no_grad():
        outputs = (
            log_probs(model, split.x[start : start + batch_size].to(device)).cpu()
            for start in range(0, len(split.y), batch_size)
        )  # computed one batch at a time, as `tally` takes them (a hint reads each forward)
        return tally(outputs, split, num_classes, distiller, batch_size, hint)


def tally(
    outputs: Iterable[torch.Tensor],
    split: Split,
    num_classes: int,
    distiller: Distiller | None = None,
    batch_size: int = 512,
    hint: Hint | None = None,
) -> Evaluation:
    """`evaluate`'s figures from a model's log-probabilities on `split`, batch after batch of
    `batch_size` rows."""
    totals = _Means(weight_in_float32=True)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for start, out in zip(range(0, len(split.y), batch_size), outputs, strict=True):
        sl = slice(start, start + batch_size)
        t = None if split.teacher_logits is None else split.teacher_logits[sl]
        f = None if split.teacher_features is None else split.teacher_features[sl]
        totals.add(len(out), *training_loss(out, split.y[sl], t, distiller, f, hint))
        index = split.y[sl] * num_classes + out.argmax(1)
        confusion += torch.bincount(index, minlength=num_classes**2).view_as(confusion)
    means = totals.means(len(split.y))
    accuracy = confusion.diag().sum().item() / max(len(split.y), 1)
    return Evaluation(means.pop("loss"), means, accuracy, confusion)


class _Means:
    """Batch-size-weighted sums of a loss and its parts, in float64.

    Each batch's terms pass through float32 as they always have in kdbench, weighted before
    (training) or after (evaluation): logged losses stay digit-identical to earlier versions.
    """

    def __init__(self, weight_in_float32: bool = False) -> None:
        self.weight_in_float32 = weight_in_float32
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None

    def add(
        self, n: int, total: torch.Tensor, parts: dict[str, torch.Tensor], *extra: float
    ) -> None:
        if self.sums is None:
            self.names = ["loss", *parts]
            self.sums = torch.zeros(len(self.names) + len(extra), dtype=torch.float64)
        values = [total.item(), *(parts[name].item() for name in self.names[1:])]
        if self.weight_in_float32:
            self.sums += n * torch.tensor(values + list(extra))
        else:
            self.sums += torch.tensor([n * v for v in values] + list(extra))

    def means(self, count: int, *extra: str) -> dict[str, float]:
        if self.sums is None:
            return dict.fromkeys(["loss", "ce", *extra], math.nan)
        return dict(zip([*self.names, *extra], (self.sums / max(count, 1)).tolist(), strict=True))


def adam(parameters: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel where torch has one (real tensors; on the CPU since 2.4).

    The unfused step loops over the parameters tensor by tensor: for a teacher's 94.7 M
    parameters on the CPU it took ~0.95 s against ~0.08 s fused, as long as the forward and
    backward passes together. Same algorithm either way.
    """
    parameters = list(parameters)
    fusable = all(p.is_floating_point() for p in parameters) and (
        TorchVersion(torch.__version__) >= "2.4" or all(p.is_cuda for p in parameters)
    )
    return torch.optim.Adam(parameters, lr=lr, fused=fusable or None)


def batch_count(samples: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of a single image is dropped (BatchNorm cannot train
    on one)."""
    batches = math.ceil(samples / batch_size)
    return batches - 1 if batches > 1 and samples % batch_size == 1 else batches


def fit(
    model: nn.Module,
    log_probs: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    train: Split,
    val: Split,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    distiller: Distiller | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    hint: Hint | None = None,
    precision: str = "float32",
    schedule: str = "constant",
    test: Split | None = None,
    checkpoints: Collection[int] = (),
    on_checkpoint: Callable[[int, FitResult], None] | None = None,
    snapshot: Path | None = None,
) -> FitResult:
    """Adam on the distiller's loss (the cross-entropy without one); keep the weights of the
    epoch with the best validation accuracy.

    Ties go to the lower validation cross-entropy. The test set is never looked at, but
    with `test`: then it is evaluated every epoch and the epoch with the best test accuracy
    is kept (the first of equals), as the released notebooks' "best accuracy" did. That is
    selection on test, optimistic by construction, for reproducing them only; `val_epoch`
    still says which epoch validation would have kept.
    `precision="bfloat16"` autocasts the forward pass (weights, loss and validation stay
    float32; kdbench.bfloat16 says how on a CPU without bfloat16 arithmetic);
    `schedule="one-cycle"` warms the learning rate up to `lr` over the first quarter of the
    steps, then anneals it (cosine), stepping once per batch.
    At the end of each epoch in `checkpoints`, `on_checkpoint(epoch, result)` sees what
    training had kept so far (`result.best_state`, `result.val_epoch`): with the constant
    schedule, exactly what a run of that many epochs would have ended with.
    With `snapshot`, the state of training (weights, optimizer, schedule, batch order, the
    global RNG that dropout draws from, the result so far) is saved there at the end of each
    epoch, and a training that finds a readable one goes on after its epoch, to the very
    weights a training never stopped ends with; the epochs it replays reach `on_epoch` again.
    The caller removes the file once it has kept what training returned.
    """
    if snapshot is not None and checkpoints:
        raise ValueError("a training that checkpoints is not resumed from a snapshot")
    # Convolutions and max-pools of small images train ~1.5x faster on the CPU with
    # channels-last weights (the 4-D ones; nothing else changes).
    model.to(memory_format=torch.channels_last)
    optimizer = adam([*model.parameters(), *(hint.parameters() if hint else [])], lr)
    order = torch.Generator().manual_seed(seed)
    steps = batch_count(len(train.y), batch_size)
    scheduler = None
    if schedule == "one-cycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, lr, total_steps=epochs * steps, pct_start=0.25
        )
    autocast = bfloat16.autocast(device, enabled=precision == "bfloat16")
    result, done = FitResult(), 0
    state = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "hint": hint,
        "order": order,
    }
    if snapshot is not None and (saved := _read_snapshot(snapshot)) is not None:
        result, done = _resume(saved, state)
        if on_epoch is not None:
            for metrics in result.history:
                on_epoch(metrics)
    for epoch in range(done + 1, epochs + 1):
        started = time.perf_counter()
        model.train()
        if hint is not None:
            hint.train(True)
        sums = _Means()
        batches = torch.randperm(len(train.y), generator=order).split(batch_size)[:steps]
        for batch in batches:
            y = train.y[batch].to(device)
            with autocast:
                out = log_probs(model, train.x[batch].to(device))
            if out.dtype == torch.bfloat16:  # autocast: the loss is taken in float32
                out = out.float()
            t = None if train.teacher_logits is None else train.teacher_logits[batch].to(device)
            f = None if train.teacher_features is None else train.teacher_features[batch]
            total, parts = training_loss(out, y, t, distiller, f, hint)
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"the training loss became {total.item()} in epoch {epoch}"
                )
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            sums.add(len(batch), total, parts, (out.argmax(1) == y).sum().item())
        v = evaluate(model, log_probs, val, num_classes, distiller, device=device, hint=hint)
        tested = (
            None if test is None else evaluate(model, log_probs, test, num_classes, device=device)
        )
        metrics = EpochMetrics(
            epoch,
            sums.means(len(train.y), "accuracy"),
            v.metrics(),
            time.perf_counter() - started,
            {} if tested is None else tested.metrics(),
        )
        result.close_epoch(metrics, v, tested, model)
        if snapshot is not None:
            _write_snapshot(snapshot, epoch, result, state)
        if on_epoch is not None:
            on_epoch(metrics)
        if on_checkpoint is not None and epoch in checkpoints:
            on_checkpoint(epoch, result)
    del optimizer, scheduler  # their state (twice the weights) before the best weights load
    model.zero_grad(set_to_none=True)
    model.load_state_dict(result.best_state)
    return result

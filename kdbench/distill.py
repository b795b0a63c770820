"""The knowledge-distillation loss (paper Eq. 3-6) and one training loop for every model."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.torch_version import TorchVersion

from kdbench.config import DistillConfig

# Probabilities that are exactly 0 (a shot-sampled outcome never seen) must not give -inf.
MIN_PROBABILITY = 1e-12


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor


def kd_loss(
    student_log_probs: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    distill: DistillConfig | None,
) -> LossParts:
    """ce_weight·CE(s, y) + kd_weight·KL(σ(t/τ) ‖ σ(s/τ)), the student's logits being log p.

    Without a teacher the loss is the plain cross-entropy.
    """
    ce = F.nll_loss(student_log_probs, labels)
    if teacher_logits is None or distill is None:
        return LossParts(ce, ce, torch.zeros_like(ce))
    tau = distill.temperature
    soft_student = F.log_softmax(student_log_probs / tau, dim=1)
    soft_teacher = F.log_softmax(teacher_logits / tau, dim=1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    if distill.t2_scaling:
        kd = kd * tau**2
    return LossParts(distill.ce_weight * ce + distill.kd_weight * kd, ce, kd)


def probabilities_to_log(probs: torch.Tensor) -> torch.Tensor:
    """The logits of a probability output: log p (paper §3.4)."""
    return torch.log(probs.clamp_min(MIN_PROBABILITY))


def logits_to_log(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1)


@dataclass
class Split:
    """Images, labels and (for distillation) the frozen teacher's logits on the same images."""

    x: torch.Tensor
    y: torch.Tensor
    teacher_logits: torch.Tensor | None = None


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_ce: float
    train_kd: float
    train_accuracy: float
    val_loss: float
    val_ce: float
    val_kd: float
    val_accuracy: float
    seconds: float


@dataclass
class Evaluation:
    loss: float
    ce: float
    kd: float
    accuracy: float
    confusion: torch.Tensor  # [true class, predicted class] counts


@dataclass
class FitResult:
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


def evaluate(
    model: nn.Module,
    log_probs: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    split: Split,
    num_classes: int,
    distill: DistillConfig | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Loss parts, accuracy and confusion matrix of `model` on `split`, without gradients."""
    model.eval().to(memory_format=torch.channels_last)
    totals = torch.zeros(3, dtype=torch.float64)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, len(split.y), batch_size):
            sl = slice(start, start + batch_size)
            out = log_probs(model, split.x[sl].to(device)).cpu()
            t = None if split.teacher_logits is None else split.teacher_logits[sl]
            parts = kd_loss(out, split.y[sl], t, distill)
            n = len(out)
            totals += n * torch.tensor([parts.total.item(), parts.ce.item(), parts.kd.item()])
            index = split.y[sl] * num_classes + out.argmax(1)
            confusion += torch.bincount(index, minlength=num_classes**2).view_as(confusion)
    totals /= max(len(split.y), 1)
    accuracy = confusion.diag().sum().item() / max(len(split.y), 1)
    return Evaluation(*totals.tolist(), accuracy, confusion)


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
    distill: DistillConfig | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FitResult:
    """Adam on the KD loss; keep the weights of the epoch with the best validation accuracy.

    Ties go to the lower validation loss. The test set is never looked at here.
    """
    # Convolutions and max-pools of small images train ~1.5x faster on the CPU with
    # channels-last weights (the 4-D ones; nothing else changes).
    model.to(memory_format=torch.channels_last)
    optimizer = adam(model.parameters(), lr)
    order = torch.Generator().manual_seed(seed)
    result = FitResult()
    best: tuple[float, float] | None = None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        sums = torch.zeros(4, dtype=torch.float64)
        batches = torch.randperm(len(train.y), generator=order).split(batch_size)
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches = batches[:-1]  # BatchNorm cannot train on a single image
        for batch in batches:
            y = train.y[batch].to(device)
            out = log_probs(model, train.x[batch].to(device))
            t = None if train.teacher_logits is None else train.teacher_logits[batch].to(device)
            parts = kd_loss(out, y, t, distill)
            if not torch.isfinite(parts.total):
                raise FloatingPointError(
                    f"the training loss became {parts.total.item()} in epoch {epoch}"
                )
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
            correct = (out.argmax(1) == y).sum().item()
            sums += torch.tensor(
                [
                    len(batch) * parts.total.item(),
                    len(batch) * parts.ce.item(),
                    len(batch) * parts.kd.item(),
                    correct,
                ]
            )
        sums /= len(train.y)
        v = evaluate(model, log_probs, val, num_classes, distill, device=device)
        metrics = EpochMetrics(
            epoch, *sums.tolist(), v.loss, v.ce, v.kd, v.accuracy, time.perf_counter() - started
        )
        result.history.append(metrics)
        if best is None or (v.accuracy, -v.ce) > best:
            best = (v.accuracy, -v.ce)
            result.best_epoch = epoch
            result.best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(metrics)
    model.load_state_dict(result.best_state)
    return result

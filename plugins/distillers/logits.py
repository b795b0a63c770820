"""Distillers of the teacher's logits: Hinton's, MSE, DKD, DIST."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from kdbench import DistillBatch, Distiller, Loss, option

from .common import CE, TAU, _kl, _probs, _soft


@dataclass(kw_only=True)
class Hinton(Distiller):
    """Hinton et al.'s KD: ce_weight·CE(s, y) + kd_weight·τ²·KL(σ(t/τ) ‖ σ(s/τ)).

    τ² keeps the soft term's gradients the same size whatever τ; the logged `kd` is the KL
    before τ² and weight. Defaults are mdistiller's KD: τ = 4, 0.9·KD + 0.1·CE.

    Reference: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network",
    NeurIPS 2014 Deep Learning Workshop, arXiv:1503.02531 (2015).
    """

    name: ClassVar[str] = "hinton"

    temperature: float = option(4.0, help=TAU, minimum=0, exclusive_minimum=True)
    kd_weight: float = option(0.9, help="weight of the τ²-scaled KL term", minimum=0)
    ce_weight: float = option(0.1, help=CE, minimum=0)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, tau = batch.cross_entropy(), self.temperature
        kd = _kl(_soft(batch.teacher(), tau), _soft(batch.log_probs, tau))
        return Loss(self.ce_weight * ce + self.kd_weight * tau**2 * kd, {"ce": ce, "kd": kd})


@dataclass(kw_only=True)
class Mse(Distiller):
    """MSE to the teacher's probabilities: ce_weight·CE(s, y) + kd_weight·MSE(p, σ(t/τ)).

    The squared error is averaged over the batch and the classes; τ softens the teacher's
    target only (the student's p is its plain output). Kim et al. compare MSE between logits;
    here it is between probabilities, which a probability-output student has bounded.

    Reference: Kim, Oh, Kim, Cho, Yun, "Comparing Kullback-Leibler Divergence and Mean
    Squared Error Loss in Knowledge Distillation", IJCAI 2021, arXiv:2105.08919.
    """

    name: ClassVar[str] = "mse"

    temperature: float = option(
        1.0, help="τ of the teacher's softened target", minimum=0, exclusive_minimum=True
    )
    kd_weight: float = option(1.0, help="weight of the MSE term", minimum=0)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def loss(self, batch: DistillBatch) -> Loss:
        ce = batch.cross_entropy()
        kd = F.mse_loss(batch.probs, _probs(batch.teacher(), self.temperature))
        return Loss(self.ce_weight * ce + self.kd_weight * kd, {"ce": ce, "kd": kd})


def _split(log_p: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From log p [B, C] and a one-hot mask: log [p_y, 1 − p_y] [B, 2] and the log
    distribution over the non-target classes [B, C − 1], in log space (finite, no clamp)."""
    others = log_p[~target].view(len(log_p), -1)
    binary = torch.stack([log_p[target], others.logsumexp(dim=1)], dim=1)
    return binary, F.log_softmax(others, dim=1)


@dataclass(kw_only=True)
class Dkd(Distiller):
    """Decoupled KD: ce_weight·CE(s, y) + τ²·(alpha·TCKD + beta·NCKD).

    With p^T = σ(t/τ) and p^S = σ(s/τ): TCKD = KL(b^T ‖ b^S) over the binary target/rest
    split b = [p_y, 1 − p_y]; NCKD = KL(p̂^T ‖ p̂^S) over the non-target classes, p̂ the
    softmax of the logits with the target class left out (mdistiller's `dkd_loss` masks it
    with −1000; leaving it out is the same, exactly). Both are computed in log space, so they
    stay finite when a probability is 0. Defaults are mdistiller's CIFAR ones; no warm-up
    (mdistiller ramps the KD term in over the first 20 epochs; here it is on from the start).
    Parts tckd and nckd are before alpha, beta and τ².

    Reference: Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022,
    arXiv:2203.08679.
    """

    name: ClassVar[str] = "dkd"

    alpha: float = option(1.0, help="weight of TCKD, the target-vs-rest term", minimum=0)
    beta: float = option(8.0, help="weight of NCKD, the non-target-classes term", minimum=0)
    temperature: float = option(4.0, help=TAU, minimum=0, exclusive_minimum=True)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, tau = batch.cross_entropy(), self.temperature
        target = F.one_hot(batch.labels, batch.log_probs.shape[1]).bool()
        binary_s, others_s = _split(_soft(batch.log_probs, tau), target)
        binary_t, others_t = _split(_soft(batch.teacher(), tau), target)
        tckd, nckd = _kl(binary_t, binary_s), _kl(others_t, others_s)
        total = self.ce_weight * ce + (self.alpha * tckd + self.beta * nckd) * tau**2
        return Loss(total, {"ce": ce, "tckd": tckd, "nckd": nckd})


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b [N, M] -> [N] (0 for a
    constant row, by `eps`)."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@dataclass(kw_only=True)
class Dist(Distiller):
    """DIST: ce_weight·CE(s, y) + τ²·(beta·inter + gamma·intra), correlations not distances.

    With y^S = σ(s/τ), y^T = σ(t/τ) [B, C]: inter = 1 − mean over images of the Pearson
    correlation of the rows y^S_i, y^T_i; intra = 1 − mean over classes of that of the columns
    y^S_:,j, y^T_:,j. Pearson's denominator has + 1e-8, as in the authors' code, so a constant
    row or column counts as uncorrelated instead of NaN. Parts are before beta, gamma and τ².

    Reference: Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
    NeurIPS 2022, arXiv:2205.10536.
    """

    name: ClassVar[str] = "dist"

    beta: float = option(1.0, help="weight of the inter-class (per-image) relation", minimum=0)
    gamma: float = option(1.0, help="weight of the intra-class (per-class) relation", minimum=0)
    temperature: float = option(1.0, help=TAU, minimum=0, exclusive_minimum=True)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, tau = batch.cross_entropy(), self.temperature
        student, teacher = _probs(batch.log_probs, tau), _probs(batch.teacher(), tau)
        inter = 1 - _pearson(student, teacher).mean()
        intra = 1 - _pearson(student.T, teacher.T).mean()
        total = self.ce_weight * ce + tau**2 * (self.beta * inter + self.gamma * intra)
        return Loss(total, {"ce": ce, "inter": inter, "intra": intra})

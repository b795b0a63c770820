"""Distillers: the loss a student trains on, from its outputs, the labels and a teacher's logits.

Notation: s = log p, the student's logits (its log class probabilities, paper §3.4); t, the
teacher's logits; y, the labels; σ, the softmax over classes; τ, a temperature; KL(a ‖ b) =
Σ_c a_c·log(a_c / b_c), averaged over the batch. Each logged part is its term before the
weights and (except where `t2_scaling` applies it) before τ².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from kdbench import DistillBatch, Distiller, Loss, hookimpl, option

TAU = "τ of the softened distributions"
CE = "weight of the cross-entropy term"
KD = "weight of the distillation term"

RKD_CHUNK = 64
"""The most rows of a batch whose angle tensor (rows³ entries) `rkd` builds at once."""


def _soft(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """log σ(logits/τ) over the classes."""
    return F.log_softmax(logits / tau, dim=1)


def _probs(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """σ(logits/τ) over the classes."""
    return F.softmax(logits / tau, dim=1)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) averaged over the batch, from log a and log b [B, C]."""
    return F.kl_div(log_b, log_a, reduction="batchmean", log_target=True)


@dataclass(kw_only=True)
class _Softened(Distiller):
    """Base of ce_weight·CE(s, y) + kd_weight·KD, KD a divergence between softened outputs."""

    temperature: float = option(3.0, help=TAU, minimum=0, exclusive_minimum=True)
    kd_weight: float = option(0.9, help="λ, weight of the KL term", minimum=0)
    ce_weight: float = option(1.0, help=CE, minimum=0)
    t2_scaling: bool = option(False, help="multiply the KL term by τ² (Hinton); not in the paper")

    def divergence(self, batch: DistillBatch) -> torch.Tensor:
        """The KD term before τ² and weight."""
        raise NotImplementedError

    def loss(self, batch: DistillBatch) -> Loss:
        ce, kd = batch.cross_entropy(), self.divergence(batch)
        if self.t2_scaling:  # the logged kd is then scaled too, as the paper's code logs it
            kd = kd * self.temperature**2
        return Loss(self.ce_weight * ce + self.kd_weight * kd, {"ce": ce, "kd": kd})


@dataclass(kw_only=True)
class Paper(_Softened):
    """The paper's loss (Eq. 6): ce_weight·CE(s, y) + kd_weight·KL(σ(t/τ) ‖ σ(s/τ)), s = log p.

    With `t2_scaling` the KL term (and the logged `kd`) is multiplied by τ², as Hinton et al.
    do; the paper does not. `[distill]` in a config configures this plugin's default instance.

    Reference: the benchmarked paper, Eq. 6 and §3.4 (student logits s = log p).
    """

    name: ClassVar[str] = "paper"

    def divergence(self, batch: DistillBatch) -> torch.Tensor:
        tau = self.temperature
        return _kl(_soft(batch.teacher(), tau), _soft(batch.log_probs, tau))


@dataclass(kw_only=True)
class ReverseKl(_Softened):
    """Reverse KL: ce_weight·CE(s, y) + kd_weight·KL(σ(s/τ) ‖ σ(t/τ)), mode-seeking.

    The divergence of `paper` with its arguments swapped: the student is penalized for mass
    where the teacher has little, not for missing the teacher's mass, so it may settle on the
    teacher's main modes. `t2_scaling` multiplies the KL term by τ².

    Reference: Gu, Dong, Wei, Huang, "MiniLLM: Knowledge Distillation of Large Language
    Models", ICLR 2024, arXiv:2306.08543 (reverse KD).
    """

    name: ClassVar[str] = "reverse-kl"

    def divergence(self, batch: DistillBatch) -> torch.Tensor:
        tau = self.temperature
        return _kl(_soft(batch.log_probs, tau), _soft(batch.teacher(), tau))


@dataclass(kw_only=True)
class ProbTemperature(_Softened):
    """τ on the probabilities: kd_weight·τ²·KL(σ(t/τ) ‖ σ(p/τ)).

    The released notebooks soften bounded outputs, not logits:
    `KLDivLoss()(log_softmax(y/T), softmax(t/T))·T²·C·α` with 'mean' reduction (over B·C
    entries), the batch-mean KL·T²·α. This distiller reads y as the student's class
    probabilities p: as p ∈ [0, 1], σ(p/τ) stays close to uniform. Hence `t2_scaling` on by
    default; loss = ce_weight·CE(s, y) + kd_weight·KD. (In the notebooks y is the
    sigmoid-pair head's σ(p) of the first C outcomes, which is its log q up to a constant:
    on that head their loss is exactly `hinton` at τ = 3, kd_weight 0.9, ce_weight 1, as
    studies/notebooks.toml runs it.)

    Reference: the benchmarked paper's released notebooks (not its Eq. 6; see `paper`).
    """

    name: ClassVar[str] = "prob-temperature"

    t2_scaling: bool = option(True, help="multiply the KL term by τ² (the notebooks do)")

    def divergence(self, batch: DistillBatch) -> torch.Tensor:
        tau = self.temperature
        return _kl(_soft(batch.teacher(), tau), _soft(batch.probs, tau))


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


def _distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows [B, B] (0 on the diagonal), divided by their
    mean off the diagonal; all 0 for a single row."""
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    d = (x[:, None] - x[None]).square().sum(dim=2).clamp_min(1e-12).sqrt() * off
    mean = d.sum() / max(len(x) * (len(x) - 1), 1)
    return d / mean.clamp_min(1e-12)


def _angles(x: torch.Tensor) -> torch.Tensor:
    """[i, j, k] = ⟨e_ij, e_ik⟩, e_ij = normalize(x_i − x_j) (0 when x_i = x_j): [B, B, B]."""
    e = F.normalize(x[:, None] - x[None], dim=2)
    return e @ e.transpose(1, 2)


def _angle_term(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the angle tensors of consecutive chunks of at most RKD_CHUNK rows,
    averaged over the chunks weighted by their rows."""
    terms = [
        len(a) * F.smooth_l1_loss(_angles(a), _angles(b))
        for a, b in zip(s.split(RKD_CHUNK), t.split(RKD_CHUNK), strict=True)
    ]
    return torch.stack(terms).sum() / len(s)


@dataclass(kw_only=True)
class Rkd(Distiller):
    """Relational KD on the outputs: ce_weight·CE + distance_weight·D + angle_weight·A.

    Over the batch's student logits s = log p and teacher logits t: D = smooth-L1 (Huber)
    between the pairwise Euclidean distance matrices, each divided by its mean off-diagonal
    distance; A = smooth-L1 between the angle tensors ⟨e_ij, e_ik⟩, e_ij = normalize(x_i − x_j),
    entries averaged as in the authors' code (diagonal and degenerate entries are 0 on both
    sides). The angle tensor has B³ entries, so it is built on consecutive chunks of at most 64
    rows (the triples within each chunk) and the chunks' terms are averaged weighted by their
    rows: exact for training batches of up to 64, an estimate for larger (validation) batches.
    A batch of fewer than 2 rows has no relations: D = A = 0.

    Reference: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019,
    arXiv:1904.05068 (weights 25 and 50 are the paper's).
    """

    name: ClassVar[str] = "rkd"

    distance_weight: float = option(25.0, help="weight of the distance term", minimum=0)
    angle_weight: float = option(50.0, help="weight of the angle term", minimum=0)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, s, t = batch.cross_entropy(), batch.log_probs, batch.teacher()
        distance = F.smooth_l1_loss(_distances(s), _distances(t))
        angle = _angle_term(s, t)
        total = self.ce_weight * ce + self.distance_weight * distance + self.angle_weight * angle
        return Loss(total, {"ce": ce, "distance": distance, "angle": angle})


@dataclass(kw_only=True)
class LabelSmoothing(Distiller):
    """Label smoothing, a teacher-free control: CE against (1 − ε)·onehot(y) + ε/C.

    = (1 − ε)·CE(s, y) + ε·mean over the batch of −(1/C)·Σ_c log p_c: distillation from a
    uniform "teacher". Part `uniform` is the second term before ε.

    References: Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
    Architecture for Computer Vision", CVPR 2016, arXiv:1512.00567; Yuan, Tay, Li, Wang,
    Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020,
    arXiv:1909.11723 (teacher-free KD).
    """

    name: ClassVar[str] = "label-smoothing"
    uses_teacher: ClassVar[bool] = False

    smoothing: float = option(0.1, help="ε, the weight of the uniform target", minimum=0, maximum=1)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, eps = batch.cross_entropy(), self.smoothing
        uniform = -batch.log_probs.mean()  # mean over the batch and the classes
        return Loss((1 - eps) * ce + eps * uniform, {"ce": ce, "uniform": uniform})


@dataclass(kw_only=True)
class FitNet(Distiller):
    """FitNet's hint: ce_weight·CE(s, y) + hint_weight·MSE(W·f_s, f_t), features not outputs.

    f_s is the output of the student's classical front (the features its circuit encodes),
    f_t the teacher's penultimate features (the input of its last linear layer), W a linear
    regressor from the student's width to the teacher's, trained with the student from the
    cell's seed. FitNets train the hint first and then distil; here, as in mdistiller's
    FitNet, both terms train together from the start. Part `hint` is the MSE before its
    weight.

    Reference: Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep
    Nets", ICLR 2015, arXiv:1412.6550.
    """

    name: ClassVar[str] = "fitnet"
    uses_features: ClassVar[bool] = True

    hint_weight: float = option(1.0, help="weight of the hint (feature regression) term", minimum=0)
    ce_weight: float = option(1.0, help=CE, minimum=0)

    def build(self, student_features: int, teacher_features: int) -> torch.nn.Module:
        return torch.nn.Linear(student_features, teacher_features)

    def loss(self, batch: DistillBatch) -> Loss:
        ce, regressor = batch.cross_entropy(), batch.learned
        assert regressor is not None and batch.student_features is not None  # uses_features
        hint = F.mse_loss(regressor(batch.student_features), batch.teacher_features)
        return Loss(self.ce_weight * ce + self.hint_weight * hint, {"ce": ce, "hint": hint})


@hookimpl
def register_distillers(register: Callable[[type], None]) -> None:
    """The built-in distillation methods."""
    for cls in (Paper, Hinton, ReverseKl, ProbTemperature, Mse, Dkd, Dist, Rkd, LabelSmoothing,
                FitNet):  # fmt: skip
        register(cls)

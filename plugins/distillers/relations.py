"""Relational distillation (RKD): distances and angles between a batch's outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from kdbench import DistillBatch, Distiller, Loss, option

from .common import CE

RKD_CHUNK = 64
"""The most rows of a batch whose angle tensor (rows³ entries) `rkd` builds at once."""


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

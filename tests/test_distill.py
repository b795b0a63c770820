"""The KD loss against a hand computation, and proof that the KD term reaches the gradient."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.api import StudentContext
from kdbench.config import DistillConfig
from kdbench.distill import Split, fit, kd_loss, probabilities_to_log
from kdbench_plugins.encoders import Angle
from kdbench_plugins.statevector import Statevector
from kdbench_plugins.students import Pqc


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kd_loss_matches_hand_computation():
    p, t, tau = [0.7, 0.2, 0.1], [2.0, 1.0, 0.0], 3.0
    soft_s = softmax([math.log(v) / tau for v in p])
    soft_t = softmax([v / tau for v in t])
    kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(soft_t, soft_s, strict=True))
    ce = -math.log(0.7)
    cfg = DistillConfig(temperature=tau, kd_weight=0.9, ce_weight=1.0)
    parts = kd_loss(
        probabilities_to_log(torch.tensor([p], dtype=torch.float64)),
        torch.tensor([0]),
        torch.tensor([t], dtype=torch.float64),
        cfg,
    )
    assert parts.ce.item() == pytest.approx(ce, rel=1e-6)
    assert parts.kd.item() == pytest.approx(kl, rel=1e-5)
    assert parts.total.item() == pytest.approx(ce + 0.9 * kl, rel=1e-6)

    scaled = kd_loss(
        probabilities_to_log(torch.tensor([p], dtype=torch.float64)),
        torch.tensor([0]),
        torch.tensor([t], dtype=torch.float64),
        DistillConfig(temperature=tau, t2_scaling=True, ce_weight=0.5),
    )
    assert scaled.total.item() == pytest.approx(0.5 * ce + 0.9 * tau**2 * kl, rel=1e-5)


def test_no_teacher_is_plain_cross_entropy():
    log_p = torch.log_softmax(torch.randn(5, 4), dim=1)
    y = torch.tensor([0, 1, 2, 3, 0])
    parts = kd_loss(log_p, y, None, DistillConfig())
    assert parts.total.item() == pytest.approx(torch.nn.functional.nll_loss(log_p, y).item())
    assert parts.kd.item() == 0.0


def tiny_student(seed: int = 0):
    torch.manual_seed(seed)
    context = StudentContext(
        num_classes=3, image_shape=(1, 28, 28), backend=Statevector(), encoder=Angle(), seed=seed
    )
    return Pqc(qubits=2, front="linear", layers=2).build(context)


def gradients(model, images, labels, teacher_logits, cfg):
    model.zero_grad()
    kd_loss(probabilities_to_log(model(images)), labels, teacher_logits, cfg).total.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_kd_term_changes_the_students_gradient():
    model = tiny_student()
    images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 3, (8,))
    teacher_logits = torch.randn(8, 3) * 3
    with_kd = gradients(model, images, labels, teacher_logits, DistillConfig(kd_weight=0.9))
    without = gradients(model, images, labels, teacher_logits, DistillConfig(kd_weight=0.0))
    kd_only = gradients(
        model, images, labels, teacher_logits, DistillConfig(kd_weight=1.0, ce_weight=0.0)
    )
    assert kd_only.abs().max() > 1e-4, "the KD term must have a gradient of its own"
    assert torch.allclose(with_kd, without + 0.9 * kd_only, atol=1e-6)
    # The circuit weights are among the parameters the KD term moves.
    model.zero_grad()
    cfg = DistillConfig(kd_weight=1.0, ce_weight=0.0)
    kd_loss(probabilities_to_log(model(images)), labels, teacher_logits, cfg).total.backward()
    assert model.weights.grad.abs().max() > 1e-6


def test_different_teachers_give_different_students():
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 3, (64,))
    val = Split(torch.rand(16, 1, 28, 28), torch.randint(0, 3, (16,)))
    finals = []
    for teacher_seed in (1, 2):
        model = tiny_student()
        teacher = torch.randn(64, 3, generator=torch.Generator().manual_seed(teacher_seed)) * 4
        fit(
            model,
            lambda m, x: probabilities_to_log(m(x)),
            Split(images, labels, teacher),
            val,
            num_classes=3,
            epochs=2,
            batch_size=16,
            lr=0.05,
            seed=0,
            distill=DistillConfig(),
        )
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.allclose(finals[0], finals[1])


def test_fit_keeps_the_best_validation_epoch():
    model = tiny_student()
    train = Split(torch.rand(48, 1, 28, 28), torch.randint(0, 3, (48,)))
    val = Split(torch.rand(24, 1, 28, 28), torch.randint(0, 3, (24,)))
    result = fit(
        model,
        lambda m, x: probabilities_to_log(m(x)),
        train,
        val,
        num_classes=3,
        epochs=5,
        batch_size=8,
        lr=0.1,
        seed=0,
    )
    best = max(result.history, key=lambda m: (m.val_accuracy, -m.val_ce))
    assert result.best_epoch == best.epoch
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in result.best_state.items())

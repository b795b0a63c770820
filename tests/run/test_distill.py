"""The training loss against a hand computation, proof that the KD term reaches the gradient,
and the paper's loss as it was before distillers were plugins."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.api import DistillBatch, Distiller, Loss
from kdbench.distill import Split, fit
from kdbench.losses import probabilities_to_log, training_loss
from kdbench.plugins import component
from tests.helpers import tiny_student


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def paper(**options):
    return component("distillers", "paper")(**options)


def test_paper_loss_matches_hand_computation():
    p, t, tau = [0.7, 0.2, 0.1], [2.0, 1.0, 0.0], 3.0
    soft_s = softmax([math.log(v) / tau for v in p])
    soft_t = softmax([v / tau for v in t])
    kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(soft_t, soft_s, strict=True))
    ce = -math.log(0.7)
    log_p = probabilities_to_log(torch.tensor([p], dtype=torch.float64))
    teacher = torch.tensor([t], dtype=torch.float64)
    total, parts = training_loss(log_p, torch.tensor([0]), teacher, paper(temperature=tau))
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["kd"].item() == pytest.approx(kl, rel=1e-5)
    assert total.item() == pytest.approx(ce + 0.9 * kl, rel=1e-6)

    scaled, _ = training_loss(
        log_p, torch.tensor([0]), teacher, paper(temperature=tau, t2_scaling=True, ce_weight=0.5)
    )
    assert scaled.item() == pytest.approx(0.5 * ce + 0.9 * tau**2 * kl, rel=1e-5)


def test_no_distiller_is_plain_cross_entropy():
    log_p = torch.log_softmax(torch.randn(5, 4), dim=1)
    y = torch.tensor([0, 1, 2, 3, 0])
    total, parts = training_loss(log_p, y, None, None)
    assert total.item() == pytest.approx(torch.nn.functional.nll_loss(log_p, y).item())
    assert list(parts) == ["ce"]


def gradients(model, images, labels, teacher_logits, distiller):
    model.zero_grad()
    log_p = probabilities_to_log(model(images))
    training_loss(log_p, labels, teacher_logits, distiller)[0].backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_kd_term_changes_the_students_gradient():
    model = tiny_student()
    images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 3, (8,))
    teacher_logits = torch.randn(8, 3) * 3
    with_kd = gradients(model, images, labels, teacher_logits, paper(kd_weight=0.9))
    without = gradients(model, images, labels, teacher_logits, paper(kd_weight=0.0))
    kd_only = gradients(model, images, labels, teacher_logits, paper(kd_weight=1.0, ce_weight=0.0))
    assert kd_only.abs().max() > 1e-4, "the KD term must have a gradient of its own"
    assert torch.allclose(with_kd, without + 0.9 * kd_only, atol=1e-6)
    # The circuit weights are among the parameters the KD term moves.
    gradients(model, images, labels, teacher_logits, paper(kd_weight=1.0, ce_weight=0.0))
    assert model.weights.grad.abs().max() > 1e-6


def test_different_teachers_give_different_students():
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 3, (64,))
    val = Split(torch.rand(16, 1, 28, 28), torch.randint(0, 3, (16,)), torch.randn(16, 3))
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
            distiller=paper(),
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
    best = max(result.history, key=lambda m: (m.val_accuracy, -m.val["ce"]))
    assert result.best_epoch == best.epoch
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in result.best_state.items())


class LegacyKd(Distiller):
    """The paper's loss exactly as kdbench computed it before distillers were plugins
    (kdbench.distill.kd_loss with [distill]'s defaults)."""

    name = "legacy-kd"

    def loss(self, batch: DistillBatch) -> Loss:
        ce = torch.nn.functional.nll_loss(batch.log_probs, batch.labels)
        soft_student = torch.nn.functional.log_softmax(batch.log_probs / 3.0, dim=1)
        soft_teacher = torch.nn.functional.log_softmax(batch.teacher() / 3.0, dim=1)
        kd = torch.nn.functional.kl_div(
            soft_student, soft_teacher, reduction="batchmean", log_target=True
        )
        return Loss(1.0 * ce + 0.9 * kd, {"ce": ce, "kd": kd})


def test_the_paper_distiller_trains_bit_for_bit_like_the_loss_it_replaced():
    images, labels = torch.rand(40, 1, 28, 28), torch.randint(0, 3, (40,))
    teacher = torch.randn(40, 3, generator=torch.Generator().manual_seed(3)) * 4
    val = Split(torch.rand(16, 1, 28, 28), torch.randint(0, 3, (16,)), torch.randn(16, 3))
    runs = []
    for distiller in (paper(), LegacyKd()):
        model = tiny_student()
        fitted = fit(
            model,
            lambda m, x: probabilities_to_log(m(x)),
            Split(images, labels, teacher),
            val,
            num_classes=3,
            epochs=2,
            batch_size=8,
            lr=0.05,
            seed=0,
            distiller=distiller,
        )
        runs.append(([m.train | m.val for m in fitted.history], model.state_dict()))
    (history, state), (legacy_history, legacy_state) = runs
    assert history == legacy_history
    assert all(torch.equal(state[k], legacy_state[k]) for k in state)


# -- a training stopped after an epoch goes on from its snapshot --


def dropout_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 3)
    )


def train_dropout_net(net, snapshot=None, on_epoch=None):
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(90, 6, generator=generator), torch.arange(90) % 3
    torch.manual_seed(3)  # what dropout draws from, as a teacher's training seeds it
    return fit(
        net,
        lambda m, v: torch.log_softmax(m(v), 1),
        Split(x[:60], y[:60]),
        Split(x[60:], y[60:]),
        num_classes=3,
        epochs=4,
        batch_size=8,
        lr=0.01,
        seed=0,
        schedule="one-cycle",
        snapshot=snapshot,
        on_epoch=on_epoch,
    )


class Stopped(Exception):
    pass


def test_a_stopped_training_goes_on_from_its_snapshot_to_the_same_weights(tmp_path):
    whole = dropout_net()
    uninterrupted = train_dropout_net(whole)

    def stop_after_2(metrics):
        if metrics.epoch == 2:
            raise Stopped

    snapshot = tmp_path / "t.snapshot.pt"
    with pytest.raises(Stopped):
        train_dropout_net(dropout_net(), snapshot, stop_after_2)
    assert snapshot.exists()
    seen = []
    resumed_net = dropout_net()
    with torch.no_grad():  # weights other than the ones it stopped at
        for p in resumed_net.parameters():
            p.fill_(0.5)
    resumed = train_dropout_net(resumed_net, snapshot, seen.append)
    # Epochs 1-2 replayed to on_epoch, 3-4 trained: the weights of a training never stopped.
    assert [m.epoch for m in seen] == [1, 2, 3, 4]
    assert [(m.train, m.val) for m in resumed.history] == [
        (m.train, m.val) for m in uninterrupted.history
    ]
    assert resumed.best_epoch == uninterrupted.best_epoch
    for a, b in zip(resumed_net.state_dict().values(), whole.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_an_unreadable_snapshot_means_training_from_the_start(tmp_path):
    whole = dropout_net()
    train_dropout_net(whole)
    snapshot = tmp_path / "t.snapshot.pt"
    snapshot.write_bytes(b"not a snapshot")
    again = dropout_net()
    train_dropout_net(again, snapshot)
    for a, b in zip(again.state_dict().values(), whole.state_dict().values(), strict=True):
        assert torch.equal(a, b)

"""The feature distiller (FitNet's hint): its loss by hand, its gradient through the student's
front and its regressor, features read from a real teacher and student, and the configs
that cannot give it features refused before anything runs."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import kdbench
from kdbench.api import DistillBatch
from kdbench.config import load_spec
from kdbench.distill import Split, fit
from kdbench.errors import KdbenchError
from kdbench.losses import Hint, probabilities_to_log
from kdbench.matrix import expand
from kdbench.paths import data_dir
from kdbench.plugins import load_registry
from kdbench.run import preflight
from kdbench_plugins.distillers import FitNet
from kdbench_plugins.teachers import LeNet
from tests.helpers import TINY


def test_hint_loss_by_hand():
    regressor = torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        regressor.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
        regressor.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))
    f_s = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    f_t = torch.tensor([[1.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    log_p = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64))
    labels = torch.tensor([0, 2])
    # W f_s + b: [1.5, 4, -1.5] and [0.5, -2, 0.5]; squared errors 0.25 + 0 + 2.25 and
    # 0.25 + 4 + 0.25, mean over 6 entries.
    hint = (0.25 + 0 + 2.25 + 0.25 + 4 + 0.25) / 6
    ce = -(torch.log(torch.tensor(0.7)) + torch.log(torch.tensor(0.6))).item() / 2
    batch = DistillBatch(log_p, labels, torch.zeros(2, 3), f_s, f_t, regressor)
    loss = FitNet(hint_weight=0.5, ce_weight=2.0).loss(batch)
    assert loss.parts["hint"].item() == pytest.approx(hint, rel=1e-9)
    assert loss.parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert loss.total.item() == pytest.approx(2.0 * ce + 0.5 * hint, rel=1e-6)
    assert FitNet().build(2, 3).weight.shape == (3, 2)


def test_the_hint_trains_the_students_front_and_the_regressor():
    from kdbench.api import StudentContext
    from kdbench_plugins.encoders import Angle
    from kdbench_plugins.statevector import Statevector
    from kdbench_plugins.students import Pqc

    torch.manual_seed(0)
    context = StudentContext(3, (1, 28, 28), Statevector(), Angle(), 0)
    student = Pqc(qubits=2, front="linear", layers=1)
    model = student.build(context)
    front = student.front_module(model)
    assert front is model.front
    regressor = FitNet().build(2, 84)
    hint = Hint(front, regressor)
    images = torch.rand(8, 1, 28, 28)
    teacher_features = torch.randn(8, 84)
    log_p = probabilities_to_log(model(images))
    assert hint.features.shape == (8, 2)
    batch = DistillBatch(
        log_p, torch.randint(0, 3, (8,)), None, hint.features, teacher_features, regressor
    )
    FitNet(ce_weight=0.0).loss(batch).total.backward()
    front_grads = [p.grad for p in front.parameters()]
    assert all(g is not None and g.abs().max() > 0 for g in front_grads)
    assert regressor.weight.grad.abs().max() > 0
    assert model.weights.grad is None or model.weights.grad.abs().max() == 0, (
        "the circuit is past the front"
    )
    hint.close()
    model(images[:1])
    assert hint.features.shape == (8, 2), "a closed hint no longer taps the front"

    # fit trains the regressor with the student
    model = student.build(context)
    regressor = FitNet().build(2, 84)
    before = regressor.weight.detach().clone()
    train = Split(images, torch.randint(0, 3, (8,)), torch.randn(8, 3), teacher_features)
    val = Split(images[:4], train.y[:4], train.teacher_logits[:4], teacher_features[:4])
    result = fit(
        model,
        lambda m, x: probabilities_to_log(m(x)),
        train,
        val,
        num_classes=3,
        epochs=2,
        batch_size=4,
        lr=0.05,
        seed=0,
        distiller=FitNet(),
        hint=Hint(student.front_module(model), regressor),
    )
    assert not torch.equal(before, regressor.weight)
    assert {"loss", "ce", "hint", "accuracy"} == set(result.history[0].train)


def test_a_teachers_classifier_layer_gives_its_penultimate_features():
    model = LeNet().build(6, (1, 28, 28))
    layer = LeNet().classifier_layer(model)
    assert isinstance(layer, torch.nn.Linear) and layer.in_features == 84
    from kdbench.teachers import teacher_features

    features = teacher_features(model, layer, torch.rand(5, 1, 28, 28))
    assert features.shape == (5, 84)


@dataclass(kw_only=True)
class Frontless(kdbench.Student):
    """A student with no classical front: one probability vector for every image."""

    name: ClassVar[str] = "frontless"

    def build(self, context):
        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.logits = torch.nn.Parameter(torch.zeros(context.num_classes))

            def forward(self, images):
                return torch.softmax(self.logits, 0).expand(len(images), -1)

        return Module()


@pytest.mark.parametrize(
    ("students", "teacher", "message"),
    [
        ('["q2"]', "ensemble", "teacher 'ensemble' exposes none"),
        ('["frontless"]', "lenet", "student 'frontless' has no classical front"),
    ],
)
def test_configs_that_cannot_give_features_are_refused_before_anything_runs(
    write_config, isolated, students, teacher, message
):
    module = types.ModuleType("frontless_plugin")
    module.register_students = kdbench.hookimpl(lambda register: register(Frontless))
    registry = load_registry(extra=[("frontless", module)])
    text = (
        TINY.format(name="features")
        .replace('students = ["q2"]', f"students = {students}")
        .replace('teachers = ["none", "lenet"]', f'teachers = ["{teacher}"]')
        + 'distillers = ["fitnet"]\n'
        + '[teachers.ensemble]\nmembers = ["lenet", "alexnet"]\n'
    )
    cells = expand(load_spec(write_config(text), registry))
    with pytest.raises(KdbenchError, match=message):
        preflight(cells, data_dir())

"""A knowledge test with power: teachers that never saw the students' images, the class-prior
control, and how far each control moves the teacher's targets."""

from __future__ import annotations

import pytest
import torch

from kdbench.data import make_splits
from kdbench.errors import DataError
from kdbench.run.controls import class_means, mean_kl
from kdbench.tracking import Tracker
from kdbench_plugins.datasets import Mnist
from tests.helpers import TINY, TRAIN_PER_CLASS


def pixel_ids(images: torch.Tensor) -> set[int]:
    return set((images[:, 0, 0, 0] * 255).round().long().tolist())


def test_a_disjoint_teacher_trains_on_no_student_image(fake):
    root, _ = fake
    dataset = Mnist(classes=[0, 1, 2], train_per_class=4, val_per_class=3, test_per_class=2)
    shared, disjoint = (make_splits(dataset, root, seed=3, disjoint=d) for d in (False, True))
    students = pixel_ids(disjoint.train_x) | pixel_ids(disjoint.val_x)
    assert pixel_ids(shared.teacher_x) >= pixel_ids(shared.train_x), "today: it sees them"
    assert not pixel_ids(disjoint.teacher_x) & students
    assert len(disjoint.teacher_y) == 3 * (TRAIN_PER_CLASS - 4 - 3)
    assert torch.equal(shared.train_x, disjoint.train_x), "the students' split is unchanged"
    with pytest.raises(DataError, match="train_per_class \\+ val_per_class = 7 are held out"):
        make_splits(dataset, root, seed=3, teacher_per_class=TRAIN_PER_CLASS - 6, disjoint=True)


def test_class_means_give_every_image_its_classs_mean_distribution():
    logits = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    means = class_means(logits, labels)
    expected = torch.softmax(logits[[0, 2, 5]], dim=1).mean(0)
    for row in (0, 2, 5):
        assert torch.allclose(means[row].exp(), expected)
    assert torch.allclose(means.exp().sum(1), torch.ones(6, dtype=torch.float64))
    assert mean_kl(logits, logits) == pytest.approx(0, abs=1e-12)
    assert mean_kl(logits, means) > 0


CONTROLS = (
    TINY.replace('teachers = ["none", "lenet"]', 'teachers = ["lenet-disjoint", "prior", "within"]')
    + """
[teachers.lenet-disjoint]
plugin = "lenet"
epochs = 1
train_per_class = 60
disjoint = true

[teachers.prior]
plugin = "lenet"
epochs = 1
train_per_class = 60
disjoint = true
class_prior = true

[teachers.within]
plugin = "lenet"
epochs = 1
train_per_class = 60
disjoint = true
shuffled = true
within_class = true
"""
)


def test_controls_log_how_far_they_move_the_targets(write_config, invoke, isolated):
    result = invoke("run", str(write_config(CONTROLS)))
    assert result.exit_code == 0, result.output
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "{name}", create=False)
    kl = {
        r.data.tags["kdbench.teacher"]: r.data.metrics.get("teacher_control_kl")
        for r in tracker.cell_runs()
    }
    assert kl["lenet-disjoint"] is None, "the teacher itself is no control"
    assert kl["prior"] > 0 and kl["within"] > 0
    # The three share one trained LeNet: the controls change its outputs, not its weights.
    assert len(list((isolated / "cache" / "teachers").glob("*.json"))) == 1


def test_class_prior_and_shuffled_together_are_refused(write_config, invoke, isolated):
    bad = CONTROLS.replace("class_prior = true", "class_prior = true\nshuffled = true")
    result = invoke("run", str(write_config(bad)))
    assert result.exit_code == 2
    assert "class_prior" in result.stderr and len(result.stderr.strip().splitlines()) == 1

"""Teachers: architectures, training once per key, the on-disk cache, checkpoints."""

from __future__ import annotations

import pytest
import torch

from kdbench.config import load_spec
from kdbench.errors import KdbenchError
from kdbench.paths import data_dir
from kdbench.teachers import prepare_teacher
from kdbench_plugins.teachers import LeNet
from tests.conftest import TINY


def test_lenet_shape_and_parameter_count():
    model = LeNet().build(10, (1, 28, 28))
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    # conv 6@5x5 (p2), conv 16@5x5, fc 400-120-84-10: the classic 61,706 parameters.
    assert sum(p.numel() for p in model.parameters()) == 61706


@pytest.fixture
def cell_parts(write_config, registry):
    spec = load_spec(write_config(TINY.format(name="t")), registry)
    teacher, dataset = spec.instance("teachers", "lenet"), spec.instance("datasets", "mnist-0-2")

    def prepare(seed, cache, **kwargs):
        return prepare_teacher(
            teacher,
            dataset,
            data_dir(),
            seed,
            cache,
            members=lambda name: spec.instance("teachers", name),
            **kwargs,
        )

    return teacher, prepare


def test_a_teacher_is_trained_once_then_read_from_the_cache(cell_parts, tmp_path):
    _, prepare = cell_parts
    epochs = []
    first = prepare(0, tmp_path, on_epoch=epochs.append)
    assert first.source == "trained" and len(epochs) == 1
    second = prepare(0, tmp_path, on_epoch=epochs.append)
    assert second.source == "cache" and len(epochs) == 1, "the cached teacher must not retrain"
    assert second.test_accuracy == first.test_accuracy
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in second.model.parameters()), "teachers are frozen"
    other_seed = prepare(1, tmp_path)
    assert other_seed.source == "trained" and other_seed.cache_key != first.cache_key
    assert first.test_accuracy > 0.6, "even one epoch of LeNet beats chance on 3 digits"


def test_checkpoint_loading(cell_parts, tmp_path):
    teacher, prepare = cell_parts
    trained = prepare(0, tmp_path)
    path = tmp_path / "lenet.pt"
    torch.save(trained.model.state_dict(), path)
    teacher.component.checkpoint = str(path)
    loaded = prepare(0, tmp_path)
    assert loaded.source == "checkpoint" and loaded.test_accuracy == trained.test_accuracy

    torch.save({"not": "tensors"}, path)
    with pytest.raises(KdbenchError, match="not a state dict of tensors"):
        prepare(0, tmp_path)
    torch.save(LeNet().build(5, (1, 28, 28)).state_dict(), path)
    with pytest.raises(KdbenchError, match="does not fit the architecture"):
        prepare(0, tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(KdbenchError, match="not a loadable state dict"):
        prepare(0, tmp_path)

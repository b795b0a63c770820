"""Teachers: architectures, training once per key, the on-disk cache, checkpoints."""

from __future__ import annotations

import pytest
import torch

from kdbench.config import load_spec
from kdbench.errors import KdbenchError
from kdbench.paths import data_dir
from kdbench.teachers import Memoized, forget_prepared, prepare_teacher
from kdbench_plugins.teachers import LeNet
from tests.helpers import TINY


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
    assert prepare(0, tmp_path) is first, "held in memory within a process"
    forget_prepared()
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


def test_a_teacher_trains_the_same_whatever_ran_before_it(cell_parts, tmp_path):
    _, prepare = cell_parts
    weights = []
    for earlier in (1, 2):  # what earlier work left in the global generator
        torch.manual_seed(earlier)
        torch.rand(10)
        forget_prepared()
        weights.append(prepare(0, tmp_path / f"cache{earlier}").model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(*(w.values() for w in weights), strict=True))


def test_checkpoint_loading(cell_parts, tmp_path):
    teacher, prepare = cell_parts
    trained = prepare(0, tmp_path)
    path = tmp_path / "lenet.pt"
    torch.save(trained.model.model.state_dict(), path)  # the network inside the memo
    teacher.component.checkpoint = str(path)
    loaded = prepare(0, tmp_path)
    assert loaded.source == "checkpoint" and loaded.test_accuracy == trained.test_accuracy

    torch.save({"not": "tensors"}, path)
    forget_prepared()  # the same path with new content: do not reuse the one in memory
    with pytest.raises(KdbenchError, match="not a state dict of tensors"):
        prepare(0, tmp_path)
    torch.save(LeNet().build(5, (1, 28, 28)).state_dict(), path)
    forget_prepared()
    with pytest.raises(KdbenchError, match="does not fit the architecture"):
        prepare(0, tmp_path)
    path.write_bytes(b"garbage")
    forget_prepared()
    with pytest.raises(KdbenchError, match="not a loadable state dict"):
        prepare(0, tmp_path)


def test_an_ensemble_trains_each_member_once_and_averages_them(write_config, registry, tmp_path):
    text = (
        TINY.format(name="e")
        + """
[teachers.lenet-b]
plugin = "lenet"
epochs = 1
lr = 0.01
train_per_class = 30

[teachers.pair]
plugin = "ensemble"
members = ["lenet", "lenet-b"]
"""
    )
    spec = load_spec(write_config(text), registry)
    dataset = spec.instance("datasets", "mnist-0-2")

    def prepare(name):
        return prepare_teacher(
            spec.instance("teachers", name),
            dataset,
            data_dir(),
            0,
            tmp_path,
            members=lambda n: spec.instance("teachers", n),
        )

    pair = prepare("pair")
    assert pair.source == "trained"
    assert prepare("pair") is pair
    forget_prepared()
    again = prepare("pair")
    assert again.source == "cache", "members come from the cache the second time"
    images = torch.rand(4, 1, 28, 28)
    members = [prepare(name).model for name in ("lenet", "lenet-b")]
    mean = sum(torch.softmax(m(images), 1) for m in members) / 2
    assert torch.allclose(torch.softmax(again.model(images), 1), mean, atol=1e-6)


def test_an_ensemble_cannot_contain_itself(write_config, registry):
    from kdbench.errors import ConfigError

    text = (
        TINY.format(name="e")
        + """
[teachers.loop]
plugin = "ensemble"
members = ["lenet", "loop"]
"""
    )
    with pytest.raises(ConfigError, match="'loop' would contain itself"):
        load_spec(write_config(text), registry)
    unknown = (
        TINY.format(name="e")
        + '[teachers.pair]\nplugin = "ensemble"\nmembers = ["lenet", "lenat"]\n'
    )
    with pytest.raises(ConfigError, match="unknown teacher 'lenat'"):
        load_spec(write_config(unknown, "u.toml"), registry)


class Counting(torch.nn.Module):
    """A linear map that counts the images it is shown."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += len(images)
        return self.linear(images.flatten(1))


def test_memoized_teacher_computes_each_image_once_across_processes(tmp_path):
    images = torch.randn(6, 1, 2, 2)
    shared = tmp_path / "teacher.outputs.pt"
    network = Counting()
    here = Memoized(network, shared)
    first = here(images[:4])
    assert network.seen == 4
    assert torch.equal(here(images[[3, 2, 2]]), first[[3, 2, 2]]) and network.seen == 4
    # Another process's memo of the same teacher (a fresh one, reading the same file).
    there = Memoized(network, shared)
    both = there(images)
    assert network.seen == 6, "only the two images nobody had seen were computed"
    torch.testing.assert_close(both[:4], first, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(both, network.linear(images.flatten(1)))
    shared.write_bytes(b"not a torch file")  # a broken cache is computed again, not trusted
    torch.testing.assert_close(Memoized(network, shared)(images[:1]), first[:1])
    assert network.seen == 7


def test_a_class_conditional_shuffle_keeps_each_image_within_its_class():
    from kdbench.run.controls import permutation

    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    generator = torch.Generator().manual_seed(0)
    within = permutation(labels, True, generator)
    assert sorted(within.tolist()) == list(range(10))
    assert torch.equal(labels[within], labels), "every image gets an output of its own class"
    assert not torch.equal(within, torch.arange(10))
    across = permutation(labels, False, torch.Generator().manual_seed(0))
    assert not torch.equal(labels[across], labels)


def test_within_class_needs_shuffled_and_shares_the_trained_teacher(write_config, registry):
    from kdbench.errors import ConfigError
    from kdbench.report.labels import teacher_label
    from kdbench.teachers import cache_key
    from kdbench.tracking import flatten

    base, matrix = TINY.format(name="w").split("[[matrix]]")
    matrix = "[[matrix]]" + matrix
    unshuffled = base.replace("train_per_class = 60", "train_per_class = 60\nwithin_class = true")
    with pytest.raises(ConfigError, match=r"teachers\.lenet\.within_class: needs shuffled = true"):
        load_spec(write_config(unshuffled + matrix), registry)
    text = (
        base
        + """
[teachers.lenet-within]
plugin = "lenet"
epochs = 1
train_per_class = 60
shuffled = true
within_class = true
"""
    )
    spec = load_spec(write_config(text + matrix), registry)
    dataset = spec.instance("datasets", "mnist-0-2")
    within, plain = spec.instance("teachers", "lenet-within"), spec.instance("teachers", "lenet")
    assert cache_key(within, dataset, 0) == cache_key(plain, dataset, 0)
    params = flatten({"teacher": within.resolved()})
    assert teacher_label(params, "lenet-within") == "LeNet (outputs shuffled within class)"

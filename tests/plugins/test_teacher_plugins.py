"""Teacher architectures: AlexNet, the ensemble, torchvision models (no training here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench import OptionError
from kdbench.config import load_spec
from kdbench.errors import ConfigError, KdbenchError
from kdbench.options import describe
from kdbench_plugins.teachers import AlexNet, Ensemble, Resnet18, TorchvisionTeacher
from tests.helpers import TINY

IMAGE = (1, 28, 28)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv3x3(cin: int, cout: int) -> int:
    return cin * cout * 3 * 3 + cout


def _fc(fin: int, fout: int) -> int:
    return fin * fout + fout


def _alexnet_parameters(classes: int) -> int:
    """The paper's AlexNet on 1x28x28, layer by layer (weights + biases)."""
    flat = 384 * 7 * 7  # 28 -> pool -> 14 -> pool -> 7; the 3x3 convs keep the size (padding 1)
    return (
        _conv3x3(1, 64) + _conv3x3(64, 192) + _conv3x3(192, 384)
        + _fc(flat, 4096) + _fc(4096, 4096) + _fc(4096, classes)
    )  # fmt: skip


@pytest.mark.parametrize("classes", [6, 10])
def test_alexnet_parameter_count_and_shape(classes):
    model = AlexNet().build(classes, IMAGE)
    assert _count(model) == _alexnet_parameters(classes)
    assert model(torch.zeros(2, *IMAGE)).shape == (2, classes)


def test_alexnet_count_for_ten_classes_is_the_papers():
    assert _alexnet_parameters(10) == 94_672_074  # "about 94.7 M"


class _Fixed(nn.Module):
    """A deterministic little classifier: a fixed linear map of the flattened image."""

    def __init__(self, seed: int, classes: int = 4):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(28 * 28, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, 28 * 28, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_ensemble_averages_probabilities_not_logits():
    members = [_Fixed(0), _Fixed(1), _Fixed(2)]
    teacher = Ensemble(members=["a", "b", "c"])
    teacher.check()
    assert teacher.member_names() == ["a", "b", "c"]
    model = teacher.combine(members)
    x = torch.randn(5, *IMAGE, generator=torch.Generator().manual_seed(3))
    mean = torch.stack([m(x).softmax(dim=1) for m in members]).mean(dim=0)
    torch.testing.assert_close(model(x).softmax(dim=1), mean, rtol=0, atol=1e-6)
    # log of the mean itself, so the harness's log_softmax leaves it unchanged.
    torch.testing.assert_close(model(x), mean.log(), rtol=0, atol=1e-5)
    # Averaging logits would give a different teacher.
    logits_mean = torch.stack([m(x) for m in members]).mean(dim=0).softmax(dim=1)
    assert not torch.allclose(logits_mean, mean, atol=1e-3)


@pytest.mark.parametrize(
    ("members", "match"),
    [([], "at least 2"), (["lenet"], "at least 2"), (["lenet", "alexnet", "lenet"], "'lenet'")],
)
def test_ensemble_member_errors(members, match):
    with pytest.raises(OptionError, match=match) as caught:
        Ensemble(members=members).check()
    assert caught.value.key == "members"


def test_ensemble_has_no_network_or_checkpoint_of_its_own():
    with pytest.raises(TypeError, match="built from its members"):
        Ensemble(members=["lenet", "alexnet"]).build(10, IMAGE)
    with pytest.raises(OptionError) as caught:
        Ensemble(members=["lenet", "alexnet"], checkpoint="x.pt").check()
    assert caught.value.key == "checkpoint"


@pytest.mark.parametrize("classes", [6, 10])
def test_torchvision_resnet18_keeps_28x28(classes):
    model = TorchvisionTeacher(model="resnet18").build(classes, IMAGE)
    assert model(torch.zeros(2, *IMAGE)).shape == (2, classes)
    assert model.conv1.in_channels == 1 and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    # torchvision's 11,689,512 (1000 classes) minus the 7x7 RGB stem, plus a 3x3 gray one.
    fc = 512 * classes + classes
    assert _count(model) == 11_689_512 - 64 * 3 * 7 * 7 + 64 * 1 * 3 * 3 - 513_000 + fc


def test_resnet18_is_a_bare_name_without_a_model_option():
    teacher = Resnet18()
    teacher.check()
    assert teacher.model == "resnet18"
    assert "model" not in [o.name for o in describe(Resnet18)]
    model = teacher.build(10, IMAGE)
    assert model(torch.zeros(2, *IMAGE)).shape == (2, 10)


def test_unknown_torchvision_model_suggests_a_name():
    with pytest.raises(OptionError, match="did you mean 'resnet18'") as caught:
        TorchvisionTeacher(model="resnet19").check()
    assert caught.value.key == "model"
    assert "torchvision.models.list_models()" in caught.value.message


def test_small_input_families_are_resized_by_default():
    teacher = TorchvisionTeacher(model="alexnet")
    assert teacher.input_size(IMAGE) == 64  # 28x28 vanishes in its stride-4 stem and pools
    model = teacher.build(6, IMAGE)
    assert model.features[0].in_channels == 1
    assert model(torch.zeros(2, *IMAGE)).shape == (2, 6)


def test_families_that_take_28x28_are_not_resized():
    teacher = TorchvisionTeacher(model="mobilenet_v3_small")
    assert teacher.input_size(IMAGE) is None
    assert teacher.build(6, IMAGE)(torch.zeros(2, *IMAGE)).shape == (2, 6)


def test_a_vit_is_built_for_whole_patches():
    assert TorchvisionTeacher(model="vit_b_16").input_size(IMAGE) == 32
    assert TorchvisionTeacher(model="vit_h_14").input_size(IMAGE) is None


def test_too_small_resize_says_to_set_resize():
    with pytest.raises(KdbenchError, match=r"cannot take 40x40 images.*resize"):
        TorchvisionTeacher(model="alexnet", resize=40).build(6, IMAGE)


def test_teachers_are_registered_and_configurable(registry, write_config):
    assert {"lenet", "alexnet", "ensemble", "torchvision", "resnet18"} <= set(
        registry.names("teachers")
    )
    config = TINY.format(name="t").replace(
        'teachers = ["none", "lenet"]', 'teachers = ["resnet18", "alexnet", "ens"]'
    )
    spec = load_spec(
        write_config(config + ENSEMBLE.format(members='["lenet", "alexnet"]')), registry
    )
    assert spec.instance("teachers", "ens").component.member_names() == ["lenet", "alexnet"]
    with pytest.raises(ConfigError, match="at least 2") as caught:
        load_spec(write_config(config + ENSEMBLE.format(members='["lenet"]')), registry)
    assert caught.value.key == "teachers.ens.members"


ENSEMBLE = """
[teachers.ens]
plugin = "ensemble"
members = {members}
"""

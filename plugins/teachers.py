"""Classical teachers of the paper (§4.3), an ensemble of teachers, and torchvision models;
the registration of the teachers of flattened inputs too (flat_teachers.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import KdbenchError, OptionError, Teacher, as_image, did_you_mean, hookimpl, option

from .flat_teachers import Mlp, Sklearn


@dataclass(kw_only=True)
class LeNet(Teacher):
    """LeNet-5 for 1x28x28 images, as modified in the paper (tanh, average pooling)."""

    name: ClassVar[str] = "lenet"
    title: ClassVar[str | None] = "LeNet"

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        channels, height, width = as_image(input_shape, "LeNet")
        flat = 16 * ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
        return nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(flat, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )  # fmt: skip


@dataclass(kw_only=True)
class AlexNet(Teacher):
    """AlexNet for 1x28x28 images, as modified in the paper (three 3x3 convs, two 4096 fcs).

    conv 64@3x3 → pool → conv 192@3x3 → pool → conv 384@3x3 → dropout → fc 4096 → dropout →
    fc 4096 → fc C, ReLU after every conv and hidden fc; 94,672,074 parameters for 10 classes
    on 28x28 (the flattened 384·7·7 features feeding the first fc hold 81% of them).
    """

    name: ClassVar[str] = "alexnet"
    title: ClassVar[str | None] = "AlexNet"

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        channels, height, width = as_image(input_shape, "AlexNet")
        # Padding 1 keeps the size through each conv; the two 2x2 pools floor-halve it twice.
        flat = 384 * (height // 4) * (width // 4)
        return nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(flat, 4096), nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )  # fmt: skip


@dataclass(kw_only=True)
class Ensemble(Teacher):
    """Several teachers averaged: log of the mean of their softmax probabilities (Eq. 16).

    Each member is prepared (trained or loaded) as a teacher of its own; the ensemble has no
    weights, so its training options do not apply.
    """

    name: ClassVar[str] = "ensemble"
    title: ClassVar[str | None] = "Ensemble"

    members: list[str] = option(
        ["lenet", "alexnet"], help="teacher instance or plugin names (at least 2)"
    )

    def check(self) -> None:
        """Require two or more distinct members and no checkpoint of its own."""
        super().check()
        if len(self.members) < 2:
            raise OptionError(
                "members", f"an ensemble needs at least 2 teachers, got {self.members}"
            )
        repeated = sorted({m for m in self.members if self.members.count(m) > 1})
        if repeated:
            raise OptionError("members", f"repeats {', '.join(map(repr, repeated))}")
        if self.checkpoint is not None:
            raise OptionError(
                "checkpoint", "an ensemble has no weights of its own; give its members checkpoints"
            )

    def member_names(self) -> list[str]:
        return list(self.members)

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        raise TypeError(
            "an ensemble is built from its members: prepare each of member_names() and call "
            "combine(members), not build()"
        )

    def combine(self, members: list[nn.Module]) -> nn.Module:
        return AverageProbabilities(members)


class AverageProbabilities(nn.Module):
    """Maps images to log(mean_m softmax(member_m(images))): logits whose softmax is the mean."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([F.log_softmax(m(images), dim=1) for m in self.members])
        # logsumexp of log-probabilities: the mean probability without underflow of tiny ones.
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


# Smallest square input (pixels) some torchvision families accept, found by forward passes:
# their strided stems and pools shrink 28x28 to nothing (maxvit's attention windows need 7·32).
_MIN_SIZE = {
    "alexnet": 64,
    "convnext": 32,
    "densenet": 32,
    "inception": 75,
    "maxvit": 224,
    "vgg": 32,
}


@dataclass(kw_only=True)
class TorchvisionTeacher(Teacher):
    """A torchvision classification model (random init), adapted to small grayscale images.

    The first convolution takes the images' channels; a ResNet gets the CIFAR stem (3x3 conv,
    stride 1, no max-pool) so 28x28 keeps its size. Families that cannot take 28x28 are
    upsampled to their smallest workable size unless `resize` says otherwise; a ViT is built
    for the (resized) image size, rounded up to a multiple of its patch.
    """

    name: ClassVar[str] = "torchvision"

    model: str = option("resnet18", help="a name torchvision.models.list_models() lists")
    resize: int | None = option(
        None,
        help="upsample inputs to resize x resize first (default: only if the model needs it)",
        minimum=1,
    )

    def check(self) -> None:
        """Reject an unknown model name (with a suggestion) and a resize below one."""
        super().check()
        names = _torchvision_models()
        if self.model not in names:
            raise OptionError(
                "model",
                f"unknown torchvision model '{self.model}'{did_you_mean(self.model, names)};"
                " see torchvision.models.list_models()",
            )
        if self.resize is not None and self.resize < 1:
            raise OptionError("resize", f"must be >= 1, got {self.resize}")

    def input_size(self, image_shape: tuple[int, int, int]) -> int | None:
        """The square size inputs are upsampled to, or None to feed the images as they are."""
        _, height, width = image_shape
        if self.resize is not None:
            size = self.resize
        else:
            family = next((f for f in _MIN_SIZE if self.model.startswith(f)), None)
            needed = _MIN_SIZE[family] if family else 0
            size = max(needed, height, width) if min(height, width) < needed else None
        patch = _vit_patch(self.model)
        if patch:  # a ViT is built for one square size, a whole number of patches
            size = math.ceil((size or max(height, width)) / patch) * patch
            if size == height == width:
                size = None
        return size

    def build(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        from torchvision import models

        self.check()
        image_shape = as_image(input_shape, f"torchvision model '{self.model}'")
        channels, height, width = image_shape
        size = self.input_size(image_shape)
        kwargs: dict = {}
        if self.model in ("googlenet", "inception_v3"):
            # Auxiliary heads would make training return a tuple instead of logits.
            kwargs.update(aux_logits=False, init_weights=True)
        if _vit_patch(self.model):
            kwargs["image_size"] = size or height
        if self.model.startswith("maxvit"):
            kwargs["input_size"] = (size or height, size or width)
        model = models.get_model(self.model, weights=None, num_classes=num_classes, **kwargs)
        if isinstance(model, models.ResNet):
            _cifar_stem(model, channels)
        else:
            _first_conv_channels(model, channels)
        if size is not None:
            model.register_forward_pre_hook(Upsample(size))
        _try_forward(model, self.model, channels, height, width, size)
        return model


@dataclass(kw_only=True)
class Resnet18(TorchvisionTeacher):
    """ResNet-18 from torchvision with a CIFAR stem (3x3 conv, no max-pool), for 28x28."""

    name: ClassVar[str] = "resnet18"
    title: ClassVar[str | None] = "ResNet-18"

    # A class constant, not an option: this teacher is always a ResNet-18.
    model: ClassVar[str] = "resnet18"  # type: ignore[misc]


class Upsample:
    """Forward pre-hook resizing the input images (bilinear), kept out of the state dict."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        images, *rest = args
        resized = F.interpolate(
            images, size=(self.size, self.size), mode="bilinear", align_corners=False
        )
        return (resized, *rest)


def _torchvision_models() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)


def _vit_patch(model: str) -> int | None:
    """The patch size of a torchvision ViT name ('vit_b_16' -> 16), else None."""
    match = re.fullmatch(r"vit_\w_(\d+)", model)
    return int(match.group(1)) if match else None


def _cifar_stem(model: nn.Module, channels: int) -> None:
    """Replace a ResNet's 7x7/2 conv and max-pool by one 3x3/1 conv, as for CIFAR."""
    conv = nn.Conv2d(channels, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    model.conv1, model.maxpool = conv, nn.Identity()


def _first_conv_channels(model: nn.Module, channels: int) -> None:
    """Make the first Conv2d take `channels` input channels."""
    path, old = next((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if old.in_channels == channels:
        return
    new = nn.Conv2d(
        channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    with torch.no_grad():
        # Reuse the family's own initial weights, cycling over the original channels.
        new.weight.copy_(old.weight[:, torch.arange(channels) % old.in_channels])
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent), attr, new)


def _try_forward(
    model: nn.Module, name: str, channels: int, height: int, width: int, size: int | None
) -> None:
    """Run one image through `model`, turning a shape error into a one-line hint."""
    was_training = model.training
    model.eval()  # batch norm cannot train on a batch of one
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, height, width))
    except (RuntimeError, ValueError, AssertionError) as exc:  # ViTs assert their size
        fed = f"{size}x{size}" if size else f"{height}x{width}"
        reason = str(exc).strip().splitlines()[0]
        raise KdbenchError(
            f"torchvision model '{name}' cannot take {fed} images ({reason}); "
            "set the teacher's resize option to a larger size"
        ) from None
    finally:
        model.train(was_training)


@hookimpl
def register_teachers(register) -> None:
    register(LeNet)
    register(AlexNet)
    register(Ensemble)
    register(TorchvisionTeacher)
    register(Resnet18)
    register(Mlp)
    register(Sklearn)

"""Backbones: the reference's ResNet-18 variant, torchvision's resnet18, a small-input stem, and a
plain convolutional network for minutes-scale CPU runs.

Every backbone maps images (N, 3, H, W) to pooled features (N, num_features) and exposes the
``num_features`` attribute (timm's convention); ``feature_map(x)`` gives the last map before the
pooling, (N, num_features, H', W'), for heads that read the spatial map (capsule projectors). Nothing is ever downloaded: weights start random.

``resnet18`` is the ResNet-18 of the SIE (and VICReg) reference code, not torchvision's. It differs in
ways that change the pixel alignment and the parameter count, all reproduced here (facebookresearch/SIE ``src/resnet.py``):

* TF-"SAME"-style stem: the input is padded (left 2, right 3, top 2, bottom 3) before the 7x7 stride-2
  convolution (padding 0); the max-pool input is padded (0, 1, 0, 1) with -1e4 before a 3x3 stride-2
  pool (padding 0).
* In each basic block the stride sits on the *second* 3x3 convolution, which is padded (0, 1, 0, 1)
  with zeros (and has padding 0) when it strides; the first convolution never strides.
* The first block of every stage, layer1 included, has a projection shortcut (1x1 conv + BN), even
  where the shapes would allow an identity: 4,224 parameters more than torchvision, 11,180,736 in all.
* Kaiming-normal (fan_out, ReLU) convolutions, BN weight 1 / bias 0, and the last BN of every block
  initialised to 0 (``zero_init_residual``), so each block starts as its shortcut.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
...), which are also the reference's names, so a reference ``final_weights.pth`` loads strictly.

``small_stem=True`` replaces the 7x7/2 convolution and the max-pool by one 3x3 stride-1 convolution
(padding 1) for 32-64 px images (the CIFAR-style stem); the four stages are unchanged.

``width`` (the channels of the first stage, 64 in the reference) scales every stage of ``resnet18``:
stages ``w, 2w, 4w, 8w`` and an ``8w``-d output; ``width=32`` is a half-width ResNet-18 (2.8M parameters,
256-d). ``convnet`` is a plain 7-layer network of 3x3 convolutions with BatchNorm and ReLU (channels
``w, 2w, 2w, 4w, 4w, 8w, 8w``, stride 2 on the 2nd, 4th and 6th layer, global average pool; ``8w``-d
output; 1,163,936 parameters at the default ``w = 32``). It is no published architecture: it is the
backbone that learns relative rotation fastest per CPU second among the candidates measured in
benchmarks/README.md (the ``cpu`` preset), for 32 px inputs.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from sie.config import BACKBONE_DEFAULT_WIDTHS as DEFAULT_WIDTHS
from sie.config import backbone_dim

__all__ = [
    "BACKBONE_ARCHS",
    "DEFAULT_WIDTHS",
    "BackboneArch",
    "ConvNet",
    "ReferenceBasicBlock",
    "ReferenceResNet18",
    "TorchvisionResNet18",
    "backbone_dim",
    "build_backbone",
]

BackboneArch = Literal["resnet18", "torchvision_resnet18", "convnet"]
BACKBONE_ARCHS: tuple[str, ...] = get_args(BackboneArch)


# (output channels as a multiple of the base width, stride) of each ConvNet layer.
_CONVNET_LAYERS: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (2, 1), (4, 2), (4, 1), (8, 2), (8, 1))

# The value the reference pads the max-pool input with: far below any post-ReLU activation, so the pad
# never wins the max, and still finite in fp16/bf16.
_MAXPOOL_PAD_VALUE = -1e4


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions, BatchNorm weight 1 and bias 0, in place."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ReferenceBasicBlock(nn.Module):
    """The reference's basic block: two 3x3 convs, the stride on the second, a projection shortcut.

    Args:
        in_channels: channels of the block input.
        channels: channels of the block output.
        stride: 1 or 2; applied by ``conv2`` (padded (0, 1, 0, 1) when 2) and by the shortcut.
        projection: give the block a 1x1 conv + BN shortcut (else identity).
    """

    def __init__(self, in_channels: int, channels: int, stride: int, projection: bool) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if not projection and (stride != 1 or in_channels != channels):
            raise ValueError("an identity shortcut needs stride 1 and equal channel counts")
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            channels, channels, 3, stride=stride, padding=1 if stride == 1 else 0, bias=False
        )
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if projection:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, channels, ceil(H / stride), ceil(W / stride))."""
        out = self.relu(self.bn1(self.conv1(x)))
        if self.stride == 2:
            # TF "SAME" for an even input: the one extra pixel goes right/bottom.
            out = F.pad(out, (0, 1, 0, 1))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        result: Tensor = self.relu(out + shortcut)
        return result


def _stage(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    """Two basic blocks; the first has the stride and (always, as the reference) a projection shortcut."""
    return nn.Sequential(
        ReferenceBasicBlock(in_channels, channels, stride, projection=True),
        ReferenceBasicBlock(channels, channels, 1, projection=False),
    )


class ReferenceResNet18(nn.Module):
    """ResNet-18 exactly as the SIE reference builds it (see the module docstring); 512-d output.

    Args:
        small_stem: 3x3 stride-1 stem without max-pool, for 32-64 px inputs.
        zero_init_residual: zero the last BN of every block (the reference does).
        width: channels of the stem and the first stage (64 = the reference); the stages have
            ``width, 2 width, 4 width, 8 width`` channels and the output ``8 width`` dims.
    """

    num_features: int = 512

    def __init__(self, small_stem: bool = False, zero_init_residual: bool = True, width: int = 64) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.small_stem = small_stem
        self.num_features = 8 * width
        if small_stem:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        self.layer1 = _stage(width, width, stride=1)
        self.layer2 = _stage(width, 2 * width, stride=2)
        self.layer3 = _stage(2 * width, 4 * width, stride=2)
        self.layer4 = _stage(4 * width, 8 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        kaiming_init(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ReferenceBasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def feature_map(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> the last stage's map before pooling (N, 8 width, H', W').

        H' = ceil(H / 32) with the standard stem (8 x 8 for 256 px), ceil(H / 8) with the small stem.
        """
        if self.small_stem:
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.relu(self.bn1(self.conv1(F.pad(x, (2, 3, 2, 3)))))
            x = self.maxpool(F.pad(x, (0, 1, 0, 1), value=_MAXPOOL_PAD_VALUE))
        out: Tensor = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> pooled features (N, 8 width); (N, 512) for the reference."""
        return torch.flatten(self.avgpool(self.feature_map(x)), 1)


class TorchvisionResNet18(torchvision.models.ResNet):  # type: ignore[misc]  # torchvision has no stubs
    """torchvision's ``resnet18(weights=None)`` with ``fc = Identity``: (N, 3, H, W) -> (N, 512).

    Its keys are torchvision's, so its state dict loads into ``torchvision.models.resnet18()`` with
    ``strict=False`` (only ``fc`` is missing). ``small_stem`` swaps in a 3x3 stride-1 ``conv1`` and
    drops the max-pool. torchvision's default init (kaiming fan_out, no zero-init residual) is kept.
    """

    num_features: int = 512

    def __init__(self, small_stem: bool = False) -> None:
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
        self.fc = nn.Identity()
        if small_stem:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.maxpool = nn.Identity()

    def feature_map(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> the last stage's map before pooling (N, 512, H', W')."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: Tensor = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return out


class ConvNet(nn.Module):
    """A plain 7-layer CNN for small images: (N, 3, H, W) -> (N, 8 width).

    Each layer is a 3x3 convolution (padding 1, no bias) + BatchNorm + ReLU; channels ``w, 2w, 2w, 4w,
    4w, 8w, 8w`` with stride 2 on layers 2, 4 and 6 (a 32 px input ends at 4 x 4), then a global average
    pool. Convolutions use Kaiming-normal (fan_out, ReLU) init, BatchNorm weight 1 and bias 0, as the
    ResNets here. ``small_stem`` has no meaning for it (it has no separate stem) and must be False.

    Args:
        width: channels of the first layer (default 32: 1,163,936 parameters, 256-d output).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        layers: list[nn.Module] = []
        in_channels = 3
        for multiple, stride in _CONVNET_LAYERS:
            channels = multiple * width
            layers += [
                nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_channels
        kaiming_init(self)

    def feature_map(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> the last layer's map before pooling (N, 8 width, H / 8, W / 8)."""
        out: Tensor = self.features(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> pooled features (N, 8 width)."""
        return torch.flatten(self.avgpool(self.feature_map(x)), 1)


def build_backbone(arch: str, small_stem: bool = False, width: int = 0) -> nn.Module:
    """Build a randomly initialised backbone by name; the result has ``num_features``.

    Args:
        arch: ``resnet18`` (the reference's variant), ``torchvision_resnet18`` or ``convnet``.
        small_stem: 3x3 stride-1 stem without max-pool, for 32-64 px inputs (ResNets only).
        width: channels of the first stage; 0 = the architecture's default (64 for the ResNets, 32 for
            ``convnet``). ``torchvision_resnet18`` only exists at width 64.
    """
    if arch not in DEFAULT_WIDTHS:
        raise ValueError(f"unknown backbone arch {arch!r}; expected one of {', '.join(BACKBONE_ARCHS)}")
    width = width or DEFAULT_WIDTHS[arch]
    if arch == "resnet18":
        return ReferenceResNet18(small_stem=small_stem, width=width)
    if arch == "torchvision_resnet18":
        if width != 64:
            raise ValueError(f"torchvision_resnet18 has width 64 only, got {width}")
        return TorchvisionResNet18(small_stem=small_stem)
    if small_stem:
        raise ValueError("convnet has no stem to replace; small_stem must be False")
    return ConvNet(width=width)

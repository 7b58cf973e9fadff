"""Backbones: the reference ResNet-18's parameter count, padding/stride alignment, init; torchvision's."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from sie.config import BACKBONE_MIN_RESOLUTION
from sie.nn.backbones import (
    ConvNet,
    ReferenceBasicBlock,
    ReferenceResNet18,
    TorchvisionResNet18,
    backbone_dim,
    build_backbone,
)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_reference_resnet18_has_the_reference_parameter_count() -> None:
    # the SIE paper and facebookresearch/SIE: torchvision's ResNet-18 without fc (11,176,512) + the layer1 projection
    # shortcut (64*64 conv + 2*64 BN = 4,224).
    model = build_backbone("resnet18")
    assert _count(model) == 11_180_736
    assert model.num_features == 512
    tv = torchvision.models.resnet18()
    assert _count(model) == _count(tv) - _count(tv.fc) + 64 * 64 + 2 * 64


def test_reference_resnet18_shapes_at_256_and_projection_shortcuts() -> None:
    model = ReferenceResNet18().eval()
    sizes: dict[str, int] = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, out.shape[-1])
        )
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 512)  # a batch of one keeps its batch dimension
    assert sizes == {"layer1": 64, "layer2": 32, "layer3": 16, "layer4": 8}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        first, second = getattr(model, name)
        assert first.downsample is not None and second.downsample is None
        assert first.conv1.stride == (1, 1)  # the stride sits on conv2
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv2.padding == (0, 0)
    assert model.layer1[0].conv2.padding == (1, 1)


def test_stem_pads_tf_same_left2_right3() -> None:
    # A 7x7/2 conv whose only non-zero tap is (2, 2): with the reference's (2, 3, 2, 3) pad and padding 0,
    # output[i, j] = input[2i, 2j]. (torchvision's symmetric padding 3 would give input[2i - 1, 2j - 1].)
    model = ReferenceResNet18().eval()
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.weight[0, 0, 2, 2] = 1.0
        captured: list[torch.Tensor] = []
        model.conv1.register_forward_hook(lambda _m, _i, out: captured.append(out))
        image = torch.randn(1, 3, 32, 32)
        model(image)
    assert captured[0].shape[-2:] == (16, 16)
    torch.testing.assert_close(captured[0][0, 0], image[0, 0, ::2, ::2])


def test_strided_conv2_pads_right_and_bottom_only() -> None:
    block = ReferenceBasicBlock(1, 1, stride=2, projection=True).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.weight[0, 0, 0, 0] = 1.0  # top-left tap: output[i, j] = input[2i, 2j] with (0, 1, 0, 1)
        captured: list[torch.Tensor] = []
        block.conv2.register_forward_hook(lambda _m, inp, out: captured.extend([inp[0], out]))
        block(torch.randn(1, 1, 8, 8))
    conv2_input, conv2_output = captured
    assert conv2_input.shape[-2:] == (9, 9)  # 8 + right/bottom pad of 1
    assert conv2_output.shape[-2:] == (4, 4)
    torch.testing.assert_close(conv2_output[0, 0], conv2_input[0, 0, 0:8:2, 0:8:2])


def test_maxpool_input_is_padded_with_minus_1e4() -> None:
    model = ReferenceResNet18().eval()
    captured: list[torch.Tensor] = []
    model.maxpool.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    padded = captured[0]
    assert padded.shape[-2:] == (17, 17)  # 16 + (0, 1, 0, 1)
    assert torch.all(padded[..., -1, :] == -1e4) and torch.all(padded[..., :, -1] == -1e4)
    assert torch.all(padded[..., :-1, :-1] >= 0)  # post-ReLU activations


def test_reference_init_zero_residual_and_kaiming_fan_out() -> None:
    model = ReferenceResNet18()
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for block in getattr(model, name):
            assert torch.all(block.bn2.weight == 0)
            assert torch.all(block.bn1.weight == 1) and torch.all(block.bn1.bias == 0)
    # kaiming normal, fan_out, gain sqrt(2): std = sqrt(2 / (out_channels * k * k)).
    weight = model.layer4[1].conv1.weight
    expected_std = (2 / (512 * 9)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)


def test_small_stem_for_small_inputs() -> None:
    model = build_backbone("resnet18", small_stem=True).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 512)
    assert _count(model) == 11_180_736 - 3 * 64 * (49 - 9)


def test_torchvision_variant_loads_into_torchvision_resnet18() -> None:
    model = build_backbone("torchvision_resnet18").eval()
    assert isinstance(model, TorchvisionResNet18) and model.num_features == 512
    reference = torchvision.models.resnet18().eval()
    result = reference.load_state_dict(model.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    reference.fc = nn.Identity()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(image), reference(image))
    small = build_backbone("torchvision_resnet18", small_stem=True).eval()
    with torch.no_grad():
        assert small(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def test_state_dict_round_trip_and_unknown_arch() -> None:
    model = build_backbone("resnet18", small_stem=True)
    fresh = build_backbone("resnet18", small_stem=True)
    fresh.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="unknown backbone arch 'resnet50'"):
        build_backbone("resnet50")


def test_convnet_layers_parameter_count_and_output() -> None:
    model = build_backbone("convnet")
    assert isinstance(model, ConvNet) and model.num_features == 256
    # Seven 3x3 convs without bias (in * out * 9) and their BatchNorms (2 * out), width 32.
    channels = [3, 32, 64, 64, 128, 128, 256, 256]
    expected = sum(9 * i * o + 2 * o for i, o in itertools.pairwise(channels))
    assert _count(model) == expected == 1_163_936
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1]
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    wide = build_backbone("convnet", width=8)
    assert wide.num_features == 64 and backbone_dim("convnet", 8) == 64


def test_resnet18_width_scales_every_stage() -> None:
    half = build_backbone("resnet18", small_stem=True, width=32).eval()
    assert half.num_features == 256 == backbone_dim("resnet18", 32)
    assert [getattr(half, f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3, 4)] == [32, 64, 128, 256]
    with torch.no_grad():
        assert half(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    # Every conv scales its in and out channels by 1/2 except the RGB input of the stem.
    full = build_backbone("resnet18", small_stem=True)
    full_convs = sum(m.weight.numel() for m in full.modules() if isinstance(m, nn.Conv2d))
    half_convs = sum(m.weight.numel() for m in half.modules() if isinstance(m, nn.Conv2d))
    stem = 3 * 64 * 9
    assert half_convs == (full_convs - stem) // 4 + stem // 2
    assert backbone_dim("resnet18") == 512  # width 0 = the reference's 64


def test_backbone_build_errors() -> None:
    with pytest.raises(ValueError, match="convnet has no stem"):
        build_backbone("convnet", small_stem=True)
    with pytest.raises(ValueError, match="torchvision_resnet18 has width 64 only"):
        build_backbone("torchvision_resnet18", width=32)
    with pytest.raises(ValueError, match="width must be positive"):
        ConvNet(width=-1)


@pytest.mark.parametrize(("arch", "small_stem"), sorted(BACKBONE_MIN_RESOLUTION))
def test_the_documented_minimum_resolution_is_the_boundary(arch: str, small_stem: bool) -> None:
    smallest = BACKBONE_MIN_RESOLUTION[(arch, small_stem)]
    backbone = build_backbone(arch, small_stem=small_stem).eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, smallest, smallest)).shape[0] == 1
        if smallest > 1:
            with pytest.raises(RuntimeError):
                backbone(torch.randn(1, 3, smallest - 1, smallest - 1))

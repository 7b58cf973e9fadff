"""Self-routing capsule layer and capsule projector against a plain loop over positions and capsules;
the backbones' feature maps."""

from __future__ import annotations

import math

import pytest
import torch

from sie.nn.backbones import build_backbone
from sie.nn.capsules import CapsuleProjector, SelfRouting2d, feature_map_size


def plain_self_routing(
    layer: SelfRouting2d, activations: torch.Tensor, poses: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SR-CapsNet formulas, one output position, input capsule and output capsule at a time (float64).

    Input capsule index i = (window row, window column, input type) in that order, as the layer's
    weights are laid out; zero padding pads both activations and poses with zeros.
    """
    n, a_caps, h, w = activations.shape
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    b_caps, c_dims, d_dims = layer.out_caps, layer.in_dims, layer.out_dims
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    vote_w = layer.vote_weight.detach().double() if layer.vote_weight is not None else None
    route_w = layer.route_weight.detach().double()
    route_b = layer.route_bias.detach().double()
    act = activations.double()
    pose = poses.double().view(n, a_caps, c_dims, h, w)
    out_act = torch.zeros(n, b_caps, out_h, out_w, dtype=torch.float64)
    out_pose = torch.zeros(n, b_caps, d_dims, out_h, out_w, dtype=torch.float64)
    for sample in range(n):
        for oy in range(out_h):
            for ox in range(out_w):
                inputs = []  # (a_i, u_i) of the window, index i in the layer's order
                for ky in range(k):
                    for kx in range(k):
                        y, x = oy * s + ky - p, ox * s + kx - p
                        inside = 0 <= y < h and 0 <= x < w
                        for cap in range(a_caps):
                            a_i = float(act[sample, cap, y, x]) if inside else 0.0
                            u_i = (
                                pose[sample, cap, :, y, x]
                                if inside
                                else torch.zeros(c_dims, dtype=torch.float64)
                            )
                            inputs.append((a_i, u_i))
                weighted = []  # a_i r_ij
                for i, (a_i, u_i) in enumerate(inputs):
                    logits = [float(route_w[i, j] @ u_i) + float(route_b[i, j]) for j in range(b_caps)]
                    top = max(logits)
                    exps = [math.exp(v - top) for v in logits]
                    weighted.append([a_i * e / sum(exps) for e in exps])
                total_a = sum(a_i for a_i, _ in inputs)
                for j in range(b_caps):
                    mass = sum(weighted[i][j] for i in range(len(inputs)))
                    out_act[sample, j, oy, ox] = mass / total_a
                    if vote_w is None:
                        continue
                    for i, (_, u_i) in enumerate(inputs):
                        vote = vote_w[i, j * d_dims : (j + 1) * d_dims] @ u_i
                        out_pose[sample, j, :, oy, ox] += weighted[i][j] / mass * vote
    return out_act, out_pose.view(n, b_caps * d_dims, out_h, out_w)


def _randomised(layer: SelfRouting2d, seed: int) -> SelfRouting2d:
    # Routing weights start at zero (uniform routing); random ones test the routing itself.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.route_weight.copy_(torch.randn(layer.route_weight.shape, generator=gen))
        layer.route_bias.copy_(torch.randn(layer.route_bias.shape, generator=gen))
    return layer


@pytest.mark.parametrize(
    ("in_caps", "out_caps", "in_dims", "out_dims", "kernel", "stride", "padding", "size"),
    [(2, 3, 4, 2, 3, 1, 1, 4), (3, 2, 2, 3, 3, 2, 1, 5), (2, 4, 9, 9, 3, 1, 0, 3), (1, 1, 1, 1, 1, 1, 0, 2)],
)
def test_self_routing_matches_the_plain_loop(
    in_caps: int,
    out_caps: int,
    in_dims: int,
    out_dims: int,
    kernel: int,
    stride: int,
    padding: int,
    size: int,
) -> None:
    torch.manual_seed(0)
    layer = _randomised(SelfRouting2d(in_caps, out_caps, in_dims, out_dims, kernel, stride, padding), 1)
    activations = torch.rand(2, in_caps, size, size) + 0.05
    poses = torch.randn(2, in_caps * in_dims, size, size)
    out_a, out_u = layer.double()(activations.double(), poses.double())
    plain_a, plain_u = plain_self_routing(layer, activations, poses)
    out_h, out_w = layer.output_size(size, size)
    assert out_a.shape == (2, out_caps, out_h, out_w)
    assert out_u is not None and out_u.shape == (2, out_caps * out_dims, out_h, out_w)
    torch.testing.assert_close(out_a, plain_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out_u, plain_u, rtol=1e-10, atol=1e-12)
    # Without padding, each position's output activations form a distribution over the output types.
    if padding == 0:
        torch.testing.assert_close(out_a.sum(1), torch.ones(2, out_h, out_w, dtype=torch.float64))


def test_self_routing_by_hand() -> None:
    # One output position, 1x1 window, two input capsules with 1-d poses, two output capsules.
    layer = SelfRouting2d(2, 2, 1, 1, kernel_size=1, padding=0)
    with torch.no_grad():
        layer.route_weight.zero_()
        layer.route_bias.copy_(
            torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
        )  # r_0 = (3/4, 1/4), r_1 = (1/2, 1/2)
        layer.vote_weight.copy_(
            torch.tensor([[[2.0], [1.0]], [[4.0], [-1.0]]])
        )  # v_0 = (2u, u), v_1 = (4u, -u)
    # a 1x1 kernel routes each position on its own: use a 1x1 map with 2 types.
    a = torch.tensor([0.5, 1.0]).view(1, 2, 1, 1)
    u = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    out_a, out_u = layer(a, u)
    # a_i r_ij: capsule 0 -> (0.375, 0.125), capsule 1 -> (0.5, 0.5); masses (0.875, 0.625); sum a = 1.5
    torch.testing.assert_close(out_a.flatten(), torch.tensor([0.875 / 1.5, 0.625 / 1.5]))
    # poses: type 0 = (0.375 * 2 + 0.5 * 8) / 0.875; type 1 = (0.125 * 1 + 0.5 * -2) / 0.625
    assert out_u is not None
    torch.testing.assert_close(out_u.flatten(), torch.tensor([4.75 / 0.875, -0.875 / 0.625]))


def test_activation_only_layer_and_bad_shapes() -> None:
    layer = SelfRouting2d(3, 5, 4, 4, kernel_size=1, padding=0, pose_out=False)
    assert layer.vote_weight is None
    out_a, out_u = layer(torch.rand(2, 3, 1, 1) + 0.1, torch.randn(2, 12, 1, 1))
    assert out_u is None and out_a.shape == (2, 5, 1, 1)
    with pytest.raises(ValueError, match="expected activations"):
        layer(torch.rand(2, 3, 1, 1), torch.randn(2, 11, 1, 1))


def test_capsule_projector_matches_the_plain_loop_and_trains() -> None:
    torch.manual_seed(0)
    projector = CapsuleProjector(in_channels=6, num_capsules=4, pose_dims=9, map_size=3).double()
    _randomised(projector.routing, 2)
    x = torch.randn(5, 6, 3, 3, dtype=torch.float64)
    activations, poses = projector(x)
    assert activations.shape == (5, 4) and poses.shape == (5, 4, 9)
    torch.testing.assert_close(activations.sum(1), torch.ones(5, dtype=torch.float64))
    primary_a = torch.sigmoid(projector.bn_activation(projector.conv_activation(x)))
    primary_u = projector.bn_pose(projector.conv_pose(x))
    plain_a, plain_u = plain_self_routing(projector.routing, primary_a.detach(), primary_u.detach())
    torch.testing.assert_close(activations.detach(), plain_a.view(5, 4))
    torch.testing.assert_close(poses.detach(), plain_u.view(5, 4, 9))
    (activations.square().sum() + poses.sum()).backward()
    for name, parameter in projector.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="built for a 3 x 3 map"):
        projector(torch.randn(2, 6, 4, 4, dtype=torch.float64))


def test_initial_weights_as_the_reference() -> None:
    layer = SelfRouting2d(32, 32, 9, 9, kernel_size=8, padding=0)
    assert layer.vote_weight is not None and layer.vote_weight.shape == (64 * 32, 32 * 9, 9)
    assert layer.route_weight.shape == (64 * 32, 32, 9) and layer.route_bias.shape == (64 * 32, 32)
    assert torch.all(layer.route_weight == 0) and torch.all(layer.route_bias == 0)
    # Kaiming normal, fan-in = B D C = 32 * 9 * 9
    assert abs(float(layer.vote_weight.detach().std()) - math.sqrt(2 / (32 * 9 * 9))) < 0.01 * math.sqrt(
        2 / 2592
    )


@pytest.mark.parametrize(
    ("arch", "small_stem", "resolution", "expected"),
    [
        ("resnet18", False, 64, (512, 2, 2)),
        ("resnet18", True, 16, (512, 2, 2)),
        ("torchvision_resnet18", False, 64, (512, 2, 2)),
        ("convnet", False, 32, (256, 4, 4)),
    ],
)
def test_backbone_feature_map_pools_to_the_representation(
    arch: str, small_stem: bool, resolution: int, expected: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(arch, small_stem=small_stem).eval()
    assert feature_map_size(backbone, resolution) == expected
    assert not backbone.training
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        pooled = backbone(x)
        torch.testing.assert_close(backbone.feature_map(x).mean(dim=(2, 3)), pooled)
    backbone.train()
    before = [buf.clone() for buf in backbone.buffers()]
    feature_map_size(backbone, resolution)
    assert backbone.training and all(
        torch.equal(a, b) for a, b in zip(before, backbone.buffers(), strict=True)
    )


def test_reference_map_size_at_256_px() -> None:
    assert feature_map_size(build_backbone("resnet18"), 256) == (512, 8, 8)


def test_routing_runs_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    projector = CapsuleProjector(in_channels=8, num_capsules=32, pose_dims=9, map_size=4)
    _randomised(projector.routing, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        activations, poses = projector(torch.randn(6, 8, 4, 4))
    assert activations.dtype == poses.dtype == torch.float32
    torch.testing.assert_close(activations.sum(1), torch.ones(6), rtol=0, atol=1e-6)

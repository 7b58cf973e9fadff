"""Self-routing capsule layers (SR-CapsNet, Hahn, Pyeon & Kim, NeurIPS 2019) and the capsule projector of
EquiCaps (Konstantinou et al., arXiv 2506.09895) and CapsIE (Everett et al., arXiv 2405.14386).

A capsule layer reads A input capsule types on an (H, W) grid, each with an activation a_i in (0, 1)
and a pose vector u_i of C values, and writes B output capsule types, each with an activation and a
pose of D values. A 2-D self-routing layer looks at a k x k window of input capsules (kk A of them,
indexed i) for every output position l, as a convolution does. For each input capsule i and output
type j:

    votes       v_ij = W_ij u_i                   (D,)   one D x C matrix per (i, j)
    routing     r_ij = softmax_j(G_j u_i + b_ij)         each input capsule routes itself (no iteration)
    activation  a_j  = sum_i a_i r_ij / sum_i a_i
    pose        p_j  = sum_i (a_i r_ij / sum_i' a_i' r_i'j) v_ij

Because ``sum_j r_ij = 1``, the output activations of one position sum to 1 over the B types: they are
a probability distribution, which is what EquiCaps and CapsIE compare between views. The index i runs
over (window position, input type) with the window position outer, as in coder3000/SR-CapsNet, so the
weight layout matches that code (``W1`` -> :attr:`SelfRouting2d.vote_weight`, ``W2`` ->
``route_weight``, ``b2`` -> ``route_bias``).

Everything is one batched contraction (``torch.einsum``) over positions, capsules and windows: no
Python loop over capsules runs on the training path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CapsuleProjector", "SelfRouting2d", "feature_map_size"]


class SelfRouting2d(nn.Module):
    """A 2-D self-routing capsule layer (see the module docstring).

    Args:
        in_caps: A, input capsule types.
        out_caps: B, output capsule types.
        in_dims: C, values of an input pose.
        out_dims: D, values of an output pose.
        kernel_size: k, side of the window of input positions one output position reads.
        stride, padding: as a convolution's.
        pose_out: compute output poses (False: activations only, as a classification head).

    Parameters (kk = k * k):
        vote_weight: (kk A, B D, C), Kaiming-normal as the reference (fan-in B D C).
        route_weight: (kk A, B, C), zeros: routing starts uniform.
        route_bias: (kk A, B), zeros.
    """

    def __init__(
        self,
        in_caps: int,
        out_caps: int,
        in_dims: int,
        out_dims: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        pose_out: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_caps", in_caps), ("out_caps", out_caps), ("in_dims", in_dims)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if pose_out and out_dims < 1:
            raise ValueError(f"out_dims must be >= 1 with pose_out, got {out_dims}")
        if kernel_size < 1 or stride < 1 or padding < 0:
            raise ValueError(f"bad window: kernel_size={kernel_size}, stride={stride}, padding={padding}")
        self.in_caps, self.out_caps = in_caps, out_caps
        self.in_dims, self.out_dims = in_dims, out_dims
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.pose_out = pose_out
        inputs = kernel_size * kernel_size * in_caps
        self.vote_weight: nn.Parameter | None = None
        if pose_out:
            self.vote_weight = nn.Parameter(torch.empty(inputs, out_caps * out_dims, in_dims))
            nn.init.kaiming_normal_(self.vote_weight)
        self.route_weight = nn.Parameter(torch.zeros(inputs, out_caps, in_dims))
        self.route_bias = nn.Parameter(torch.zeros(inputs, out_caps))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output grid (H', W') for an (H, W) input grid, as a convolution with this window."""
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def _windows(self, x: Tensor, per_capsule: int) -> Tensor:
        """(N, A per_capsule, H, W) -> (N, L, kk A, per_capsule): every window, window position outer."""
        n, _, h, w = x.shape
        kk = self.kernel_size * self.kernel_size
        if self.padding == 0 and (h, w) == (self.kernel_size, self.kernel_size):
            # One window covering the whole map (the projector's case): the map itself, without im2col's
            # copy (which is slow on CPU for this shape).
            cols = x.reshape(n, -1, 1)
        else:
            cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (N, A c kk, L)
        cols = cols.view(n, self.in_caps, per_capsule, kk, cols.shape[-1])
        return cols.permute(0, 4, 3, 1, 2).reshape(n, cols.shape[-1], kk * self.in_caps, per_capsule)

    def forward(self, activations: Tensor, poses: Tensor) -> tuple[Tensor, Tensor | None]:
        """Route one layer.

        Args:
            activations: (N, A, H, W) input activations, positive (e.g. a sigmoid).
            poses: (N, A C, H, W) input poses, capsule-major (capsule i owns channels i C ... i C + C - 1).

        Returns:
            ``(activations (N, B, H', W'), poses (N, B D, H', W') or None without pose_out)``.
        """
        n, a, h, w = activations.shape
        if a != self.in_caps or poses.shape != (n, a * self.in_dims, h, w):
            raise ValueError(
                f"expected activations (N, {self.in_caps}, H, W) and poses (N, {self.in_caps * self.in_dims}, "
                f"H, W); got {tuple(activations.shape)} and {tuple(poses.shape)}"
            )
        out_h, out_w = self.output_size(h, w)
        u = self._windows(poses, self.in_dims)  # (N, L, I, C), I = kk A
        act = self._windows(activations, 1)[..., 0]  # (N, L, I)
        logits = torch.einsum("ibc,nlic->nlib", self.route_weight, u) + self.route_bias
        routing = torch.softmax(logits, dim=-1)  # (N, L, I, B)
        weighted = act.unsqueeze(-1) * routing  # a_i r_ij
        mass = weighted.sum(dim=2)  # (N, L, B)
        out_act = mass / act.sum(dim=2, keepdim=True)
        out_act = out_act.transpose(1, 2).reshape(n, self.out_caps, out_h, out_w)
        if self.vote_weight is None:
            return out_act, None
        votes = torch.einsum("ioc,nlic->nlio", self.vote_weight, u)
        votes = votes.view(*votes.shape[:3], self.out_caps, self.out_dims)  # (N, L, I, B, D)
        coefficients = weighted / mass.unsqueeze(2)
        out_pose = torch.einsum("nlib,nlibd->nlbd", coefficients, votes)
        out_pose = out_pose.reshape(n, -1, self.out_caps * self.out_dims).transpose(1, 2)
        return out_act, out_pose.reshape(n, self.out_caps * self.out_dims, out_h, out_w)


class CapsuleProjector(nn.Module):
    """The capsule projector on a backbone's last map (EquiCaps' ``CapsNetNoStem``, CapsIE's SR projector).

    Primary capsules: ``a = sigmoid(BN(conv3x3(x)))`` (K types) and ``u = BN(conv3x3(x))`` (K poses of
    P values), both convolutions without bias; then one self-routing layer whose window covers the whole
    (S, S) map (no padding), so each of the K output capsules sees every primary capsule.

    Args:
        in_channels: channels of the backbone's map.
        num_capsules: K, capsule types (primary and output).
        pose_dims: P, values of a pose (9 = a 3 x 3 matrix, 16 = 4 x 4).
        map_size: S, side of the backbone's (square) map.

    Forward: map (N, in_channels, S, S) -> ``(activations (N, K), poses (N, K, P))``; the activations of
    one sample sum to 1. The routing layer runs in float32 even under autocast (float64 stays float64).
    """

    def __init__(self, in_channels: int, num_capsules: int, pose_dims: int, map_size: int) -> None:
        super().__init__()
        if map_size < 1:
            raise ValueError(f"map_size must be >= 1, got {map_size}")
        self.num_capsules, self.pose_dims, self.map_size = num_capsules, pose_dims, map_size
        self.conv_activation = nn.Conv2d(in_channels, num_capsules, 3, padding=1, bias=False)
        self.conv_pose = nn.Conv2d(in_channels, num_capsules * pose_dims, 3, padding=1, bias=False)
        self.bn_activation = nn.BatchNorm2d(num_capsules)
        self.bn_pose = nn.BatchNorm2d(num_capsules * pose_dims)
        self.routing = SelfRouting2d(
            num_capsules, num_capsules, pose_dims, pose_dims, kernel_size=map_size, padding=0, pose_out=True
        )

    def forward(self, feature_map: Tensor) -> tuple[Tensor, Tensor]:
        if feature_map.shape[-2:] != (self.map_size, self.map_size):
            raise ValueError(
                f"the capsule projector was built for a {self.map_size} x {self.map_size} map; got "
                f"{tuple(feature_map.shape[-2:])} (is data.resolution the one it was built for?)"
            )
        a = torch.sigmoid(self.bn_activation(self.conv_activation(feature_map)))
        u = self.bn_pose(self.conv_pose(feature_map))
        # Routing normalises by sums over S² K inputs; in bf16 (8-bit mantissa) a view's activations
        # stop summing to 1 (measured: MEMAX below 0 under the cpu preset), so it runs in float32
        # (at most a few % of a step: benchmarks/README.md).
        with torch.autocast(device_type=feature_map.device.type, enabled=False):
            out_a, out_u = self.routing(_full_precision(a), _full_precision(u))
        assert out_u is not None  # pose_out=True
        n = feature_map.shape[0]
        return out_a.reshape(n, self.num_capsules), out_u.reshape(n, self.num_capsules, self.pose_dims)


def _full_precision(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def feature_map_size(backbone: nn.Module, resolution: int) -> tuple[int, int, int]:
    """(channels, H', W') of ``backbone.feature_map`` for a ``resolution`` px square input.

    One forward of a blank image in eval mode without gradient (so BatchNorm statistics do not move);
    the backbone's training flag is restored.
    """
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            probe = next(backbone.parameters())
            blank = torch.zeros(1, 3, resolution, resolution, dtype=probe.dtype, device=probe.device)
            shape = backbone.feature_map(blank).shape  # type: ignore[operator]
    finally:
        backbone.train(was_training)
    return int(shape[1]), int(shape[2]), int(shape[3])

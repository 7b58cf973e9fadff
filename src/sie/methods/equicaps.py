"""EquiCaps: predictor-free pose-aware capsules (Konstantinou et al., arXiv 2506.09895; AberdeenML/EquiCaps).

The backbone keeps its last map (N, D, S, S), which feeds a capsule projector
(:class:`sie.nn.capsules.CapsuleProjector`): K capsules, each with an activation (the K activations of
a view sum to 1: the invariant part) and an s x s pose matrix (the equivariant part; s = 3 for
rotation, 4 for SE(3) on 3DIEBench-T). There is no learned predictor: view a's poses are right-multiplied
by the known relative transformation ``G`` (``R_a^-1 R_b``, or ``M_a^-1 M_b`` of 4 x 4 poses), so a pose
that follows the object (``P = C R``) maps exactly onto view b's (``C R_a R_a^-1 R_b = C R_b``):

    A_x, A_y = activations (N, K)           U_x, U_y = poses (N, K, s, s)
    Û   = F(U_x G)                           F = Frobenius normalisation of every s x s matrix
    L   = sim  * mean_n sum_k -A_y log A_x                  loss/inv     (cross-entropy, local batch)
        + equi * MSE(Û, F(U_y))                             loss/equi    (local batch)
        + std  * (V(Z_x) + V(Z_y)) / 2                      loss/std     (gathered)
        + memax * (MEMAX(A_x) + MEMAX(A_y))                 loss/memax   (gathered: log K - H(mean A))
        + cov  * (C(Z_x) + C(Z_y))                          loss/cov     (gathered, D = K + K s²)
    Z_x = [A_x, Û], Z_y = [A_y, F(U_y)]

The representation the evaluation probes is the backbone's map average-pooled (as the reference's
evaluation scripts do for classification, rotation, translation and colour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sie import geometry
from sie.config import Config, param
from sie.data.batch import Batch
from sie.data.targets import SE3_FRAMES, relative_se3, transform_dim
from sie.distributed import gather_with_grad
from sie.errors import ConfigError
from sie.losses import distribution_cross_entropy, invariance_loss, mean_entropy_maximisation
from sie.methods.base import Method, MethodOutput, covariance_denominator, vicreg_regularizers
from sie.methods.registry import register_method
from sie.nn.capsules import CapsuleProjector, feature_map_size

__all__ = [
    "EquiCaps",
    "EquiCapsConfig",
    "capsule_backbone_projector",
    "equicaps_loss",
    "frobenius_normalize",
]

_TERMS = ("loss/inv", "loss/equi", "loss/std", "loss/cov", "loss/memax")


@dataclass(frozen=True)
class EquiCapsConfig:
    """``model.equicaps.*``; defaults = the README command of AberdeenML/EquiCaps."""

    capsules: int = param(32, "capsule types K (the last number of the reference's --mlp 1111-16-32)")
    pose: Literal["3x3", "4x4"] = param(
        "3x3", "pose matrices: 3x3 (rotation) or 4x4 (SE(3): rotation + translation, -T datasets only)"
    )
    frame: Literal["object", "base"] = param(
        "object", "4x4 only: a view's pose is T R (object frame) or R T (base frame, --base-frame)"
    )
    sim_coeff: float = param(0.1, "weight of the activation cross-entropy (--sim-coeff)")
    equi_factor: float = param(5.0, "weight of the pose MSE (--equi-factor)")
    std_coeff: float = param(10.0, "weight of the variance term (--std-coeff)")
    cov_coeff: float = param(1.0, "weight of the covariance term (--cov-coeff)")
    memax_coeff: float = param(1.0, "weight of the mean-entropy-maximisation term (1 in the reference)")


def frobenius_normalize(matrices: Tensor) -> Tensor:
    """Divide every (s, s) matrix of (..., s, s) by its Frobenius norm (no epsilon, as the reference)."""
    norms: Tensor = torch.linalg.matrix_norm(matrices, keepdim=True)
    return matrices / norms


def equicaps_loss(
    activations_x: Tensor,
    activations_y: Tensor,
    poses_x: Tensor,
    poses_y: Tensor,
    transform: Tensor,
    cov_denominator: float | None,
) -> dict[str, Tensor]:
    """The unweighted EquiCaps terms (module docstring).

    Args:
        activations_x, activations_y: (N, K) capsule activations of views a and b (rows sum to 1).
        poses_x, poses_y: (N, K, s, s) pose matrices.
        transform: (N, s, s) relative transformation from a to b, right-multiplied onto view a's poses.
        cov_denominator: what the covariance divides by (None = the gathered N - 1).

    Returns:
        ``{"loss/inv", "loss/equi", "loss/std", "loss/cov", "loss/memax"}`` (unweighted scalars).
    """
    n = activations_x.shape[0]
    transformed = frobenius_normalize(poses_x.float() @ transform.float().unsqueeze(1))
    target = frobenius_normalize(poses_y.float())
    terms = {
        "loss/inv": distribution_cross_entropy(activations_y, activations_x),
        "loss/equi": invariance_loss(transformed.reshape(n, -1), target.reshape(n, -1)),
        "loss/memax": mean_entropy_maximisation(gather_with_grad(activations_x))
        + mean_entropy_maximisation(gather_with_grad(activations_y)),
    }
    z_x = torch.cat([activations_x.float(), transformed.reshape(n, -1)], dim=1)
    z_y = torch.cat([activations_y.float(), target.reshape(n, -1)], dim=1)
    terms["loss/std"], terms["loss/cov"] = vicreg_regularizers(z_x, z_y, cov_denominator)
    return terms


def capsule_backbone_projector(
    method: Method, cfg: Config, capsules: int, pose_dims: int, section: str
) -> CapsuleProjector:
    """A capsule projector on ``method.backbone``'s last map at ``data.resolution`` (refusals name the keys)."""
    if capsules < 1:
        raise ConfigError(f"model.{section}.capsules={capsules} must be >= 1")
    channels, height, width = feature_map_size(method.backbone, cfg.data.resolution)
    if height != width:
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} gives a {height} x {width} map; the capsule projector "
            "needs a square one"
        )
    return CapsuleProjector(channels, capsules, pose_dims, height)


@register_method(
    "equicaps",
    description="EquiCaps: capsule projector, activations invariant, pose matrices moved by the known transform",
    terms=_TERMS,
    reference="AberdeenML/EquiCaps EquiCaps_3x3, EquiCaps_4x4",
    section=EquiCapsConfig,
    keys=("model.cov_denominator",),
)
class EquiCaps(Method):
    """EquiCaps (module docstring). ``model.equicaps.pose=4x4`` needs a -T dataset (10-value latents)."""

    def __init__(self, cfg: Config, transform_dim_: int) -> None:
        super().__init__(cfg, transform_dim_)
        opts: EquiCapsConfig = cfg.model.section("equicaps")
        self.opts = opts
        kind = cfg.data.transform
        dataset = cfg.data.root or "(no dataset given)"
        if kind == "euler":
            raise ConfigError(
                "model.method='equicaps' reads the relative rotation from the quaternion parameters; "
                f"data.transform='euler' gives Euler angles (use quat, rotcolor or all) for {dataset}"
            )
        self.pose_side = 3 if opts.pose == "3x3" else 4
        if self.pose_side == 4:
            if opts.frame not in SE3_FRAMES:
                raise ConfigError(
                    f"model.equicaps.frame={opts.frame!r} must be one of {', '.join(SE3_FRAMES)}"
                )
            if transform_dim_ != transform_dim(kind, 10):
                raise ConfigError(
                    f"model.equicaps.pose='4x4' needs translations, but dataset {dataset} has none "
                    f"(data.transform={kind!r} gives {transform_dim_} parameters per pair, "
                    f"{transform_dim(kind, 10)} with translations); use pose=3x3 or a -T dataset "
                    "(`sie render --variant T`)"
                )
        for key in ("sim_coeff", "equi_factor", "std_coeff", "cov_coeff", "memax_coeff"):
            if getattr(opts, key) < 0:
                raise ConfigError(f"model.equicaps.{key}={getattr(opts, key)} must be >= 0")
        self.projector = capsule_backbone_projector(self, cfg, opts.capsules, self.pose_side**2, "equicaps")
        self.cov_denominator = covariance_denominator(cfg)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Images (N, 3, H, W) -> pooled representation (N, D), activations (N, K), poses (N, K, s, s)."""
        feature_map = self.backbone.feature_map(images)  # type: ignore[operator]
        activations, poses = self.projector(feature_map)
        pooled = feature_map.mean(dim=(2, 3))
        return pooled, activations, poses.reshape(len(poses), -1, self.pose_side, self.pose_side)

    def relative_transform(self, batch: Batch) -> Tensor:
        """(B, s, s) transformation from view a to view b that view a's poses are right-multiplied by.

        3 x 3: ``R_a^-1 R_b`` from the quaternion parameters; 4 x 4: ``M_a^-1 M_b`` from the views' latents
        (:func:`sie.data.targets.relative_se3` in the configured frame).
        """
        if self.pose_side == 3:
            return geometry.quaternion_to_matrix(batch.pair_transform[:, :4].double()).float()
        if batch.latents is None or batch.latents.shape[-1] != 10:
            raise ValueError("model.equicaps.pose='4x4' needs the views' 10-value latents in the batch")
        return relative_se3(batch.latents[:, :2], self.opts.frame)[:, 0]

    def forward(self, batch: Batch) -> MethodOutput:
        """EquiCaps loss on a batch of pairs (module docstring)."""
        self.check_batch(batch)
        h_x, a_x, u_x = self.encode(batch.x)
        h_y, a_y, u_y = self.encode(batch.y)
        transform = self.relative_transform(batch).to(u_x.device)
        terms = equicaps_loss(a_x, a_y, u_x, u_y, transform, self.cov_denominator)
        o = self.opts
        loss = (
            o.sim_coeff * terms["loss/inv"]
            + o.equi_factor * terms["loss/equi"]
            + o.std_coeff * terms["loss/std"]
            + o.memax_coeff * terms["loss/memax"]
            + o.cov_coeff * terms["loss/cov"]
        )
        return self.output(loss, terms, (h_x, h_y))

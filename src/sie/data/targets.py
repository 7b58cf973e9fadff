"""Transformation parameters between views, exactly as the reference computes them, but batched.

Latent vector of a view (DESIGN.md contract 1): ``[rot x, rot y, rot z, floor hue, spot theta,
spot phi, spot hue]`` (7 values) and, in the -T variant, ``[trans x, trans y, trans z]`` appended
(10 values). For consecutive views ``a = k`` and ``b = k + 1`` the parameters are:

=========  ====  ==========================================================================
kind       P     parameters
=========  ====  ==========================================================================
quat       4     quaternion (x, y, z, w) of R_a^-1 R_b, not canonicalised (scipy's sign)
euler      3     extrinsic xyz Euler angles of R_a^-1 R_b (scipy ``as_euler("xyz")``)
rotcolor   6     quat + (floor_hue_b - floor_hue_a, spot_hue_b - spot_hue_a), not wrapped
all        8     quat + latent_b[3:7] - latent_a[3:7]
=========  ====  ==========================================================================

With 10 latents (-T datasets) every kind gets the 3 translation deltas appended. The reference does
this per sample with scipy (``(R.from_euler("xyz", a).inv() * R.from_euler("xyz", b)).as_quat()``);
here it is one batched call into :mod:`sie.geometry`, computed in float64 (like scipy) whatever
the input dtype, so float32 latents give scipy's result on the float32-rounded angles.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from sie import geometry

__all__ = [
    "SE3_FRAMES",
    "TRANSFORM_KINDS",
    "TransformKind",
    "relative_rotation_matrices",
    "relative_se3",
    "relative_transforms",
    "se3_pose",
    "transform_dim",
]

TransformKind = Literal["quat", "euler", "rotcolor", "all"]
TRANSFORM_KINDS: tuple[str, ...] = get_args(TransformKind)

_BASE_DIM = {"quat": 4, "euler": 3, "rotcolor": 6, "all": 8}
_HUE_COLUMNS = [3, 6]  # floor hue, spot hue
_OTHER_COLUMNS = slice(3, 7)  # floor hue, spot theta, spot phi, spot hue
_TRANSLATION_COLUMNS = slice(7, 10)


def _check_kind(kind: str) -> None:
    if kind not in _BASE_DIM:
        raise ValueError(f"unknown transform kind {kind!r}; expected one of {', '.join(TRANSFORM_KINDS)}")


def _check_latent_size(latent_size: int) -> None:
    if latent_size not in (7, 10):
        raise ValueError(f"latents must have 7 values (or 10 with translations); got {latent_size}")


def transform_dim(kind: str, latent_size: int = 7) -> int:
    """Number P of transformation parameters for ``kind`` (quat 4, euler 3, rotcolor 6, all 8; +3 if L = 10)."""
    _check_kind(kind)
    _check_latent_size(latent_size)
    return _BASE_DIM[kind] + (3 if latent_size == 10 else 0)


def relative_transforms(
    latents: np.ndarray | Tensor,
    kind: str = "quat",
    canonical: bool = False,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Parameters (..., K-1, P) of the transformation from view k to view k+1, from latents (..., K, L).

    Args:
        latents: absolute per-view latents, numpy or torch, any float dtype (computed in float64).
        kind: ``quat`` | ``euler`` | ``rotcolor`` | ``all`` (see the module docstring).
        canonical: flip quaternions to ``w >= 0`` (the reference does not; an opt-in deviation).
        dtype: output dtype (float32 like the reference's ``FloatTensor``; float64 for checks).
    """
    _check_kind(kind)
    lat = torch.as_tensor(latents).to(torch.float64)
    if lat.ndim < 2 or lat.shape[-2] < 2:
        raise ValueError(f"latents must have shape (..., K >= 2, L); got {tuple(lat.shape)}")
    _check_latent_size(lat.shape[-1])
    a, b = lat[..., :-1, :], lat[..., 1:, :]
    if kind == "euler":
        rel = geometry.relative_rotation_matrix(
            geometry.euler_xyz_to_matrix(a[..., 0:3]), geometry.euler_xyz_to_matrix(b[..., 0:3])
        )
        parts = [geometry.matrix_to_euler_xyz(rel)]
    else:
        parts = [
            geometry.relative_rotation_quaternion(
                geometry.euler_xyz_to_quaternion(a[..., 0:3]),
                geometry.euler_xyz_to_quaternion(b[..., 0:3]),
                canonical=canonical,
            )
        ]
    if kind == "rotcolor":
        parts.append(b[..., _HUE_COLUMNS] - a[..., _HUE_COLUMNS])
    elif kind == "all":
        parts.append(b[..., _OTHER_COLUMNS] - a[..., _OTHER_COLUMNS])
    if lat.shape[-1] == 10:
        parts.append(b[..., _TRANSLATION_COLUMNS] - a[..., _TRANSLATION_COLUMNS])
    return torch.cat(parts, dim=-1).to(dtype)


SE3_FRAMES: tuple[str, ...] = ("object", "base")
"""How a -T view's rotation R and translation t make one 4 x 4 pose (AberdeenML/EquiCaps ``src/dataset.py``):
``object`` = T R (rotate about the object's centre, then move it), ``base`` = R T (move, then rotate
about the origin)."""


def relative_rotation_matrices(latents: np.ndarray | Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Rotation matrices (..., K-1, 3, 3) of ``R_k^-1 R_{k+1}`` from latents (..., K, L) (computed in float64).

    The matrix form of the ``quat`` parameters: ``R_k @ result == R_{k+1}``.
    """
    lat = torch.as_tensor(latents).to(torch.float64)
    rot = geometry.euler_xyz_to_matrix(lat[..., 0:3])
    return geometry.relative_rotation_matrix(rot[..., :-1, :, :], rot[..., 1:, :, :]).to(dtype)


def se3_pose(latents: np.ndarray | Tensor, frame: str) -> Tensor:
    """4 x 4 poses (..., 4, 4) float64 of views with 10-value latents (..., 10): T R (object) or R T (base)."""
    if frame not in SE3_FRAMES:
        raise ValueError(f"unknown frame {frame!r}; expected one of {', '.join(SE3_FRAMES)}")
    lat = torch.as_tensor(latents).to(torch.float64)
    if lat.shape[-1] != 10:
        raise ValueError(f"4 x 4 poses need latents with translations (10 values); got {lat.shape[-1]}")
    rotation = geometry.euler_xyz_to_matrix(lat[..., 0:3])
    translation = lat[..., _TRANSLATION_COLUMNS]
    if frame == "base":
        translation = (rotation @ translation.unsqueeze(-1)).squeeze(-1)  # R T = [R, R t]
    pose = torch.zeros(*lat.shape[:-1], 4, 4, dtype=torch.float64, device=lat.device)
    pose[..., :3, :3] = rotation
    pose[..., :3, 3] = translation
    pose[..., 3, 3] = 1.0
    return pose


def relative_se3(latents: np.ndarray | Tensor, frame: str, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Relative 4 x 4 transforms (..., K-1, 4, 4) ``M_k^-1 M_{k+1}`` of consecutive views' poses
    (:func:`se3_pose`), from latents (..., K, 10); computed in float64, so ``M_k @ result == M_{k+1}``."""
    pose = se3_pose(latents, frame)
    relative: Tensor = torch.linalg.solve(pose[..., :-1, :, :], pose[..., 1:, :, :])
    return relative.to(dtype)

"""Rotation maths: the only place in ``sie`` where rotation conventions are decided.

Conventions (identical to the 3DIEBench reference code, so numbers compare with published ones):

* Euler angles ``(a_x, a_y, a_z)`` are **extrinsic** x-y-z Tait-Bryan angles, i.e.
  ``R = Rz(a_z) @ Ry(a_y) @ Rx(a_x)`` -- Blender's default ``XYZ`` mode and scipy's
  ``Rotation.from_euler("xyz", ...)`` (lower case = extrinsic).
* Quaternions are stored scalar-last, ``(x, y, z, w)``, as scipy does.
* ``quaternion_multiply(p, q)`` is the Hamilton product; as rotations it applies ``q`` first, then
  ``p``, so ``quaternion_to_matrix(p * q) == quaternion_to_matrix(p) @ quaternion_to_matrix(q)``.
* The transformation between view ``a`` and view ``b`` of an object is ``R_a^-1 R_b`` (the rotation
  expressed in the object's frame at view ``a``), as ``(rot_a.inv() * rot_b).as_quat()`` in scipy.
  Its sign is **not** canonicalised by default: about 4% of 3DIEBench pairs have ``w < 0``, and the
  reference trains on exactly those signs. :func:`canonicalize_quaternion` is the opt-in fix.

Every function is pure and batched over leading dimensions: shapes are ``(..., 3)`` for Euler
angles, ``(..., 4)`` for quaternions and ``(..., 3, 3)`` for matrices. They work in float32 and
float64 and keep the input dtype and device. ``*_np`` wrappers serve numpy callers (the renderer).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from sie.geometry_np import euler_xyz_to_matrix_np

__all__ = [
    "canonicalize_quaternion",
    "euler_xyz_to_matrix",
    "euler_xyz_to_matrix_np",
    "euler_xyz_to_quaternion",
    "euler_xyz_to_quaternion_np",
    "geodesic_angle_matrix",
    "geodesic_angle_quaternion",
    "matrix_to_euler_xyz",
    "matrix_to_quaternion",
    "quaternion_conjugate",
    "quaternion_inverse",
    "quaternion_multiply",
    "quaternion_to_matrix",
    "relative_rotation_matrix",
    "relative_rotation_quaternion",
    "relative_rotation_quaternion_np",
]


def _check_last_dim(x: Tensor, size: int, name: str) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}); got {tuple(x.shape)}")


def _check_matrix(m: Tensor) -> None:
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3); got {tuple(m.shape)}")


def _axis_quaternion(angle: Tensor, axis: int) -> Tensor:
    """Quaternion (..., 4) of a rotation by ``angle`` (...) about coordinate axis 0, 1 or 2."""
    half = angle / 2
    q = torch.zeros(*angle.shape, 4, dtype=angle.dtype, device=angle.device)
    q[..., axis] = torch.sin(half)
    q[..., 3] = torch.cos(half)
    return q


def quaternion_multiply(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product ``p * q`` of quaternions (..., 4) in (x, y, z, w) order; broadcasts.

    As rotations, ``q`` is applied first and ``p`` second.
    """
    _check_last_dim(p, 4, "p")
    _check_last_dim(q, 4, "q")
    px, py, pz, pw = p.unbind(-1)
    qx, qy, qz, qw = q.unbind(-1)
    return torch.stack(
        (
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
            pw * qw - px * qx - py * qy - pz * qz,
        ),
        dim=-1,
    )


def quaternion_conjugate(q: Tensor) -> Tensor:
    """Conjugate (-x, -y, -z, w) of quaternions (..., 4)."""
    _check_last_dim(q, 4, "q")
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


def quaternion_inverse(q: Tensor) -> Tensor:
    """Inverse of (not necessarily unit) quaternions (..., 4): conjugate / squared norm."""
    return quaternion_conjugate(q) / (q * q).sum(-1, keepdim=True)


def euler_xyz_to_quaternion(angles: Tensor) -> Tensor:
    """Extrinsic x-y-z Euler angles (..., 3) in radians -> unit quaternions (..., 4), (x, y, z, w).

    Computed as the product ``q_z * q_y * q_x`` of the three axis quaternions, which is how scipy
    builds it, so the sign of the result matches scipy's ``from_euler("xyz", a).as_quat()``.
    """
    _check_last_dim(angles, 3, "angles")
    qx = _axis_quaternion(angles[..., 0], 0)
    qy = _axis_quaternion(angles[..., 1], 1)
    qz = _axis_quaternion(angles[..., 2], 2)
    return quaternion_multiply(qz, quaternion_multiply(qy, qx))


def euler_xyz_to_matrix(angles: Tensor) -> Tensor:
    """Extrinsic x-y-z Euler angles (..., 3) in radians -> rotation matrices ``Rz Ry Rx`` (..., 3, 3)."""
    _check_last_dim(angles, 3, "angles")
    cx, cy, cz = torch.cos(angles).unbind(-1)
    sx, sy, sz = torch.sin(angles).unbind(-1)
    rows = (
        (cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx),
        (sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx),
        (-sy, cy * sx, cy * cx),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternions (..., 4) in (x, y, z, w) order -> rotation matrices (..., 3, 3).

    The quaternion is normalised first, so any non-zero quaternion is accepted; ``q`` and ``-q``
    give the same matrix.
    """
    _check_last_dim(q, 4, "q")
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def matrix_to_quaternion(m: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), (x, y, z, w), with ``w >= 0``.

    Uses the numerically stable branch (largest of ``w, x, y, z``) for every element, then
    canonicalises the sign, since a matrix determines its quaternion only up to sign.
    """
    _check_matrix(m)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4*w^2, 4*x^2, 4*y^2, 4*z^2 from the diagonal.
    squares = torch.stack(
        (1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22), dim=-1
    )
    best = squares.argmax(dim=-1, keepdim=True)
    # Four candidate quaternions (rows: largest component is x, y, z, w), each exact when its
    # pivot is large; pick the one whose pivot is largest.
    candidates = torch.stack(
        (
            torch.stack(
                (
                    squares[..., 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] - m[..., 1, 2],
                ),
                dim=-1,
            ),
            torch.stack(
                (
                    m[..., 0, 1] + m[..., 1, 0],
                    squares[..., 1],
                    m[..., 1, 2] + m[..., 2, 1],
                    m[..., 0, 2] - m[..., 2, 0],
                ),
                dim=-1,
            ),
            torch.stack(
                (
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    squares[..., 2],
                    m[..., 1, 0] - m[..., 0, 1],
                ),
                dim=-1,
            ),
            torch.stack(
                (
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                    squares[..., 3],
                ),
                dim=-1,
            ),
        ),
        dim=-2,
    )
    q = torch.gather(candidates, -2, best.unsqueeze(-1).expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return canonicalize_quaternion(q)


def matrix_to_euler_xyz(m: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> extrinsic x-y-z Euler angles (..., 3) in radians.

    Ranges match scipy's ``as_euler("xyz")``: ``a_y`` in [-pi/2, pi/2], ``a_x`` and ``a_z`` in
    (-pi, pi]. At gimbal lock (``|a_y| = pi/2``) ``a_x`` is set to 0 and ``a_z`` absorbs the rest.
    """
    _check_matrix(m)
    sin_y = (-m[..., 2, 0]).clamp(-1.0, 1.0)
    a_y = torch.asin(sin_y)
    cos_y = torch.sqrt(m[..., 2, 1] ** 2 + m[..., 2, 2] ** 2)
    eps = 1e-6 if m.dtype == torch.float64 else 1e-4
    locked = cos_y < eps
    a_x = torch.where(locked, torch.zeros_like(a_y), torch.atan2(m[..., 2, 1], m[..., 2, 2]))
    # At the lock, R = Rz(a_z) Ry(+-pi/2) and the top-left 2x2 block gives a_z -/+ a_x directly.
    a_z_locked = torch.atan2(-m[..., 0, 1], m[..., 1, 1])
    a_z = torch.where(locked, a_z_locked, torch.atan2(m[..., 1, 0], m[..., 0, 0]))
    return torch.stack((a_x, a_y, a_z), dim=-1)


def canonicalize_quaternion(q: Tensor) -> Tensor:
    """Pick the sign of each quaternion (..., 4) so that ``w >= 0`` (``q`` and ``-q`` are one rotation).

    When ``w == 0`` exactly, the first non-zero of (x, y, z) is made positive so the choice is unique.
    """
    _check_last_dim(q, 4, "q")
    w = q[..., 3]
    sign = torch.sign(w)
    for component in (0, 1, 2):  # only fills signs still undecided, so the first non-zero wins
        sign = torch.where(sign == 0, torch.sign(q[..., component]), sign)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return q * sign.unsqueeze(-1)


def relative_rotation_quaternion(q_a: Tensor, q_b: Tensor, *, canonical: bool = False) -> Tensor:
    """Quaternion (..., 4) of ``R_a^-1 R_b`` from unit quaternions of views a and b (..., 4).

    Exactly scipy's ``(rot_a.inv() * rot_b).as_quat()`` including the sign, unless ``canonical``.
    """
    q = quaternion_multiply(quaternion_conjugate(q_a), q_b)
    return canonicalize_quaternion(q) if canonical else q


def relative_rotation_matrix(m_a: Tensor, m_b: Tensor) -> Tensor:
    """``R_a^T R_b`` (..., 3, 3): the rotation from view a to view b in the object frame of view a."""
    _check_matrix(m_a)
    _check_matrix(m_b)
    return m_a.transpose(-1, -2) @ m_b


def geodesic_angle_quaternion(q1: Tensor, q2: Tensor) -> Tensor:
    """Angle (...) in radians, in [0, pi], of the rotation taking q1 to q2 (sign-invariant)."""
    _check_last_dim(q1, 4, "q1")
    _check_last_dim(q2, 4, "q2")
    n1 = torch.linalg.vector_norm(q1, dim=-1)
    n2 = torch.linalg.vector_norm(q2, dim=-1)
    cos_half = ((q1 * q2).sum(-1) / (n1 * n2)).abs().clamp(max=1.0)
    return 2 * torch.acos(cos_half)


def geodesic_angle_matrix(m1: Tensor, m2: Tensor) -> Tensor:
    """Angle (...) in radians, in [0, pi], of ``R1^T R2``.

    Computed from the quaternion of the relative rotation rather than ``acos((trace - 1) / 2)``,
    which loses all precision near 0 and pi.
    """
    rel = relative_rotation_matrix(m1, m2)
    q = matrix_to_quaternion(rel)
    vec = torch.linalg.vector_norm(q[..., :3], dim=-1)
    return 2 * torch.atan2(vec, q[..., 3].abs())


# ---- numpy wrappers (the renderer works in numpy) -------------------------------------------------


def euler_xyz_to_quaternion_np(angles: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """numpy version of :func:`euler_xyz_to_quaternion`, in float64."""
    result: npt.NDArray[np.float64] = euler_xyz_to_quaternion(
        torch.as_tensor(np.asarray(angles, dtype=np.float64))
    ).numpy()
    return result


def relative_rotation_quaternion_np(
    angles_a: npt.ArrayLike, angles_b: npt.ArrayLike, *, canonical: bool = False
) -> npt.NDArray[np.float64]:
    """Quaternion (..., 4) of ``R_a^-1 R_b`` from extrinsic xyz Euler angles (..., 3), float64 numpy."""
    qa = euler_xyz_to_quaternion(torch.as_tensor(np.asarray(angles_a, dtype=np.float64)))
    qb = euler_xyz_to_quaternion(torch.as_tensor(np.asarray(angles_b, dtype=np.float64)))
    result: npt.NDArray[np.float64] = relative_rotation_quaternion(qa, qb, canonical=canonical).numpy()
    return result

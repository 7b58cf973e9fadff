"""Rotation conventions in plain numpy, for processes that must not pay for importing PyTorch.

Render workers turn Euler latents into rotation matrices for every object; importing torch for that
alone costs each worker about 2 s of start-up. :mod:`sie.geometry` remains the reference for every
convention: ``tests/test_geometry.py`` checks this module against it (and against scipy).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["euler_xyz_to_matrix_np"]


def euler_xyz_to_matrix_np(angles: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Extrinsic x-y-z Euler angles (..., 3) in radians -> ``Rz Ry Rx`` (..., 3, 3), float64.

    The numpy twin of :func:`sie.geometry.euler_xyz_to_matrix`.
    """
    a = np.asarray(angles, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f"angles must have shape (..., 3); got {a.shape}")
    rx, ry, rz = np.moveaxis(a, -1, 0)
    one, zero = np.ones_like(rx), np.zeros_like(rx)

    def stack(rows: tuple[tuple[np.ndarray, ...], ...]) -> npt.NDArray[np.float64]:
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)

    about_x = stack(((one, zero, zero), (zero, np.cos(rx), -np.sin(rx)), (zero, np.sin(rx), np.cos(rx))))
    about_y = stack(((np.cos(ry), zero, np.sin(ry)), (zero, one, zero), (-np.sin(ry), zero, np.cos(ry))))
    about_z = stack(((np.cos(rz), -np.sin(rz), zero), (np.sin(rz), np.cos(rz), zero), (zero, zero, one)))
    result: npt.NDArray[np.float64] = about_z @ about_y @ about_x
    return result

"""Transformation targets: hand-checked values, and scipy's per-sample reference path (float64 and float32)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sie.data.targets import relative_transforms, transform_dim


def _latents(rng: np.random.Generator, shape: tuple[int, ...], size: int = 7) -> np.ndarray:
    lat = np.empty((*shape, size))
    lat[..., :3] = rng.uniform(-math.pi / 2, math.pi / 2, (*shape, 3))
    lat[..., 3:] = rng.uniform(0, 1, (*shape, size - 3))
    return lat


def _scipy_reference(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The reference's per-sample computation (src/dataset.py), written out with scipy."""
    rel = Rotation.from_euler("xyz", a[:3]).inv() * Rotation.from_euler("xyz", b[:3])
    parts = [rel.as_euler("xyz") if kind == "euler" else rel.as_quat()]
    if kind == "rotcolor":
        parts.append(b[[3, 6]] - a[[3, 6]])
    if kind == "all":
        parts.append(b[3:7] - a[3:7])
    if len(a) == 10:
        parts.append(b[7:10] - a[7:10])
    return np.concatenate(parts)


def test_transform_dim() -> None:
    assert [transform_dim(k) for k in ("quat", "euler", "rotcolor", "all")] == [4, 3, 6, 8]
    assert [transform_dim(k, 10) for k in ("quat", "euler", "rotcolor", "all")] == [7, 6, 9, 11]
    with pytest.raises(ValueError, match="unknown transform kind"):
        transform_dim("matrix")
    with pytest.raises(ValueError, match="7 values"):
        transform_dim("quat", 9)


def test_hand_checked_values() -> None:
    theta = 0.6
    lat = np.zeros((2, 7))
    lat[1, 2] = theta  # view b is rotated by theta about z; view a is the identity
    lat[:, 3] = [0.9, 0.1]  # floor hue: delta -0.8, not wrapped to 0.2
    lat[:, 6] = [0.1, 0.9]  # spot hue: delta +0.8
    lat[:, 4:6] = [[0.2, 1.0], [0.5, 3.0]]
    q = relative_transforms(lat, "quat", dtype=torch.float64)
    assert q.shape == (1, 4)
    np.testing.assert_allclose(q[0], [0, 0, math.sin(theta / 2), math.cos(theta / 2)], atol=1e-15)
    np.testing.assert_allclose(
        relative_transforms(lat, "euler", dtype=torch.float64)[0], [0, 0, theta], atol=1e-15
    )
    np.testing.assert_allclose(relative_transforms(lat, "rotcolor", dtype=torch.float64)[0, 4:], [-0.8, 0.8])
    np.testing.assert_allclose(
        relative_transforms(lat, "all", dtype=torch.float64)[0, 4:], [-0.8, 0.3, 2.0, 0.8]
    )
    # From a to b and back: the relative rotations are inverses (conjugate quaternions).
    back = relative_transforms(lat[::-1].copy(), "quat", dtype=torch.float64)[0]
    np.testing.assert_allclose(back, [0, 0, -math.sin(theta / 2), math.cos(theta / 2)], atol=1e-15)


def test_translation_deltas_appended() -> None:
    lat = np.zeros((2, 10))
    lat[:, 7:] = [[0.1, 0.2, 0.3], [0.4, 0.0, -0.3]]
    out = relative_transforms(lat, "quat", dtype=torch.float64)
    np.testing.assert_allclose(out[0], [0, 0, 0, 1, 0.3, -0.2, -0.6], atol=1e-15)


@pytest.mark.parametrize("kind", ["quat", "euler", "rotcolor", "all"])
@pytest.mark.parametrize("latent_size", [7, 10])
def test_float64_matches_scipy_per_sample(kind: str, latent_size: int) -> None:
    rng = np.random.default_rng(1)
    lat = _latents(rng, (64, 3), latent_size)  # K = 3: two consecutive transforms per sample
    out = relative_transforms(lat, kind, dtype=torch.float64).numpy()
    ref = np.array([[_scipy_reference(s[k], s[k + 1], kind) for k in range(2)] for s in lat])
    assert out.shape == ref.shape == (64, 2, transform_dim(kind, latent_size))
    np.testing.assert_allclose(out, ref, atol=1e-12, rtol=0)


def test_sign_not_canonicalised_like_scipy_and_canonical_option() -> None:
    rng = np.random.default_rng(2)
    lat = _latents(rng, (4000, 2))
    out = relative_transforms(lat, "quat", dtype=torch.float64).numpy()[:, 0]
    ref = np.array([_scipy_reference(s[0], s[1], "quat") for s in lat])
    negative = ref[:, 3] < 0
    assert 0.01 < negative.mean() < 0.1  # about 4% in 3DIEBench (the SIE paper and facebookresearch/SIE)
    np.testing.assert_allclose(out[negative], ref[negative], atol=1e-12)
    canon = relative_transforms(lat, "quat", canonical=True, dtype=torch.float64).numpy()[:, 0]
    assert (canon[:, 3] >= 0).all()
    np.testing.assert_allclose(canon[negative], -ref[negative], atol=1e-12)


def test_float32_path_matches_reference() -> None:
    """The loader's path: float32 latents (the reference casts angles to float32), float32 targets."""
    rng = np.random.default_rng(3)
    lat32 = _latents(rng, (256, 2)).astype(np.float32)
    out = relative_transforms(lat32, "rotcolor")
    assert out.dtype == torch.float32
    ref = np.array(
        [_scipy_reference(s[0].astype(np.float64), s[1].astype(np.float64), "rotcolor") for s in lat32]
    )
    np.testing.assert_allclose(out.numpy()[:, 0], ref.astype(np.float32), atol=1e-7, rtol=0)
    torch_in = relative_transforms(torch.from_numpy(lat32), "rotcolor")
    assert torch.equal(torch_in, out)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        relative_transforms(np.zeros((3, 1, 7)), "quat")
    with pytest.raises(ValueError, match="7 values"):
        relative_transforms(np.zeros((3, 2, 8)), "quat")

"""The 3DIEBench scene constants, colours, camera frame and per-view quantities, against plain formulas."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest

from sie.geometry_np import euler_xyz_to_matrix_np
from sie.render.latents import sample_latents
from sie.render.scene import (
    SceneSpec,
    camera_frame,
    hsv_to_rgb,
    light_disk_offsets,
    pixel_offsets,
    spherical_to_cartesian,
    views_from_latents,
)


def _rx(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(a: float) -> np.ndarray:
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def test_scene_constants_are_3diebench() -> None:
    spec = SceneSpec()
    assert (spec.camera_distance, spec.camera_polar, spec.camera_azimuth) == (2.5, math.pi / 4, math.pi / 2)
    assert spec.floor_z == -1.0 and (spec.floor_saturation, spec.floor_value) == (0.6, 0.6)
    assert spec.spot_distance == 4.0 and spec.spot_power == 500.0
    assert spec.spot_size == pytest.approx(math.pi / 8)  # Blender's full cone angle
    assert spec.spot_cos_half_angle == pytest.approx(math.cos(math.pi / 16))
    assert (spec.spot_saturation, spec.spot_value) == (1.0, 0.8)
    assert spec.sun_strength == 1.5 and spec.ambient == 0.05
    assert spec.spot_intensity == pytest.approx(500 / (4 * math.pi))


def test_camera_frame_looks_at_origin_from_3diebench_position() -> None:
    position, right, up, forward = camera_frame()
    np.testing.assert_allclose(position, [0.0, 2.5 / math.sqrt(2), 2.5 / math.sqrt(2)], atol=1e-12)
    np.testing.assert_allclose(forward, -position / np.linalg.norm(position), atol=1e-12)
    # Orthonormal, right-handed camera basis; world +Z projects upwards; image right is world -X.
    basis = np.stack([right, up, -forward])
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(basis) == pytest.approx(1.0)
    assert up[2] > 0
    np.testing.assert_allclose(right, [-1.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("h", [0.0, 0.05, 0.2, 0.34, 0.5, 0.66, 0.83, 0.99])
def test_hsv_to_rgb_matches_colorsys(h: float) -> None:
    for s, v in [(0.6, 0.6), (1.0, 0.8), (0.0, 0.3)]:
        np.testing.assert_allclose(hsv_to_rgb(np.array(h), s, v), colorsys.hsv_to_rgb(h, s, v), atol=1e-12)


def test_views_from_latents_rotation_lights_and_colours() -> None:
    latents = sample_latents(np.random.default_rng(3), 6)
    views = views_from_latents(latents)
    for v, lat in enumerate(latents):
        expected = _rz(lat[2]) @ _ry(lat[1]) @ _rx(lat[0])  # extrinsic x, then y, then z
        np.testing.assert_allclose(views.rotation[v], expected, atol=1e-6)
        theta, phi = lat[4], lat[5]
        spot = 4.0 * np.array(
            [math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)]
        )
        np.testing.assert_allclose(views.spot_position[v], spot, atol=1e-5)
        np.testing.assert_allclose(views.floor_rgb[v], colorsys.hsv_to_rgb(lat[3], 0.6, 0.6), atol=1e-6)
        rgb = np.array(colorsys.hsv_to_rgb(lat[6], 1.0, 0.8)) * 500 / (4 * math.pi)
        np.testing.assert_allclose(views.spot_radiance[v], rgb, rtol=1e-5)
        axis = -spot / 4.0
        for e in (views.spot_u[v], views.spot_v[v]):
            assert abs(np.dot(e, axis)) < 1e-5 and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(views.translation, 0.0)


def test_views_from_latents_reads_translations_of_the_t_variant() -> None:
    latents = sample_latents(np.random.default_rng(0), 4, "T")
    views = views_from_latents(latents)
    # The object's centre sits at R t (translation applied before the rotation, as 3DIEBench-T).
    expected = np.stack(
        [
            euler_xyz_to_matrix_np(a[None])[0] @ a_t
            for a, a_t in zip(latents[:, :3], latents[:, 7:10], strict=True)
        ]
    )
    np.testing.assert_allclose(views.translation, expected, atol=1e-6)
    assert not np.allclose(views.translation, latents[:, 7:10], atol=1e-3)  # R t differs from t
    with pytest.raises(ValueError, match="latents must have shape"):
        views_from_latents(np.zeros((2, 8)))


def test_spherical_to_cartesian_is_the_reference_convention() -> None:
    np.testing.assert_allclose(spherical_to_cartesian(4.0, 0.0, 1.3), [0.0, 0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(spherical_to_cartesian(2.0, math.pi / 2, 0.0), [2.0, 0.0, 0.0], atol=1e-12)


def test_sample_patterns() -> None:
    np.testing.assert_allclose(pixel_offsets(1), [[0.5, 0.5]])
    grid = pixel_offsets(4)
    assert sorted(map(tuple, grid.tolist())) == [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]
    odd = pixel_offsets(5)
    assert (
        odd.shape == (5, 2)
        and (odd >= 0).all()
        and (odd < 1).all()
        and len({tuple(p) for p in odd.tolist()}) == 5
    )
    np.testing.assert_allclose(light_disk_offsets(1), [[0.0, 0.0]])
    disk = light_disk_offsets(16)
    assert (np.linalg.norm(disk, axis=1) <= 1.0).all()
    assert abs(disk.mean(axis=0)).max() < 0.1  # spread around the centre
    with pytest.raises(ValueError):
        pixel_offsets(0)

"""The 3DIEBench scene, parameter for parameter, and the per-view quantities derived from latents.

Values are those of facebookresearch/SIE ``data/main.py`` (BlenderProc on Blender/Cycles), see
docs/render.md. Coordinates are Blender's: Z up, lengths in Blender units.

* Camera: fixed at spherical (r=2.5, polar pi/4, azimuth pi/2) = (0, 1.768, 1.768), looking at
  the origin with world +Z up in the image (BlenderProc ``rotation_from_forward_vec``); field of
  view 0.691111 rad (BlenderProc's default intrinsics = Blender's 50 mm lens on a 36 mm sensor).
* Object: bounding-box centre at the origin, rotated by the extrinsic xyz Euler angles of the latents
  (Blender ``rotation_euler``), unit bounding-box diagonal. -T: translated by the latent t *before* the
  rotation, as 3DIEBench-T's ``matrix_basis = R @ Translation(t)`` does, so the centre sits at R t.
* Floor: the plane z = -1, diffuse colour HSV(floor_hue, 0.6, 0.6).
* Spot: on the sphere of radius 4 at (spot_theta, spot_phi), aimed at the origin, 500 W, colour
  HSV(spot_hue, 1, 0.8), ``spot_size`` pi/8 (Blender's *full* cone angle) with Blender's default
  ``spot_blend`` 0.15 and radius 0.25 (soft shadows).
* Sun: 1.5 W/m^2 from straight above (a Blender light with zero rotation points down -Z), with
  ``angle`` pi/2 so it casts no visible shadow; rendered here without shadow rays.
* World: BlenderProc's default grey background 0.05, the ambient term.

Shading is Lambertian direct light (spot + sun + ambient), linear RGB, then the sRGB transfer
function (Blender's "Standard" view transform). Cycles' indirect bounces, Filmic tone mapping and
denoising are not reproduced; docs/render.md lists these deviations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sie.geometry_np import euler_xyz_to_matrix_np

__all__ = [
    "SceneSpec",
    "ViewBatch",
    "camera_frame",
    "hsv_to_rgb",
    "light_disk_offsets",
    "light_pattern_rotation",
    "pixel_offsets",
    "project_points",
    "spherical_to_cartesian",
    "views_from_latents",
]


@dataclass(frozen=True)
class SceneSpec:
    """Fixed scene constants (defaults = 3DIEBench's ``data/main.py`` + BlenderProc/Blender defaults)."""

    camera_distance: float = 2.5
    camera_polar: float = math.pi / 4
    camera_azimuth: float = math.pi / 2
    field_of_view: float = 0.691111  # radians, BlenderProc DefaultConfig.fov
    floor_z: float = -1.0
    floor_saturation: float = 0.6
    floor_value: float = 0.6
    spot_distance: float = 4.0
    spot_power: float = 500.0  # W; Cycles radiant intensity = power / (4 pi)
    spot_size: float = math.pi / 8  # full cone angle (Blender ``spot_size``)
    spot_blend: float = 0.15  # Blender default
    spot_radius: float = 0.25  # Blender default ``shadow_soft_size``
    spot_saturation: float = 1.0
    spot_value: float = 0.8
    sun_strength: float = 1.5  # W/m^2 irradiance
    sun_direction: tuple[float, float, float] = (0.0, 0.0, -1.0)  # direction the light travels
    ambient: float = 0.05  # world background radiance (BlenderProc default [0.05]*3)

    @property
    def spot_intensity(self) -> float:
        """Radiant intensity of the spot on its axis, W/sr (Cycles: power / 4 pi)."""
        return self.spot_power / (4.0 * math.pi)

    @property
    def spot_cos_half_angle(self) -> float:
        return math.cos(self.spot_size / 2.0)

    @property
    def spot_smooth(self) -> float:
        """Width of the soft cone edge in cosine units, as Cycles computes it."""
        return (1.0 - self.spot_cos_half_angle) * self.spot_blend


def spherical_to_cartesian(
    r: np.ndarray | float, theta: np.ndarray | float, phi: np.ndarray | float
) -> np.ndarray:
    """(..., 3) point at radius r, polar angle theta from +Z, azimuth phi from +X (as data/main.py)."""
    r, theta, phi = np.asarray(r), np.asarray(theta), np.asarray(phi)
    return np.stack(
        [r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)], axis=-1
    )


def camera_frame(spec: SceneSpec = SceneSpec()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Camera ``(position, right, up, forward)`` in world coordinates, float64 (3,) each.

    ``forward`` points at the origin; ``right`` is the image's +x (columns), ``up`` the image's
    upward direction (rows grow downwards); world +Z projects upwards, as Blender's track-to with
    up axis Y gives.
    """
    position = spherical_to_cartesian(spec.camera_distance, spec.camera_polar, spec.camera_azimuth)
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return position, right, up, forward


def project_points(points: np.ndarray, size: int, spec: SceneSpec = SceneSpec()) -> np.ndarray:
    """(N, 2) continuous pixel coordinates (column, row) of world points (N, 3); (0, 0) = top-left corner."""
    position, right, up, forward = camera_frame(spec)
    rel = np.asarray(points, dtype=np.float64) - position
    depth = rel @ forward
    tan_half = math.tan(spec.field_of_view / 2.0)
    x = (rel @ right) / (depth * tan_half)
    y = (rel @ up) / (depth * tan_half)
    return np.stack([(x + 1.0) * size / 2.0, (1.0 - y) * size / 2.0], axis=-1)


def hsv_to_rgb(h: np.ndarray, s: float | np.ndarray, v: float | np.ndarray) -> np.ndarray:
    """(..., 3) RGB of HSV colours, the formula of matplotlib's ``hsv_to_rgb`` (hue in [0, 1])."""
    h = np.asarray(h, dtype=np.float64)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), h.shape)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), h.shape)
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    sector = (i.astype(np.int64) % 6)[..., None]
    choices = [
        np.stack([v, t, p], -1),
        np.stack([q, v, p], -1),
        np.stack([p, v, t], -1),
        np.stack([p, q, v], -1),
        np.stack([t, p, v], -1),
        np.stack([v, p, q], -1),
    ]
    rgb = np.choose(sector, choices)
    grey = (s == 0)[..., None]
    rgb = np.where(grey, np.stack([v, v, v], -1), rgb)
    return np.asarray(rgb)


@dataclass(frozen=True)
class ViewBatch:
    """Per-view scene quantities for V views, float32, ready for a backend.

    Attributes:
        rotation: (V, 3, 3) object-to-world rotation R = Rz Ry Rx of the Euler latents.
        translation: (V, 3) world location of the object's centre, R t for -T latents t (zeros otherwise).
        floor_rgb: (V, 3) floor reflectance HSV(floor_hue, 0.6, 0.6).
        spot_position: (V, 3) spot light centre.
        spot_radiance: (V, 3) spot colour times its radiant intensity (W/sr).
        spot_u, spot_v: (V, 3) orthonormal axes of the light's disk (perpendicular to its axis).
    """

    rotation: np.ndarray
    translation: np.ndarray
    floor_rgb: np.ndarray
    spot_position: np.ndarray
    spot_radiance: np.ndarray
    spot_u: np.ndarray
    spot_v: np.ndarray

    def __len__(self) -> int:
        return int(self.rotation.shape[0])


def views_from_latents(latents: np.ndarray, spec: SceneSpec = SceneSpec()) -> ViewBatch:
    """Turn (V, 7) or (V, 10) latents (rot x, y, z, floor hue, spot theta, spot phi, spot hue[, t x, y, z]).

    Rotations go through :func:`sie.geometry_np.euler_xyz_to_matrix_np` (extrinsic xyz), tested against
    :mod:`sie.geometry`, the project's single source of rotation conventions.
    """
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] not in (7, 10):
        raise ValueError(f"latents must have shape (V, 7) or (V, 10); got {latents.shape}")
    rotation = euler_xyz_to_matrix_np(latents[:, 0:3])
    # 3DIEBench-T sets Blender's matrix_basis to R @ Translation(t) (AberdeenML/EquiCaps,
    # dataset_generation/main_3DIEBench_T_generation.py): a point p of the object lands at R (p + t),
    # so its centre sits at R t, not at the stored latent t.
    offset = latents[:, 7:10] if latents.shape[1] == 10 else np.zeros((len(latents), 3))
    translation = np.einsum("vij,vj->vi", rotation, offset)
    floor_rgb = hsv_to_rgb(latents[:, 3], spec.floor_saturation, spec.floor_value)
    spot_position = spherical_to_cartesian(spec.spot_distance, latents[:, 4], latents[:, 5])
    spot_rgb = hsv_to_rgb(latents[:, 6], spec.spot_saturation, spec.spot_value)
    axis = -spot_position / np.linalg.norm(spot_position, axis=1, keepdims=True)
    # Any vector not parallel to the axis seeds the disk basis; the axis is within pi/4 of -Z.
    helper = np.where(np.abs(axis[:, 0:1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    spot_u = np.cross(axis, helper)
    spot_u /= np.linalg.norm(spot_u, axis=1, keepdims=True)
    spot_v = np.cross(axis, spot_u)

    def f32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    return ViewBatch(
        rotation=f32(rotation),
        translation=f32(translation),
        floor_rgb=f32(floor_rgb),
        spot_position=f32(spot_position),
        spot_radiance=f32(spot_rgb * spec.spot_intensity),
        spot_u=f32(spot_u),
        spot_v=f32(spot_v),
    )


def pixel_offsets(samples: int) -> np.ndarray:
    """(samples, 2) float32 sub-pixel sample positions in [0, 1)^2 (x right, y down).

    A perfect square n = k^2 gives the centres of a k x k grid (1 -> the pixel centre); other
    counts use the R2 low-discrepancy sequence. Fixed, so images depend only on the scene.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}")
    k = math.isqrt(samples)
    if k * k == samples:
        g = (np.arange(k) + 0.5) / k
        xx, yy = np.meshgrid(g, g)
        return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    plastic = 1.324717957244746
    alpha = np.array([1.0 / plastic, 1.0 / plastic**2])
    seq = (0.5 + np.arange(1, samples + 1)[:, None] * alpha) % 1.0
    return seq.astype(np.float32)


def light_disk_offsets(samples: int) -> np.ndarray:
    """(samples, 2) float32 points on the unit disk (Vogel spiral), area-uniform; one sample -> the centre."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}")
    if samples == 1:
        return np.zeros((1, 2), dtype=np.float32)
    k = np.arange(samples)
    radius = np.sqrt((k + 0.5) / samples)
    angle = k * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype(np.float32)


LIGHT_PATTERN_SEED = 20230217
"""Seed of :func:`light_pattern_rotation` (fixed: images depend only on the scene)."""


def light_pattern_rotation(size: int) -> np.ndarray:
    """(size, size, 2) float32 cos, sin of the angle by which pixel (row, column) turns the light-disk pattern.

    Turning the pattern per pixel spreads the few light samples of neighbouring pixels over the
    disk, so penumbrae show fine noise instead of banding. The angles depend on the pixel only
    (never on batching, backend or device), and every backend reads this one table.
    """
    angle = np.random.default_rng(LIGHT_PATTERN_SEED).uniform(0.0, 2.0 * math.pi, size=(size, size))
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1).astype(np.float32)

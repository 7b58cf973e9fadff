"""Intel Embree ray casting (through ``embreex``) with numpy shading: a second, independent CPU backend.

The scene, the shading and the anti-aliasing are those of the Warp backend, written as array code
over many pixels at once ("wavefront"): camera rays for every pixel of a chunk of views, one Embree
query for all rays that can meet the object (a bounding-sphere test in world space, then the box in
the object frame), shading in numpy, one Embree occlusion query for all shadow rays that can meet
it. Everything is float32 like the Warp kernels, so the two backends agree to the bit on almost
every pixel (a test compares them): two implementations in different styles checking each other.

Speed, measured on a 2-core CPU: Embree answers a query on a 50k-triangle mesh two to three times
faster than Warp's scalar BVH traversal, but numpy shading costs several array passes per ray where
Warp's compiled kernel costs one, so this backend renders 1.7-4.4x slower than ``warp``
(benchmarks/README.md). It is
``render.backend=auto``'s choice only where Warp is not installed. CPU only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sie.errors import UsageError
from sie.render.backends.base import RenderOutput, RenderSettings, padded_bounds, srgb_lookup_table
from sie.render.mesh import Mesh, corner_normals
from sie.render.scene import (
    SceneSpec,
    ViewBatch,
    camera_frame,
    light_disk_offsets,
    light_pattern_rotation,
    pixel_offsets,
)

try:
    from embreex.mesh_construction import TriangleMesh
    from embreex.rtcore_scene import EmbreeScene
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the embree backend needs embreex: pip install 'sie[embree]'") from exc

__all__ = ["EmbreeRenderer", "embree_version"]

_PIXELS_PER_CHUNK = 1 << 18  # bounds the working arrays (~40 float32 arrays of this many rows)
_SURFACE_OFFSET = np.float32(1.0e-4)  # as the Warp backend: shadow-ray origin offset along the normal
_FAR = np.float32(1.0e30)
_SKY, _FLOOR, _OBJECT = 0, 1, 2


def embree_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"embreex {version('embreex')}"
    except PackageNotFoundError:  # pragma: no cover - imported from a source tree
        return "embreex"


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) row-wise dot products of (N, 3) arrays (explicit sums: no BLAS, so no batching effects)."""
    out: np.ndarray = a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]
    return out


def _normalize(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) unit rows of ``a`` and (N,) their former lengths."""
    length = np.sqrt(_dot(a, a))
    return a / length[:, None], length


def _rotate(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) rows ``R_n v_n`` for (N, 3, 3) matrices and (N, 3) vectors."""
    out: np.ndarray = (r * v[:, None, :]).sum(axis=2)
    return out


def _rotate_back(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) rows ``R_n^T v_n``: world to object frame."""
    out: np.ndarray = (r * v[:, :, None]).sum(axis=1)
    return out


def _hits_box(
    origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray, t_max: np.ndarray
) -> np.ndarray:
    """(N,) slab test: does ray n meet the box [lo, hi] at some 0 <= t <= t_max[n]?"""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.float32(1.0) / direction
        t0 = (lo - origin) * inv
        t1 = (hi - origin) * inv
    near = np.minimum(t0, t1)
    far = np.maximum(t0, t1)
    parallel = np.abs(direction) < 1.0e-12
    if parallel.any():
        inside = (origin >= lo) & (origin <= hi)
        near = np.where(parallel, np.where(inside, -np.inf, np.inf), near)
        far = np.where(parallel, np.where(inside, np.inf, -np.inf), far)
    t_near = np.maximum(near.max(axis=1), 0.0)
    t_far = np.minimum(far.min(axis=1), t_max)
    hit: np.ndarray = t_near <= t_far
    return hit


def _hits_sphere(
    origin: np.ndarray, direction: np.ndarray, radius: np.float32, t_max: np.ndarray
) -> np.ndarray:
    """(N,) does ray n (origin (N, 3) relative to the sphere's centre, unit direction) meet the
    sphere at some 0 <= t <= t_max[n]? Conservative by a relative 1e-4 against float32 rounding."""
    b = _dot(origin, direction)
    c = _dot(origin, origin) - radius * radius
    disc = b * b - c
    root = np.sqrt(np.maximum(disc, 0.0))
    slack = np.float32(1e-4) * (np.abs(b) + radius)
    hit: np.ndarray = (disc >= -slack * slack) & (-b + root >= -slack) & (-b - root <= t_max + slack)
    return hit


@dataclass(frozen=True)
class _Rays:
    """Where N camera rays come from: view, pixel, light-disk sample, and their view's object pose.

    Attributes:
        view: (N,) view index. rows, cols: (N,) pixel. light: (N,) light-disk sample index.
        rot: (N, 3, 3) object-to-world rotation of the ray's view. loc: (N, 3) its object location.
    """

    view: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    light: np.ndarray
    rot: np.ndarray
    loc: np.ndarray

    def take(self, index: np.ndarray) -> _Rays:
        """The rays at ``index`` (an index array)."""
        return _Rays(*(getattr(self, f)[index] for f in ("view", "rows", "cols", "light", "rot", "loc")))


class EmbreeRenderer:
    """Ray-casts the 3DIEBench scene with Embree on the CPU (``device`` must be ``auto`` or ``cpu``)."""

    name = "embree"

    def __init__(
        self, settings: RenderSettings | None = None, scene: SceneSpec | None = None, device: str = "auto"
    ) -> None:
        if device not in ("auto", "cpu"):
            raise UsageError(
                f"render.device={device!r}: the embree backend runs on the CPU only; "
                "use render.backend=warp for a GPU"
            )
        self.device = "cpu"
        self.settings = settings or RenderSettings()
        self.scene = scene or SceneSpec()
        n = self.settings.samples_per_pixel
        self._pixel_offsets = pixel_offsets(n)
        self._light_offsets = light_disk_offsets(n)
        self._light_rotation = light_pattern_rotation(self.settings.size)
        self._lut = srgb_lookup_table()
        position, right, up, forward = camera_frame(self.scene)
        self._camera = position.astype(np.float32)
        self._right = right.astype(np.float32)
        self._up = up.astype(np.float32)
        self._forward = forward.astype(np.float32)
        self._embree: Any = None
        self._geometry: Any = None
        self._face_normal = np.zeros((0, 3), np.float32)
        self._corner_normals = np.zeros((0, 3, 3), np.float32)
        self._albedo = np.zeros((0, 3), np.float32)
        self._box = (np.zeros(3, np.float32), np.zeros(3, np.float32))
        self._radius = np.float32(0.0)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": embree_version(), "device": self.device}

    def warm_up(self) -> None:
        """Nothing to compile: Embree's kernels ship prebuilt."""

    def set_mesh(self, mesh: Mesh) -> None:
        vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
        faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
        self._embree = EmbreeScene()
        self._geometry = TriangleMesh(self._embree, vertices, faces)
        a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
        cross = np.cross(b - a, c - a)
        length = np.sqrt(_dot(cross, cross))
        self._face_normal = (cross / np.maximum(length, np.float32(1e-30))[:, None]).astype(np.float32)
        if self.settings.crease_degrees > 0:
            self._corner_normals = corner_normals(mesh, self.settings.crease_degrees)
        else:
            self._corner_normals = np.zeros((0, 3, 3), np.float32)
        self._albedo = np.ascontiguousarray(mesh.face_albedo, dtype=np.float32)
        self._box = padded_bounds(mesh)
        # Bounding sphere about the object frame's origin (rotations keep it where it is).
        self._radius = np.float32(np.sqrt(_dot(vertices, vertices)).max() * (1.0 + 1e-4) + 1e-6)

    # ---- one batch of camera rays ---------------------------------------------------------------

    def _camera_rays(self, rows: np.ndarray, cols: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """(N, 3) unit world directions through sub-pixel ``offset`` (N, 2) of pixels (rows, cols)."""
        size = np.float32(self.settings.size)
        tan_half = np.float32(math.tan(self.scene.field_of_view / 2.0))
        x = (np.float32(2.0) * (cols.astype(np.float32) + offset[:, 0]) / size - np.float32(1.0)) * tan_half
        y = (np.float32(1.0) - np.float32(2.0) * (rows.astype(np.float32) + offset[:, 1]) / size) * tan_half
        d = self._forward + x[:, None] * self._right + y[:, None] * self._up
        return _normalize(d)[0]

    def _shade(
        self,
        views: ViewBatch,
        view: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        offset: np.ndarray,
        light: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Linear radiance (N, 3) and what each ray hit (N,) int8 (0 sky, 1 floor, 2 object).

        Ray n leaves the camera through sub-pixel ``offset[n]`` of pixel (``rows[n]``, ``cols[n]``)
        of view ``view[n]``; its one shadow ray goes to light-disk sample ``light[n]`` (modulo the
        pattern size), turned by the pixel's angle. The same formulas as the Warp backend's ``_shade``.
        """
        spec = self.scene
        n = len(view)
        d = self._camera_rays(rows, cols, offset)
        rays = _Rays(view, rows, cols, light, views.rotation[view], views.translation[view])
        rot, loc = rays.rot, rays.loc
        down = d[:, 2] < 0.0
        with np.errstate(divide="ignore"):
            t_floor = np.where(down, (np.float32(spec.floor_z) - self._camera[2]) / d[:, 2], _FAR).astype(
                np.float32
            )
        kind = np.where(down, _FLOOR, _SKY).astype(np.int8)
        t_hit = t_floor.copy()
        from_object = self._camera - loc  # camera relative to the object's centre, world axes
        geo_n = np.zeros((n, 3), np.float32)
        geo_n[:, 2] = 1.0
        shade_n = geo_n.copy()
        albedo = views.floor_rgb[view]
        # Cheap world-space cull first (a sphere needs no rotation), then the box in the object frame.
        near = np.flatnonzero(_hits_sphere(from_object, d, self._radius, t_floor))
        r_near = rot[near]
        origin_obj = _rotate_back(r_near, from_object[near])
        dir_obj = _rotate_back(r_near, d[near])
        boxed = np.flatnonzero(_hits_box(origin_obj, dir_obj, self._box[0], self._box[1], t_floor[near]))
        if len(boxed):
            hit = self._embree.run(
                np.ascontiguousarray(origin_obj[boxed]),
                np.ascontiguousarray(dir_obj[boxed]),
                dists=t_floor[near[boxed]],
                output=1,
            )
            found = hit["primID"] >= 0
            idx = near[boxed[found]]
            face = hit["primID"][found]
            t_hit[idx] = hit["tfar"][found]
            kind[idx] = _OBJECT
            albedo[idx] = self._albedo[face]
            r_hit = rot[idx]
            geo_n[idx] = _rotate(r_hit, self._face_normal[face])
            shade_n[idx] = geo_n[idx]
            if len(self._corner_normals):
                u = hit["u"][found][:, None]
                v = hit["v"][found][:, None]
                corners = self._corner_normals[face]
                # Embree's barycentrics: the point is (1 - u - v) p0 + u p1 + v p2.
                interp = (1.0 - u - v) * corners[:, 0] + u * corners[:, 1] + v * corners[:, 2]
                unit, length = _normalize(interp)
                usable = length > 1.0e-6
                shade_n[idx[usable]] = _rotate(r_hit[usable], unit[usable])
        radiance = np.full((n, 3), np.float32(spec.ambient), np.float32)
        lit = np.flatnonzero(kind != _SKY)
        if len(lit):
            radiance[lit] = self._direct_light(
                views, rays.take(lit), d[lit], t_hit[lit], geo_n[lit], shade_n[lit], albedo[lit]
            )
        return radiance, kind

    def _direct_light(
        self,
        views: ViewBatch,
        rays: _Rays,
        d: np.ndarray,
        t_hit: np.ndarray,
        geo_n: np.ndarray,
        shade_n: np.ndarray,
        albedo: np.ndarray,
    ) -> np.ndarray:
        """(N, 3) radiance of N surface points (floor or object) seen along directions d (N, 3) at
        distances t_hit (N,), with normals (N, 3) and reflectance (N, 3): sun + ambient + spot with
        one shadow ray."""
        spec = self.scene
        view = rays.view
        flip = _dot(geo_n, d) > 0.0
        geo_n = np.where(flip[:, None], -geo_n, geo_n)
        flip = _dot(shade_n, geo_n) < 0.0
        shade_n = np.where(flip[:, None], -shade_n, shade_n)
        point = self._camera + t_hit[:, None] * d + _SURFACE_OFFSET * geo_n
        to_sun = -np.asarray(spec.sun_direction, dtype=np.float32)
        sun_cos = shade_n[:, 0] * to_sun[0] + shade_n[:, 1] * to_sun[1] + shade_n[:, 2] * to_sun[2]
        sun = np.float32(spec.sun_strength) * np.maximum(sun_cos, 0.0) / np.float32(math.pi)
        radiance = (sun + np.float32(spec.ambient))[:, None] * albedo
        spot_pos = views.spot_position[view]
        l_dir, dist = _normalize(spot_pos - point)
        n_dot_l = _dot(shade_n, l_dir)
        cos_axis = _dot(l_dir, spot_pos) / np.sqrt(_dot(spot_pos, spot_pos))
        cos_half = np.float32(spec.spot_cos_half_angle)
        lit = np.flatnonzero((n_dot_l > 0.0) & (cos_axis > cos_half) & (_dot(geo_n, l_dir) > 0.0))
        if not len(lit):
            return radiance
        # Cycles (Blender 3.x) spot attenuation: cosine to the axis, smoothstep near the cone edge.
        cos_axis = cos_axis[lit]
        att = cos_axis.copy()
        smooth = np.float32(spec.spot_smooth)
        edge = cos_axis - cos_half
        soft = edge < smooth
        x = edge[soft] / smooth
        att[soft] *= x * x * (3.0 - 2.0 * x)
        radius = np.float32(spec.spot_radius if self.settings.samples_per_pixel > 1 else 0.0)
        visible = self._unoccluded(views, rays.take(lit), point[lit], l_dir[lit], dist[lit], radius)
        irradiance = att * n_dot_l[lit] * visible / (dist[lit] * dist[lit] * np.float32(math.pi))
        radiance[lit] += irradiance[:, None] * albedo[lit] * views.spot_radiance[view[lit]]
        return radiance

    def _unoccluded(
        self,
        views: ViewBatch,
        rays: _Rays,
        point: np.ndarray,
        l_dir: np.ndarray,
        dist: np.ndarray,
        radius: np.float32,
    ) -> np.ndarray:
        """(N,) float32: 1 where the shadow ray from ``point`` (N, 3) to its ray's light-disk sample is
        free, else 0. ``l_dir`` (N, 3) and ``dist`` (N,): direction and distance to the light's centre."""
        visible = np.ones(len(rays.view), np.float32)
        from_object = point - rays.loc
        # Every shadow ray stays within the light's radius of the one to its centre, so a miss of
        # the bounding sphere grown by that radius means no sample can be blocked.
        near = np.flatnonzero(_hits_sphere(from_object, l_dir, self._radius + radius, dist))
        if not len(near):
            return visible
        rays = rays.take(near)
        origin = _rotate_back(rays.rot, from_object[near])
        offsets = self._light_offsets[rays.light % len(self._light_offsets)]
        if radius > 0.0:
            turn = self._light_rotation[rays.rows, rays.cols]
        else:
            turn = np.tile(np.array([1.0, 0.0], np.float32), (len(near), 1))
        ox = offsets[:, 0] * turn[:, 0] - offsets[:, 1] * turn[:, 1]
        oy = offsets[:, 0] * turn[:, 1] + offsets[:, 1] * turn[:, 0]
        v = rays.view
        disk = ox[:, None] * views.spot_u[v] + oy[:, None] * views.spot_v[v]
        direction, length = _normalize(views.spot_position[v] + radius * disk - point[near])
        dir_obj = _rotate_back(rays.rot, direction)
        tested = np.flatnonzero(_hits_box(origin, dir_obj, self._box[0], self._box[1], length))
        if len(tested):
            blocked = self._embree.run(
                np.ascontiguousarray(origin[tested]),
                np.ascontiguousarray(dir_obj[tested]),
                dists=length[tested].astype(np.float32),
                query="OCCLUDED",
            )
            visible[near[tested[blocked >= 0]]] = 0.0
        return visible

    # ---- images ----------------------------------------------------------------------------------

    def _encode(self, linear: np.ndarray) -> np.ndarray:
        """8-bit sRGB codes of linear values (any shape), through the lookup table (clamps to [0, 1])."""
        index = (np.clip(linear, 0.0, 1.0) * np.float32(len(self._lut) - 1) + np.float32(0.5)).astype(
            np.int64
        )
        out: np.ndarray = self._lut[index]
        return out

    def _supersampled(
        self, views: ViewBatch, view: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """(N, 3) uint8: the mean of ``samples_per_pixel`` rays (sample k uses light sample k) per pixel."""
        offsets = self._pixel_offsets
        k = len(offsets)
        n = len(view)
        radiance, _ = self._shade(
            views,
            np.repeat(view, k),
            np.repeat(rows, k),
            np.repeat(cols, k),
            np.tile(offsets, (n, 1)),
            np.tile(np.arange(k), n),
        )
        return self._encode(radiance.reshape(n, k, 3).mean(axis=1, dtype=np.float32))

    def render(self, views: ViewBatch, *, object_mask: bool = False) -> RenderOutput:
        if self._embree is None:
            raise RuntimeError("EmbreeRenderer.render called before set_mesh")
        size = self.settings.size
        adaptive = self.settings.antialias == "adaptive" and self.settings.samples_per_pixel > 1
        per_chunk = max(1, _PIXELS_PER_CHUNK // (size * size))
        images = np.empty((len(views), size, size, 3), dtype=np.uint8)
        mask = np.empty((len(views), size, size), dtype=bool) if object_mask else None
        grid_rows, grid_cols = np.divmod(np.arange(size * size), size)
        for start in range(0, len(views), per_chunk):
            stop = min(len(views), start + per_chunk)
            count = stop - start
            view = np.repeat(np.arange(start, stop), size * size)
            rows = np.tile(grid_rows, count)
            cols = np.tile(grid_cols, count)
            block = images[start:stop].reshape(-1, 3)
            if adaptive or object_mask:
                centre = np.full((len(view), 2), 0.5, np.float32)
                # One light sample, chosen per pixel: inside a penumbra neighbours then disagree,
                # which sends those pixels to the supersampling pass.
                radiance, kind = self._shade(views, view, rows, cols, centre, rows + 2 * cols)
                if mask is not None:
                    mask[start:stop] = (kind == _OBJECT).reshape(count, size, size)
            if adaptive:
                codes = self._encode(radiance).reshape(count, size, size, 3)
                selected = np.flatnonzero(_bends(codes, self.settings.contrast).reshape(-1))
                block[:] = codes.reshape(-1, 3)
                if len(selected):
                    block[selected] = self._supersampled(
                        views, view[selected], rows[selected], cols[selected]
                    )
            else:
                block[:] = self._supersampled(views, view, rows, cols)
        return RenderOutput(images=images, object_mask=mask)


def _bends(codes: np.ndarray, contrast: int) -> np.ndarray:
    """(V, H, W) bool: the largest ``|2 c - a - b|`` over the four pairs of opposite neighbours and
    the three channels exceeds ``contrast`` (edge pixels repeat the border, as the Warp kernel clamps).

    Args:
        codes: (V, H, W, 3) uint8 pixel-centre image.
    """
    c = codes.astype(np.int16)
    p = np.pad(c, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    mid = 2 * c
    worst = np.zeros(c.shape[:3], np.int16)
    for a, b in (
        (p[:, 1:-1, :-2], p[:, 1:-1, 2:]),
        (p[:, :-2, 1:-1], p[:, 2:, 1:-1]),
        (p[:, :-2, :-2], p[:, 2:, 2:]),
        (p[:, :-2, 2:], p[:, 2:, :-2]),
    ):
        np.maximum(worst, np.abs(mid - a - b).max(axis=3), out=worst)
    out: np.ndarray = worst > contrast
    return out

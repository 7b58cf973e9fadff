"""NVIDIA Warp ray-casting backend: the same kernels run on the CPU and on a CUDA GPU.

One BVH per object (built once, SAH, 4 triangles per leaf); every view rotates the camera and
shadow rays into the object frame instead of moving the mesh, and the floor is an analytic plane.
Warp's CPU backend runs a kernel on one core, so the generator runs one process per core.

Anti-aliasing is supersampling. In ``adaptive`` mode a first pass traces the pixel-centre ray of
every pixel; a second pass supersamples only the pixels where the first image bends sharply (the
largest second difference across the pixel, horizontally, vertically or diagonally, exceeds the
contrast threshold: silhouettes, creases, shadow borders, penumbrae) and keeps the centre value
elsewhere, where the image is locally linear and the two agree to within rounding. ``full`` mode
supersamples every pixel. Linear radiance is encoded to 8-bit sRGB through a lookup table.
"""

from __future__ import annotations

import ctypes.util
import math
import os
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
    import warp as wp
except ImportError as exc:  # pragma: no cover - exercised only without the render extra
    raise ImportError("the warp backend needs NVIDIA Warp: pip install 'sie[render]'") from exc

wp.config.log_level = wp.LOG_WARNING
# The kernels are never differentiated: without their adjoints a cold start (empty kernel cache) to
# the first image takes 4.1-4.3 s instead of 6.1 s on a 2-core CPU, at the same rendering speed.
wp.set_module_options({"enable_backward": False})


def _init_warp() -> None:
    """Initialise Warp's runtime once, without its CUDA warning on machines that have no NVIDIA driver.

    Warp's native code prints "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver" to
    stderr in every process that initialises it; on a CPU-only machine that is one line of noise per
    render worker. Where a driver library exists the warning is left alone: then it means something.
    """
    if ctypes.util.find_library("cuda") is not None:
        wp.init()
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_init_warp()

__all__ = ["WarpRenderer", "warp_devices"]

_PIXELS_PER_LAUNCH = 1 << 20  # bounds the size of the first pass's buffers
_LEAF_SIZE = 4
_SURFACE_OFFSET = wp.constant(
    1.0e-4
)  # shadow-ray origin offset along the geometric normal (unit-size objects)


@wp.struct
class _Scene:
    rotation: wp.array(dtype=wp.mat33)  # type: ignore[valid-type]
    translation: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    floor_rgb: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    spot_position: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    spot_radiance: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    spot_u: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    spot_v: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    pixel_offsets: wp.array(dtype=wp.vec2)  # type: ignore[valid-type]
    light_offsets: wp.array(dtype=wp.vec2)  # type: ignore[valid-type]
    light_rotation: wp.array(dtype=wp.vec2, ndim=2)  # type: ignore[valid-type]
    mesh: wp.uint64
    face_albedo: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    corner_normals: wp.array(dtype=wp.vec3)  # type: ignore[valid-type]
    smooth: int
    box_lo: wp.vec3
    box_hi: wp.vec3
    camera: wp.vec3
    right: wp.vec3
    up: wp.vec3
    forward: wp.vec3
    tan_half: float
    floor_z: float
    cos_half: float
    cone_smooth: float
    light_radius: float
    to_sun: wp.vec3
    sun_strength: float
    ambient: float
    srgb_lut: wp.array(dtype=wp.uint8)  # type: ignore[valid-type]
    width: int
    height: int


@wp.func
def _ray_hits_box(origin: wp.vec3, direction: wp.vec3, lo: wp.vec3, hi: wp.vec3, t_max: float) -> bool:
    """Slab test: does the ray meet the box at some 0 <= t <= t_max?"""
    t_near = 0.0
    t_far = t_max
    for axis in range(3):
        d = direction[axis]
        if wp.abs(d) < 1.0e-12:
            if origin[axis] < lo[axis] or origin[axis] > hi[axis]:
                return False
        else:
            inv = 1.0 / d
            t0 = (lo[axis] - origin[axis]) * inv
            t1 = (hi[axis] - origin[axis]) * inv
            t_near = wp.max(t_near, wp.min(t0, t1))
            t_far = wp.min(t_far, wp.max(t0, t1))
    return t_near <= t_far


@wp.func
def _camera_ray(s: _Scene, i: int, j: int, offset: wp.vec2) -> wp.vec3:
    x = (2.0 * (float(j) + offset[0]) / float(s.width) - 1.0) * s.tan_half
    y = (1.0 - 2.0 * (float(i) + offset[1]) / float(s.height)) * s.tan_half
    return wp.normalize(s.forward + x * s.right + y * s.up)


@wp.func
def _shade(s: _Scene, v: int, d: wp.vec3, first_light: int, light_count: int, i: int, j: int) -> wp.vec4:
    """Linear radiance seen along camera ray ``d`` of view ``v`` (xyz) and what it hit (w: 0 sky, 1 floor, 2 object).

    The spot's irradiance is computed from the light's centre; its visibility is the fraction of
    ``light_count`` points of the light's disk (samples ``first_light``, ... of a pattern rotated per
    pixel (i, j)) that an unoccluded shadow ray reaches: soft shadows.
    """
    rot = s.rotation[v]
    rot_t = wp.transpose(rot)
    loc = s.translation[v]
    t_hit = 1.0e30
    kind = 0
    if d[2] < 0.0:
        t_hit = (s.floor_z - s.camera[2]) / d[2]
        kind = 1
    geo_n = wp.vec3(0.0, 0.0, 1.0)
    shade_n = wp.vec3(0.0, 0.0, 1.0)
    albedo = s.floor_rgb[v]
    origin_obj = rot_t * (s.camera - loc)
    dir_obj = rot_t * d
    if _ray_hits_box(origin_obj, dir_obj, s.box_lo, s.box_hi, t_hit):
        q = wp.mesh_query_ray(s.mesh, origin_obj, dir_obj, t_hit)
        if q.result:
            t_hit = q.t
            kind = 2
            albedo = s.face_albedo[q.face]
            geo_n = rot * q.normal
            shade_n = geo_n
            if s.smooth != 0:
                base = 3 * q.face
                interp = (
                    q.u * s.corner_normals[base]
                    + q.v * s.corner_normals[base + 1]
                    + (1.0 - q.u - q.v) * s.corner_normals[base + 2]
                )
                if wp.length(interp) > 1.0e-6:
                    shade_n = rot * wp.normalize(interp)
    if kind == 0:
        return wp.vec4(s.ambient, s.ambient, s.ambient, 0.0)
    if wp.dot(geo_n, d) > 0.0:
        geo_n = -geo_n
    if wp.dot(shade_n, geo_n) < 0.0:
        shade_n = -shade_n
    point = s.camera + t_hit * d + _SURFACE_OFFSET * geo_n
    light = s.sun_strength * wp.max(wp.dot(shade_n, s.to_sun), 0.0) / wp.pi + s.ambient
    radiance = light * albedo
    spot_pos = s.spot_position[v]
    to_light = spot_pos - point
    dist = wp.length(to_light)
    l_dir = to_light / dist
    n_dot_l = wp.dot(shade_n, l_dir)
    cos_axis = wp.dot(l_dir, spot_pos) / wp.length(spot_pos)  # the axis points from the light to the origin
    if n_dot_l > 0.0 and cos_axis > s.cos_half and wp.dot(geo_n, l_dir) > 0.0:
        # Cycles (Blender 3.x) spot_attenuation: cosine to the axis, smoothstep near the cone edge.
        att = cos_axis
        edge = cos_axis - s.cos_half
        if edge < s.cone_smooth:
            x = edge / s.cone_smooth
            att = att * x * x * (3.0 - 2.0 * x)
        cs_sn = wp.vec2(1.0, 0.0)
        if s.light_radius > 0.0:
            cs_sn = s.light_rotation[i, j]
        origin_l = rot_t * (point - loc)
        n_lights = s.light_offsets.shape[0]
        visible = light_count
        # Every shadow ray stays within light_radius of the one to the light's centre, so a miss of
        # the box grown by that radius means no sample can be blocked.
        grow = wp.vec3(s.light_radius, s.light_radius, s.light_radius)
        if _ray_hits_box(origin_l, rot_t * l_dir, s.box_lo - grow, s.box_hi + grow, dist):
            visible = 0
        for k in range(light_count - visible):
            off = s.light_offsets[(first_light + k) % n_lights]
            ox = off[0] * cs_sn[0] - off[1] * cs_sn[1]
            oy = off[0] * cs_sn[1] + off[1] * cs_sn[0]
            sample = spot_pos + s.light_radius * (ox * s.spot_u[v] + oy * s.spot_v[v]) - point
            shadow_len = wp.length(sample)
            dir_l = rot_t * (sample / shadow_len)
            blocked = False
            if _ray_hits_box(origin_l, dir_l, s.box_lo, s.box_hi, shadow_len):
                blocked = wp.mesh_query_ray_anyhit(s.mesh, origin_l, dir_l, shadow_len)
            if not blocked:
                visible += 1
        if visible > 0:
            irradiance = att * n_dot_l * float(visible) / (float(light_count) * dist * dist * wp.pi)
            radiance += irradiance * wp.cw_mul(albedo, s.spot_radiance[v])
    return wp.vec4(radiance[0], radiance[1], radiance[2], float(kind))


@wp.func
def _encode(s: _Scene, linear: float) -> int:
    """8-bit sRGB code of a linear value, through the lookup table (clamps to [0, 1])."""
    n = s.srgb_lut.shape[0]
    k = int(wp.clamp(linear, 0.0, 1.0) * float(n - 1) + 0.5)
    return int(s.srgb_lut[k])


@wp.kernel
def _centre_pass(s: _Scene, out: wp.array(dtype=wp.int32, ndim=3)) -> None:  # type: ignore[valid-type]
    """One pixel-centre ray per pixel; writes r | g << 8 | b << 16 | kind << 24."""
    v, i, j = wp.tid()
    d = _camera_ray(s, i, j, wp.vec2(0.5, 0.5))
    # One light sample, chosen per pixel: inside a penumbra neighbours then disagree, which sends
    # those pixels to the supersampling pass (n rays, one light sample each); elsewhere one is exact.
    c = _shade(s, v, d, i + 2 * j, 1, i, j)
    out[v, i, j] = _encode(s, c[0]) | (_encode(s, c[1]) << 8) | (_encode(s, c[2]) << 16) | (int(c[3]) << 24)


@wp.func
def _bend(c: int, a: int, b: int) -> int:
    """Largest |2 c - a - b| over the three packed 8-bit channels: the second difference across c."""
    worst = 0
    for ch in range(3):
        shift = 8 * ch
        value = 2 * ((c >> shift) & 255) - ((a >> shift) & 255) - ((b >> shift) & 255)
        worst = wp.max(worst, wp.abs(value))
    return worst


@wp.kernel
def _resolve_pass(
    s: _Scene,
    adaptive: int,
    contrast: int,
    centre: wp.array(dtype=wp.int32, ndim=3),  # type: ignore[valid-type]
    out: wp.array(dtype=wp.uint8, ndim=4),  # type: ignore[valid-type]
) -> None:
    v, i, j = wp.tid()
    supersample = adaptive == 0
    packed = 0
    if adaptive != 0:
        # Smooth gradients (the soft cone edge, light fall-off) have small second differences and
        # keep their centre sample; steps (silhouettes, creases, shadow borders) do not.
        up = wp.max(i - 1, 0)
        down = wp.min(i + 1, s.height - 1)
        left = wp.max(j - 1, 0)
        right = wp.min(j + 1, s.width - 1)
        packed = centre[v, i, j]
        bend = _bend(packed, centre[v, i, left], centre[v, i, right])
        bend = wp.max(bend, _bend(packed, centre[v, up, j], centre[v, down, j]))
        bend = wp.max(bend, _bend(packed, centre[v, up, left], centre[v, down, right]))
        bend = wp.max(bend, _bend(packed, centre[v, up, right], centre[v, down, left]))
        supersample = bend > contrast
    if supersample:
        n = s.pixel_offsets.shape[0]
        acc = wp.vec3(0.0, 0.0, 0.0)
        for k in range(n):
            d = _camera_ray(s, i, j, s.pixel_offsets[k])
            sample = _shade(s, v, d, k, 1, i, j)
            acc += wp.vec3(sample[0], sample[1], sample[2])
        acc = acc / float(n)
        for ch in range(3):
            out[v, i, j, ch] = wp.uint8(_encode(s, acc[ch]))
    else:
        for ch in range(3):
            out[v, i, j, ch] = wp.uint8((packed >> (8 * ch)) & 255)


def warp_devices() -> list[str]:
    """Warp devices available here, e.g. ``['cpu']`` or ``['cpu', 'cuda:0']``."""
    return [str(d) for d in wp.get_devices()]


def _resolve_device(device: str) -> str:
    devices = warp_devices()
    if device == "auto":
        return "cuda:0" if "cuda:0" in devices else "cpu"
    if device == "cuda":
        device = "cuda:0"
    if device not in devices:
        raise UsageError(
            f"render.device={device!r} is not available to Warp here; available: {', '.join(devices)}"
        )
    return device


class WarpRenderer:
    """Ray-casts the 3DIEBench scene with NVIDIA Warp on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

    name = "warp"

    def __init__(
        self, settings: RenderSettings | None = None, scene: SceneSpec | None = None, device: str = "auto"
    ) -> None:
        self.settings = settings or RenderSettings()
        self.scene = scene or SceneSpec()
        self.device = _resolve_device(device)
        settings = self.settings
        self._mesh: Any = None
        self._arrays: dict[str, Any] = {}
        self._box = (np.zeros(3, np.float32), np.zeros(3, np.float32))
        n = settings.samples_per_pixel
        self._pixel_offsets = wp.array(pixel_offsets(n), dtype=wp.vec2, device=self.device)
        self._light_offsets = wp.array(light_disk_offsets(n), dtype=wp.vec2, device=self.device)
        self._lut = wp.array(srgb_lookup_table(), dtype=wp.uint8, device=self.device)
        self._light_rotation = wp.array(
            light_pattern_rotation(settings.size), dtype=wp.vec2, device=self.device
        )

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": f"warp-lang {wp.config.version}", "device": self.device}

    def warm_up(self) -> None:
        """Compile (or load from Warp's kernel cache) the kernels for this device."""
        wp.load_module(__name__, device=self.device)

    def set_mesh(self, mesh: Mesh) -> None:
        points = wp.array(mesh.vertices, dtype=wp.vec3, device=self.device)
        indices = wp.array(mesh.faces.reshape(-1), dtype=wp.int32, device=self.device)
        kwargs: dict[str, Any] = {}
        if self.device == "cpu":
            kwargs = {"bvh_constructor": "sah", "bvh_leaf_size": _LEAF_SIZE}
        self._mesh = wp.Mesh(points=points, indices=indices, **kwargs)
        normals = corner_normals(mesh, self.settings.crease_degrees).reshape(-1, 3)
        self._arrays = {
            "points": points,
            "indices": indices,
            "albedo": wp.array(mesh.face_albedo, dtype=wp.vec3, device=self.device),
            "normals": wp.array(normals, dtype=wp.vec3, device=self.device),
        }
        self._box = padded_bounds(mesh)

    def _scene_struct(self, views: ViewBatch, start: int, stop: int) -> _Scene:
        spec, size = self.scene, self.settings.size
        position, right, up, forward = camera_frame(spec)
        s = _Scene()

        def arr(a: np.ndarray, dtype: Any) -> Any:
            return wp.array(np.ascontiguousarray(a[start:stop]), dtype=dtype, device=self.device)

        s.rotation = arr(views.rotation, wp.mat33)
        s.translation = arr(views.translation, wp.vec3)
        s.floor_rgb = arr(views.floor_rgb, wp.vec3)
        s.spot_position = arr(views.spot_position, wp.vec3)
        s.spot_radiance = arr(views.spot_radiance, wp.vec3)
        s.spot_u = arr(views.spot_u, wp.vec3)
        s.spot_v = arr(views.spot_v, wp.vec3)
        s.pixel_offsets = self._pixel_offsets
        s.light_offsets = self._light_offsets
        s.light_rotation = self._light_rotation
        s.mesh = self._mesh.id
        s.face_albedo = self._arrays["albedo"]
        s.corner_normals = self._arrays["normals"]
        s.smooth = 1 if self.settings.crease_degrees > 0 else 0
        s.box_lo = wp.vec3(*self._box[0].tolist())
        s.box_hi = wp.vec3(*self._box[1].tolist())
        s.camera = wp.vec3(*position.tolist())
        s.right = wp.vec3(*right.tolist())
        s.up = wp.vec3(*up.tolist())
        s.forward = wp.vec3(*forward.tolist())
        s.tan_half = math.tan(spec.field_of_view / 2.0)
        s.floor_z = spec.floor_z
        s.cos_half = spec.spot_cos_half_angle
        s.cone_smooth = spec.spot_smooth
        s.light_radius = spec.spot_radius if self.settings.samples_per_pixel > 1 else 0.0
        s.to_sun = wp.vec3(*(-np.asarray(spec.sun_direction, dtype=np.float64)).tolist())
        s.sun_strength = spec.sun_strength
        s.ambient = spec.ambient
        s.srgb_lut = self._lut
        s.width = size
        s.height = size
        return s

    def render(self, views: ViewBatch, *, object_mask: bool = False) -> RenderOutput:
        if self._mesh is None:
            raise RuntimeError("WarpRenderer.render called before set_mesh")
        size = self.settings.size
        # With one ray per pixel there is nothing to supersample: the adaptive pre-pass would be wasted.
        adaptive = self.settings.antialias == "adaptive" and self.settings.samples_per_pixel > 1
        chunk = max(1, _PIXELS_PER_LAUNCH // (size * size))
        images = np.empty((len(views), size, size, 3), dtype=np.uint8)
        mask = np.empty((len(views), size, size), dtype=bool) if object_mask else None
        for start in range(0, len(views), chunk):
            stop = min(len(views), start + chunk)
            s = self._scene_struct(views, start, stop)
            shape = (stop - start, size, size)
            centre = wp.empty((1, 1, 1), dtype=wp.int32, device=self.device)
            if adaptive or object_mask:
                centre = wp.empty(shape, dtype=wp.int32, device=self.device)
                wp.launch(_centre_pass, dim=shape, inputs=[s, centre], device=self.device)
                if mask is not None:
                    mask[start:stop] = (centre.numpy() >> 24) == 2
            out = wp.empty((*shape, 3), dtype=wp.uint8, device=self.device)
            wp.launch(
                _resolve_pass,
                dim=shape,
                inputs=[s, 1 if adaptive else 0, int(self.settings.contrast), centre, out],
                device=self.device,
            )
            images[start:stop] = out.numpy()
        return RenderOutput(images=images, object_mask=mask)

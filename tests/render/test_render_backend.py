"""Every installed backend against geometry computed independently in this file.

Camera: position on the sphere r = 2.5 at polar pi/4, azimuth pi/2, looking at the origin with +Z up,
field of view 0.691111 rad; a point projects to pixel (column, row) by the plain pinhole formula
below. Lighting: sun 1.5 W/m^2 from above + ambient 0.05 on a Lambertian floor; spot cone of half
angle pi/16 around the line from the light to the origin.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest

from sie.render.backends import RenderSettings, backend_status, create_renderer
from sie.render.mesh import Mesh
from sie.render.procedural import procedural_mesh
from sie.render.procedural.parts import ellipsoid
from sie.render.scene import SceneSpec, views_from_latents

SIZE = 64
FOV = 0.691111


@pytest.fixture(params=["warp", "embree"])
def backend(request: pytest.FixtureRequest) -> str:
    problem = backend_status()[request.param]
    if problem is not None:
        pytest.skip(f"backend {request.param} is not installed: {problem}")
    return str(request.param)


def _camera() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    c = np.array([0.0, 2.5 * math.sin(math.pi / 4), 2.5 * math.cos(math.pi / 4)])
    f = -c / np.linalg.norm(c)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    return c, r, np.cross(r, f), f


def _project(p: np.ndarray, fov: float = FOV) -> np.ndarray:
    """(column, row) in pixels of world point p; (0, 0) is the top-left corner of the image."""
    c, r, u, f = _camera()
    d = p - c
    t = math.tan(fov / 2)
    x, y = d @ r / (d @ f * t), d @ u / (d @ f * t)
    return np.array([(x + 1) * SIZE / 2, (1 - y) * SIZE / 2])


def _srgb(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def _marker(centre: tuple[float, float, float], radius: float = 0.05) -> Mesh:
    """A small white sphere at ``centre`` in the object frame (not normalised)."""
    part = ellipsoid(radius, radius, radius, rings=10, segments=16)
    verts = (part.vertices + np.asarray(centre)).astype(np.float32)
    return Mesh(verts, part.faces.astype(np.int32), np.ones((len(part.faces), 3), np.float32))


def _render(
    mesh: Mesh,
    latents: np.ndarray,
    spp: int = 1,
    antialias: str = "full",
    size: int = SIZE,
    scene: SceneSpec | None = None,
    backend: str = "warp",
):
    renderer = create_renderer(
        backend, RenderSettings(size=size, samples_per_pixel=spp, antialias=antialias), scene, device="cpu"
    )
    renderer.set_mesh(mesh)
    return renderer.render(views_from_latents(np.atleast_2d(latents)), object_mask=True)


def _rot(a: np.ndarray) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = (
        math.cos(a[0]),
        math.sin(a[0]),
        math.cos(a[1]),
        math.sin(a[1]),
        math.cos(a[2]),
        math.sin(a[2]),
    )
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize(
    ("angles", "translation"),
    [
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((0.0, 0.0, math.pi / 2), (0.0, 0.0, 0.0)),
        ((0.3, -0.5, 0.8), (0.0, 0.0, 0.0)),
        ((-1.2, 0.4, -0.7), (0.3, -0.2, 0.25)),
    ],
)
def test_known_pose_puts_the_object_centre_at_the_expected_pixel(
    angles: tuple[float, float, float], translation: tuple[float, float, float], backend: str
) -> None:
    offset = np.array([0.4, 0.0, 0.1])
    latents = np.array([*angles, 0.5, 0.3, 1.0, 0.2, *translation])
    out = _render(_marker(tuple(offset)), latents, backend=backend)
    assert out.object_mask is not None
    rows, cols = np.nonzero(out.object_mask[0])
    assert len(rows) > 4
    # 3DIEBench-T's Blender matrix_basis = R @ Translation(t): a point p of the object lands at R (p + t).
    centre_world = _rot(np.array(angles)) @ (offset + np.array(translation))
    expected = _project(centre_world)
    got = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
    np.testing.assert_allclose(got, expected, atol=0.6)


def test_a_narrower_field_of_view_zooms_in_about_the_image_centre(backend: str) -> None:
    # The same off-centre marker, 3DIEBench's lens and one of half the field of view: the marker lands
    # where the pinhole formula with each angle puts it, and its footprint grows by (tan ratio)^2.
    offset = np.array([0.3, 0.0, 0.15])
    latents = np.array([0.2, -0.3, 0.4, 0.5, 0.3, 1.0, 0.2])
    narrow = FOV / 2
    masks = {}
    for fov in (FOV, narrow):
        out = _render(
            _marker(tuple(offset), radius=0.04), latents, scene=SceneSpec(field_of_view=fov), backend=backend
        )
        assert out.object_mask is not None
        rows, cols = np.nonzero(out.object_mask[0])
        expected = _project(_rot(latents[:3]) @ offset, fov=fov)
        np.testing.assert_allclose([cols.mean() + 0.5, rows.mean() + 0.5], expected, atol=0.6)
        masks[fov] = out.object_mask[0].sum()
    zoom = math.tan(FOV / 2) / math.tan(narrow / 2)
    assert masks[narrow] / masks[FOV] == pytest.approx(zoom**2, rel=0.25)


def test_floor_colour_away_from_the_spot_is_sun_plus_ambient(backend: str) -> None:
    hue = 0.37
    latents = np.array([0.0, 0.0, 0.0, hue, 0.0, 0.0, 0.5, 0.0, 0.0, 60.0])  # object far above the camera
    image = _render(_marker((0.0, 0.0, 0.0)), latents, backend=backend).images[0]
    irradiance = 1.5 / math.pi + 0.05
    expected = [round(255 * _srgb(c * irradiance)) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.6)]
    for corner in (image[0, 0], image[0, -1]):  # far floor, outside the spot's pool
        np.testing.assert_allclose(corner.astype(int), expected, atol=1)


@pytest.mark.parametrize(("theta", "phi"), [(0.0, 0.0), (math.pi / 8, 0.0), (math.pi / 5, 2.0)])
def test_spot_pool_is_the_cone_of_half_angle_pi_over_16_aimed_at_the_origin(
    theta: float, phi: float, backend: str
) -> None:
    latents = np.array([0.0, 0.0, 0.0, 0.0, theta, phi, 0.0, 0.0, 0.0, 60.0])
    image = _render(_marker((0.0, 0.0, 0.0)), latents, backend=backend).images[0].astype(int)
    lit = image[..., 0] > image[0, 0, 0] + 8  # the spot's hue 0 is red
    # Independent: the floor point seen through each pixel centre, inside the cone or not.
    c, r, u, f = _camera()
    t = math.tan(FOV / 2)
    light = 4.0 * np.array(
        [math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)]
    )
    axis = -light / 4.0
    jj, ii = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    d = f + ((2 * jj / SIZE - 1) * t)[..., None] * r + ((1 - 2 * ii / SIZE) * t)[..., None] * u
    floor = c + ((-1.0 - c[2]) / d[..., 2])[..., None] * d
    to_floor = floor - light
    cos = (to_floor @ axis) / np.linalg.norm(to_floor, axis=-1)
    inner = cos > math.cos(math.pi / 16 * 0.93)  # well inside the soft edge
    outer = cos < math.cos(math.pi / 16 * 1.02)  # beyond the cone
    assert inner.sum() > 20
    assert lit[inner].mean() > 0.97
    assert lit[outer].mean() < 0.03


def test_the_spot_casts_a_shadow_below_the_object(backend: str) -> None:
    part = ellipsoid(0.3, 0.3, 0.3, rings=16, segments=32)
    ball = Mesh(
        part.vertices.astype(np.float32),
        part.faces.astype(np.int32),
        np.full((len(part.faces), 3), 0.8, np.float32),
    )
    latents = np.array([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.6])
    image = _render(ball, latents, backend=backend).images[0].astype(int)
    shadow = np.round(_project(np.array([0.0, 0.0, -1.0]))).astype(int)
    lit = np.round(_project(np.array([0.65, 0.0, -1.0]))).astype(int)
    far = image[2, SIZE // 2]
    assert np.abs(image[shadow[1], shadow[0]] - far).max() <= 6  # only sun + ambient reach the shadow
    assert image[lit[1], lit[0]].sum() > image[shadow[1], shadow[0]].sum() + 40


def test_rendering_is_deterministic_and_adaptive_antialiasing_matches_full(backend: str) -> None:
    mesh = procedural_mesh("03001627", 0, 0)
    rng = np.random.default_rng(0)
    latents = np.column_stack(
        [
            rng.uniform(-1.5, 1.5, (3, 3)),
            rng.random(3),
            rng.uniform(0, 0.7, 3),
            rng.uniform(0, 6, 3),
            rng.random(3),
        ]
    )
    full = _render(mesh, latents, spp=4, antialias="full", size=96, backend=backend).images
    again = _render(mesh, latents, spp=4, antialias="full", size=96, backend=backend).images
    adaptive = _render(mesh, latents, spp=4, antialias="adaptive", size=96, backend=backend).images
    np.testing.assert_array_equal(full, again)
    diff = np.abs(full.astype(int) - adaptive.astype(int))
    assert diff.mean() < 0.3
    assert (diff > 8).mean() < 0.005
    single = _render(mesh, latents, spp=1, antialias="full", size=96, backend=backend).images
    assert np.abs(full.astype(int) - single.astype(int)).mean() > diff.mean()  # supersampling changes edges


def test_no_cuda_warning_on_a_machine_without_an_nvidia_driver() -> None:
    import ctypes.util
    import subprocess
    import sys

    if ctypes.util.find_library("cuda") is not None:
        pytest.skip("an NVIDIA driver library is present: Warp's CUDA messages are meaningful here")
    done = subprocess.run(
        [sys.executable, "-c", "import sie.render.backends.warp_backend, warp; warp.get_devices()"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CUDA" not in done.stderr, done.stderr

"""Parametric parts (numpy only) and the builder that assembles a coloured object from them.

Every primitive returns a :class:`Part` in its own local frame (Z up, centred unless stated); the
:class:`Builder` places parts with a rotation and a translation and gives each a colour. Parts may
overlap: the renderer casts rays, so no boolean union is needed. Frames follow the scene: Z up and
the object's front towards +Y.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DARK",
    "GLASS",
    "METAL",
    "WHITE",
    "WOOD",
    "Builder",
    "Part",
    "any_colour",
    "box",
    "cone",
    "cylinder",
    "ellipsoid",
    "hsv",
    "lathe",
    "prism",
    "rod",
    "rot_x",
    "rot_y",
    "rot_z",
    "rounded_box",
    "shell",
    "side_profile",
    "superellipsoid",
    "tint",
    "top_profile",
    "torus",
    "tube",
    "uniform",
    "wheel",
]

Vec = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Part:
    """A triangle mesh piece: (V, 3) float64 vertices and (F, 3) int64 faces."""

    vertices: np.ndarray
    faces: np.ndarray


# ---- rotations -------------------------------------------------------------------------------------


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _z_to(direction: np.ndarray) -> np.ndarray:
    """A rotation taking +Z to the unit vector ``direction``."""
    z = np.array([0.0, 0.0, 1.0])
    d = direction / np.linalg.norm(direction)
    axis = np.cross(z, d)
    s, c = float(np.linalg.norm(axis)), float(np.dot(z, d))
    if s < 1e-12:
        return np.eye(3) if c > 0 else rot_x(math.pi)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    result: np.ndarray = np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)
    return result


# ---- primitives --------------------------------------------------------------------------------------


def box(sx: float, sy: float, sz: float) -> Part:
    """Axis-aligned box of size (sx, sy, sz) centred at the origin."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = np.array(
        [
            [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # -x, +x
            [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # -y, +y
            [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],  # -z, +z
        ]
    )  # fmt: skip
    return Part(corners * np.array([sx, sy, sz]), faces)


def _grid_faces(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (columns wrap around when ``wrap``)."""
    faces = []
    last = cols if wrap else cols - 1
    for r in range(rows - 1):
        for c in range(last):
            a, b = r * cols + c, r * cols + (c + 1) % cols
            d, e = a + cols, b + cols
            faces.append([a, b, e])
            faces.append([a, e, d])
    return np.array(faces, dtype=np.int64)


def lathe(profile: Sequence[tuple[float, float]], segments: int = 24, arc: float = 2 * math.pi) -> Part:
    """Surface of revolution about Z of the (radius, z) ``profile``; radius 0 closes a pole."""
    prof = np.asarray(profile, dtype=np.float64)
    full = abs(arc - 2 * math.pi) < 1e-9
    count = segments if full else segments + 1
    theta = np.arange(count) * (arc / segments)
    ring = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    verts = np.concatenate(
        [np.column_stack([r * ring[:, 0], r * ring[:, 1], np.full(count, z)]) for r, z in prof]
    )
    return Part(verts, _grid_faces(len(prof), count, wrap=full))


def cylinder(
    radius: float, height: float, segments: int = 24, radius_top: float | None = None, capped: bool = True
) -> Part:
    """Cylinder (or frustum when ``radius_top`` differs) along Z, centred; caps close both ends."""
    top = radius if radius_top is None else radius_top
    h = height / 2.0
    profile = [(radius, -h), (top, h)]
    if capped:
        profile = [(0.0, -h), (radius, -h), (radius, -h), (top, h), (top, h), (0.0, h)]
    return lathe(profile, segments)


def cone(radius: float, height: float, segments: int = 24) -> Part:
    """Cone along Z with its base at z = -height/2 and apex at +height/2."""
    return cylinder(radius, height, segments, radius_top=0.0)


def ellipsoid(rx: float, ry: float, rz: float, rings: int = 12, segments: int = 24) -> Part:
    """Ellipsoid with semi-axes (rx, ry, rz), centred."""
    phi = np.linspace(-math.pi / 2, math.pi / 2, rings + 1)
    part = lathe([(math.cos(p), math.sin(p)) for p in phi], segments)
    return Part(part.vertices * np.array([rx, ry, rz]), part.faces)


def superellipsoid(
    a: float, b: float, c: float, e1: float = 0.3, e2: float = 0.3, rings: int = 12, segments: int = 24
) -> Part:
    """Superellipsoid with semi-axes (a, b, c); exponents near 0.2 give a rounded box, 1 an ellipsoid."""
    eta = np.linspace(-math.pi / 2, math.pi / 2, rings + 1)
    omega = np.arange(segments) * (2 * math.pi / segments)

    def f(x: np.ndarray, e: float) -> np.ndarray:
        result: np.ndarray = np.sign(x) * np.abs(x) ** e
        return result

    ee, oo = np.meshgrid(eta, omega, indexing="ij")
    verts = np.stack(
        [
            a * f(np.cos(ee), e1) * f(np.cos(oo), e2),
            b * f(np.cos(ee), e1) * f(np.sin(oo), e2),
            c * f(np.sin(ee), e1),
        ],
        axis=-1,
    ).reshape(-1, 3)
    return Part(verts, _grid_faces(rings + 1, segments, wrap=True))


def rounded_box(sx: float, sy: float, sz: float, roundness: float = 0.25) -> Part:
    """Box of size (sx, sy, sz) with rounded edges (a superellipsoid)."""
    return superellipsoid(sx / 2, sy / 2, sz / 2, roundness, roundness)


def torus(major: float, minor: float, arc: float = 2 * math.pi, segments: int = 24, sides: int = 10) -> Part:
    """Torus (or an arc of one) around Z in the XY plane, starting on +X."""
    t = np.linspace(0, 2 * math.pi, sides, endpoint=False)
    tube_profile = [(major + minor * math.cos(a), minor * math.sin(a)) for a in t]
    return lathe([*tube_profile, tube_profile[0]], segments, arc)


def tube(points: Sequence[Vec], radius: float, sides: int = 10, capped: bool = True) -> Part:
    """A circular tube of ``radius`` along the polyline ``points`` (k >= 2, (k, 3))."""
    pts = np.asarray(points, dtype=np.float64)
    tangents = np.gradient(pts, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    # Rotation-minimising frames by parallel transport of a first normal.
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangents[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tangents[0], helper)
    normal /= np.linalg.norm(normal)
    rings = []
    angles = np.linspace(0, 2 * math.pi, sides, endpoint=False)
    for p, tangent in zip(pts, tangents, strict=True):
        normal = normal - np.dot(normal, tangent) * tangent
        normal /= np.linalg.norm(normal)
        binormal = np.cross(tangent, normal)
        rings.append(p + radius * (np.cos(angles)[:, None] * normal + np.sin(angles)[:, None] * binormal))
    verts = np.concatenate(rings)
    faces = _grid_faces(len(pts), sides, wrap=True)
    if capped:
        n = len(verts)
        verts = np.concatenate([verts, pts[:1], pts[-1:]])
        start = [[n, (i + 1) % sides, i] for i in range(sides)]
        last = (len(pts) - 1) * sides
        end = [[n + 1, last + i, last + (i + 1) % sides] for i in range(sides)]
        faces = np.concatenate([faces, np.array(start + end, dtype=np.int64)])
    return Part(verts, faces)


def rod(start: Vec, end: Vec, radius: float, sides: int = 12) -> Part:
    """A capped cylinder from point ``start`` to point ``end`` (legs, struts, handles)."""
    a, b = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    length = float(np.linalg.norm(b - a))
    part = cylinder(radius, length, sides)
    rotation = _z_to(b - a)
    return Part(part.vertices @ rotation.T + (a + b) / 2.0, part.faces)


def prism(polygon: Sequence[tuple[float, float]], height: float) -> Part:
    """Extrusion along Z (centred) of a polygon in the XY plane that is star-shaped about its centroid."""
    poly = np.asarray(polygon, dtype=np.float64)
    n = len(poly)
    centre = poly.mean(axis=0)
    h = height / 2.0
    bottom = np.column_stack([poly, np.full(n, -h)])
    top = np.column_stack([poly, np.full(n, h)])
    verts = np.concatenate([bottom, top, [[centre[0], centre[1], -h], [centre[0], centre[1], h]]])
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces += [[i, j, n + j], [i, n + j, n + i], [2 * n, j, i], [2 * n + 1, n + i, n + j]]
    return Part(verts, np.array(faces, dtype=np.int64))


# ---- colours and assembly -------------------------------------------------------------------------


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    """Linear RGB reflectance of an HSV triple (hue wraps around)."""
    h = h % 1.0
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


class Builder:
    """Collects coloured parts placed in the object frame and concatenates them into one mesh."""

    def __init__(self) -> None:
        self._vertices: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self._colours: list[np.ndarray] = []
        self._count = 0

    def add(
        self,
        part: Part,
        colour: Sequence[float],
        at: Vec = (0.0, 0.0, 0.0),
        rotation: np.ndarray | None = None,
        scale: Vec | float = 1.0,
    ) -> Builder:
        """Add ``part`` scaled, then rotated, then moved to ``at``, with one linear-RGB ``colour``."""
        verts = part.vertices * np.asarray(scale, dtype=np.float64)
        if rotation is not None:
            verts = verts @ np.asarray(rotation).T
        verts = verts + np.asarray(at, dtype=np.float64)
        self._vertices.append(verts)
        self._faces.append(part.faces + self._count)
        self._colours.append(np.tile(np.asarray(colour, dtype=np.float64), (len(part.faces), 1)))
        self._count += len(verts)
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V, 3) vertices, (F, 3) faces and (F, 3) face colours of everything added."""
        if not self._faces:
            raise ValueError("the builder holds no parts")
        return np.concatenate(self._vertices), np.concatenate(self._faces), np.concatenate(self._colours)


# ---- helpers shared by the templates --------------------------------------------------------------


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw of U(low, high) as a Python float."""
    return float(rng.uniform(low, high))


def tint(
    rng: np.random.Generator,
    h: float,
    s: float,
    v: float,
    dh: float = 0.03,
    ds: float = 0.08,
    dv: float = 0.1,
) -> tuple[float, float, float]:
    """A per-instance variation of the HSV colour (h, s, v), as linear RGB."""
    return hsv(
        h + uniform(rng, -dh, dh),
        float(np.clip(s + uniform(rng, -ds, ds), 0.0, 1.0)),
        float(np.clip(v + uniform(rng, -dv, dv), 0.02, 1.0)),
    )


def any_colour(
    rng: np.random.Generator, s: tuple[float, float] = (0.3, 0.8), v: tuple[float, float] = (0.3, 0.8)
) -> tuple[float, float, float]:
    """A random saturated colour (paint, fabric, plastic)."""
    return hsv(uniform(rng, 0.0, 1.0), uniform(rng, *s), uniform(rng, *v))


def side_profile(polygon_yz: Sequence[tuple[float, float]], width: float) -> Part:
    """A polygon drawn in the YZ plane (y forward, z up), extruded along X over ``width`` (centred)."""
    part = prism(polygon_yz, width)
    to_yz = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # (px, py, pz) -> (pz, px, py)
    return Part(part.vertices @ to_yz.T, part.faces)


def top_profile(polygon_xy: Sequence[tuple[float, float]], bottom: float, top: float) -> Part:
    """A polygon drawn in the XY plane, extruded along Z from ``bottom`` to ``top``."""
    part = prism(polygon_xy, top - bottom)
    return Part(part.vertices + np.array([0.0, 0.0, (top + bottom) / 2.0]), part.faces)


def wheel(radius: float, width: float, segments: int = 20) -> Part:
    """A wheel: a cylinder whose axis is X (vehicles drive along Y)."""
    part = cylinder(radius, width, segments)
    return Part(part.vertices @ rot_y(math.pi / 2).T, part.faces)


def shell(outer: Sequence[tuple[float, float]], thickness: float, segments: int = 24) -> Part:
    """An open vessel: the lathe of the (radius, z) profile ``outer`` (bottom to rim) and its inside.

    The inner wall follows the outer one ``thickness`` inwards and ends ``thickness`` above the bottom.
    """
    prof = [(r, z) for r, z in outer]
    inner = [(max(r - thickness, 0.0), max(z, prof[0][1] + thickness)) for r, z in reversed(prof)]
    return lathe([*prof, *inner], segments)


# Common material colours (HSV): wood, metal, dark plastic/rubber, glass, white enamel.
WOOD = (0.08, 0.55, 0.5)
METAL = (0.6, 0.05, 0.65)
DARK = (0.0, 0.0, 0.07)
GLASS = (0.55, 0.35, 0.25)
WHITE = (0.1, 0.03, 0.85)

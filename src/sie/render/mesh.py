"""The triangle mesh the renderer draws: checks, normalisation and smooth-shading normals (numpy only).

Every object source (procedural templates, ShapeNet, ModelNet, mesh folders) ends in a :class:`Mesh`
in the scene's object frame: Blender's axes, Z up, the object's front facing +Y (towards the camera
at identity rotation), centred on its bounding-box centre and scaled to a unit bounding-box diagonal.
That is what 3DIEBench does with ShapeNetCore v2 models (the OBJ import turns ShapeNet's +Y up into
Blender's +Z up; ``model_normalized`` already has a bounding-box diagonal of about 1, and the
reference moves the box centre to the origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "DEFAULT_ALBEDO",
    "Mesh",
    "MeshProblem",
    "corner_normals",
    "is_watertight",
    "mesh_problem",
    "normalize_mesh",
    "weld",
]

DEFAULT_ALBEDO = 0.8
"""Grey reflectance of faces without a colour (Blender's default diffuse colour)."""

_MIN_EXTENT = 1e-9


class MeshProblem(ValueError):
    """A mesh that cannot be rendered (empty, non-finite, degenerate, ...); the message says why."""


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with one linear-RGB reflectance per face.

    Attributes:
        vertices: (V, 3) float32 positions.
        faces: (F, 3) int32 vertex indices.
        face_albedo: (F, 3) float32 linear reflectance in [0, 1].
        watertight: whether every edge is shared by exactly two faces (None = not checked).
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_albedo: np.ndarray
    watertight: bool | None = None

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) min and max corners of the bounding box."""
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])

    @cached_property
    def vertex_groups(self) -> np.ndarray:
        """(V,) :func:`weld` ids of the vertices (6 decimals), computed once and shared by the
        watertightness check and the smooth-shading normals."""
        return weld(self.vertices)


def _face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) cross products of two edges of every face (length = twice the area), float64."""
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    cross: np.ndarray = np.cross(b - a, c - a)
    return cross


def mesh_problem(vertices: np.ndarray, faces: np.ndarray) -> str | None:
    """Why ``(vertices, faces)`` cannot be rendered, or None when it can.

    Checks, in order: shapes, no vertices or faces, non-finite coordinates, out-of-range indices,
    every face of zero area, and a bounding box of zero size.
    """
    problem = _structure_problem(vertices, faces)
    if problem is None:
        problem = _geometry_problem(vertices, faces, _face_cross(vertices, faces))
    return problem


def _structure_problem(vertices: np.ndarray, faces: np.ndarray) -> str | None:
    """The checks of :func:`mesh_problem` that come before any geometry can be computed."""
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        return f"vertices have shape {vertices.shape}; expected (V, 3)"
    if faces.ndim != 2 or faces.shape[1] != 3:
        return f"faces have shape {faces.shape}; expected (F, 3) triangles"
    if len(vertices) == 0 or len(faces) == 0:
        return f"empty mesh ({len(vertices)} vertices, {len(faces)} faces)"
    if not np.isfinite(vertices).all():
        return "vertex coordinates contain NaN or infinity"
    if faces.min() < 0 or faces.max() >= len(vertices):
        return f"face indices out of range [0, {len(vertices)})"
    return None


def _geometry_problem(vertices: np.ndarray, faces: np.ndarray, cross: np.ndarray) -> str | None:
    """The area and extent checks of :func:`mesh_problem`, given the faces' edge cross products."""
    if not cross.any():
        return f"degenerate mesh: all {len(faces)} faces have zero area"
    with np.errstate(over="ignore", invalid="ignore"):
        extent = vertices.max(axis=0) - vertices.min(axis=0)
        diagonal = float(np.linalg.norm(extent))
    if diagonal <= _MIN_EXTENT:
        return "degenerate mesh: all vertices coincide"
    return None


def weld(vertices: np.ndarray, decimals: int = 6) -> np.ndarray:
    """(V,) index of each vertex's group of vertices equal to ``decimals`` places (lexsort, no row-unique)."""
    q = np.round(vertices.astype(np.float64) * 10.0**decimals).astype(np.int64)
    order = np.lexsort((q[:, 2], q[:, 1], q[:, 0]))
    sq = q[order]
    new_group = np.r_[True, (sq[1:] != sq[:-1]).any(axis=1)]
    groups = np.cumsum(new_group) - 1
    inverse = np.empty(len(q), dtype=np.int64)
    inverse[order] = groups
    return inverse


def is_watertight(vertices: np.ndarray, faces: np.ndarray, decimals: int = 6) -> bool:
    """True when, after merging vertices equal to ``decimals`` places, every edge has exactly two faces."""
    return _closed(weld(vertices, decimals)[faces])


def _closed(welded_faces: np.ndarray) -> bool:
    """True when every edge of (F, 3) faces over welded vertex ids is shared by exactly two faces."""
    f = np.asarray(welded_faces, dtype=np.int64)
    start = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    end = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    lo, hi = np.minimum(start, end), np.maximum(start, end)
    proper = lo != hi  # an edge collapsed by the weld is no edge
    lo, hi = lo[proper], hi[proper]
    if len(lo) == 0 or len(lo) % 2:
        return False
    keys = lo * (int(hi.max()) + 1) + hi  # one int64 per undirected edge
    keys.sort()
    # Every key exactly twice <=> sorted keys come in equal pairs, and consecutive pairs differ.
    first, second = keys[0::2], keys[1::2]
    return bool((first == second).all() and (second[:-1] != first[1:]).all())


def normalize_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_albedo: np.ndarray | None = None,
    *,
    check_watertight: bool = False,
) -> Mesh:
    """Drop zero-area faces, centre on the bounding-box centre, scale to a unit bounding-box diagonal.

    Args:
        vertices: (V, 3) positions in the object frame (Z up, front +Y).
        faces: (F, 3) triangle indices.
        face_albedo: (F, 3) linear reflectance; None gives :data:`DEFAULT_ALBEDO` grey.
        check_watertight: also compute :attr:`Mesh.watertight` (costs a sort of the edges).

    Raises:
        MeshProblem: for any reason listed by :func:`mesh_problem`.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    problem = _structure_problem(vertices, faces)
    if problem is None:
        with np.errstate(over="ignore", invalid="ignore"):  # huge coordinates: refused below, by name
            cross = _face_cross(vertices, faces)
        problem = _geometry_problem(vertices, faces, cross)
    if problem is not None:
        raise MeshProblem(problem)
    if face_albedo is None:
        face_albedo = np.full((len(faces), 3), DEFAULT_ALBEDO)
    face_albedo = np.clip(np.asarray(face_albedo, dtype=np.float64), 0.0, 1.0)
    if face_albedo.shape != faces.shape:
        raise MeshProblem(f"face colours have shape {face_albedo.shape}; expected {faces.shape}")
    keep = cross.any(axis=1)  # zero cross product = zero area
    if not keep.all():
        faces, face_albedo = faces[keep], face_albedo[keep]
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scale = 1.0 / float(np.linalg.norm(hi - lo))
        centred = (vertices - (lo + hi) / 2.0) * scale
        vertices32 = centred.astype(np.float32)
    if not (scale > 0 and np.isfinite(scale) and np.isfinite(vertices32).all()):
        # e.g. coordinates near +-1e308: the box's size overflows float64 and the object would collapse
        raise MeshProblem(
            f"coordinates span [{lo.min():.3g}, {hi.max():.3g}]; scaling them to a unit bounding-box "
            "diagonal overflows (non-finite result)"
        )
    faces32 = faces.astype(np.int32)
    groups = weld(vertices32) if check_watertight else None
    mesh = Mesh(
        vertices=vertices32,
        faces=faces32,
        face_albedo=face_albedo.astype(np.float32),
        watertight=None if groups is None else _closed(groups[faces32]),
    )
    if groups is not None:
        mesh.__dict__["vertex_groups"] = groups  # seed the cached_property: the normals reuse the weld
    return mesh


def corner_normals(mesh: Mesh, crease_degrees: float = 30.0, decimals: int = 6) -> np.ndarray:
    """(F, 3, 3) float32 shading normal at each corner of each face ("auto smooth").

    A corner's normal is the area-weighted mean of the normals of the faces around the same
    (welded) vertex whose normal is within ``crease_degrees`` of this face's normal, so curved
    surfaces shade smoothly while edges sharper than the crease angle stay crisp. A crease of 0
    gives flat shading (every corner gets its face normal).
    """
    cross = _face_cross(mesh.vertices, mesh.faces)
    area2 = np.linalg.norm(cross, axis=1, keepdims=True)
    face_n = cross / np.maximum(area2, 1e-30)
    flat = np.repeat(face_n[:, None, :], 3, axis=1)
    if crease_degrees <= 0:
        return flat.astype(np.float32)
    groups = mesh.vertex_groups if decimals == 6 else weld(mesh.vertices, decimals)
    corner_vertex = groups[mesh.faces].reshape(-1)  # (3F,)
    corner_face = np.repeat(np.arange(len(mesh.faces)), 3)
    corner_cross = np.repeat(cross, 3, axis=0)  # = cross[corner_face], without a gather
    n_vertices = int(corner_vertex.max()) + 1
    cos_crease = np.cos(np.radians(crease_degrees))

    def per_vertex_sum(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        return np.stack([np.bincount(index, weights=values[:, k], minlength=size) for k in range(3)], axis=1)

    # Fast path: at a vertex whose face normals all lie within half the crease angle of their mean,
    # every pair is within the crease angle, so every corner there gets the full (area-weighted) mean.
    total = per_vertex_sum(corner_vertex, corner_cross, n_vertices)
    mean = total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-30)
    result = mean[corner_vertex]
    close = np.einsum("ij,ij->i", np.repeat(face_n, 3, axis=0), result) >= np.cos(
        np.radians(crease_degrees) / 2
    )
    smooth_vertex = np.bincount(corner_vertex, weights=~close, minlength=n_vertices) == 0
    # Other vertices (creases, cones): a corner there sums the faces around its vertex whose normal is
    # within the crease angle of its own face's. The pairs of corners are visited in blocks of at most
    # _PAIR_BLOCK, so memory stays linear in the mesh size however many faces share one vertex (the
    # apex of a cone with 20,000 sides has 4e8 pairs).
    hard = np.flatnonzero(~smooth_vertex[corner_vertex])
    if len(hard):
        order = hard[np.argsort(corner_vertex[hard], kind="stable")]
        sorted_vertex = corner_vertex[order]
        starts = np.flatnonzero(np.r_[True, sorted_vertex[1:] != sorted_vertex[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        groups_of = _VertexGroups(order=order, starts=starts, sizes=sizes, corner_face=corner_face)
        sums = np.zeros((len(order), 3))
        _sum_ordinary_vertices(groups_of, face_n, cross, cos_crease, sums)
        for group in np.flatnonzero(sizes > _LARGE_VERTEX):
            _sum_large_vertex(groups_of, int(group), face_n, cross, cos_crease, sums)
        length = np.linalg.norm(sums, axis=1, keepdims=True)
        result[order] = np.where(length > 0, sums / np.maximum(length, 1e-30), face_n[corner_face[order]])
    normals: np.ndarray = result.reshape(-1, 3, 3).astype(np.float32)
    return normals


_PAIR_BLOCK = 1 << 19
"""Corner pairs compared at once by :func:`corner_normals` (about 50 MB of temporaries)."""

_LARGE_VERTEX = 256
"""Vertices with more corners than this are summed with matrix products, a block of rows at a time."""


@dataclass(frozen=True)
class _VertexGroups:
    """The corners at crease vertices, sorted by vertex: ``order`` (R,) corner ids, and per vertex
    its first row ``starts`` and its corner count ``sizes``; ``corner_face`` (3F,) maps corners to faces."""

    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    corner_face: np.ndarray


def _sum_ordinary_vertices(
    g: _VertexGroups, face_n: np.ndarray, cross: np.ndarray, cos_crease: float, sums: np.ndarray
) -> None:
    """Fill ``sums`` (R, 3) for the rows of vertices with at most :data:`_LARGE_VERTEX` corners.

    Row r adds ``cross`` of every corner of its vertex within the crease angle, in row order: the
    sum is the same, bit for bit, as one ``bincount`` over all pairs at once.
    """
    group_of_row = np.repeat(np.arange(len(g.starts)), g.sizes)
    rows = np.flatnonzero(g.sizes[group_of_row] <= _LARGE_VERTEX)
    if not len(rows):
        return
    pairs_per_row = g.sizes[group_of_row[rows]]
    cumulative = np.cumsum(pairs_per_row)
    block_start = 0
    while block_start < len(rows):
        done = cumulative[block_start - 1] if block_start else 0
        block_end = max(block_start + 1, int(np.searchsorted(cumulative, done + _PAIR_BLOCK, side="right")))
        block = rows[block_start:block_end]
        counts = pairs_per_row[block_start:block_end]
        local = np.repeat(np.arange(len(block)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        second = g.starts[group_of_row[block]][local] + within
        face_a = g.corner_face[g.order[block[local]]]
        face_b = g.corner_face[g.order[second]]
        near = np.einsum("ij,ij->i", face_n[face_a], face_n[face_b]) >= cos_crease
        weights = cross[face_b[near]]  # |cross| = 2 area: area weights
        sums[block] = np.stack(
            [np.bincount(local[near], weights=weights[:, k], minlength=len(block)) for k in range(3)], axis=1
        )
        block_start = block_end


def _sum_large_vertex(
    g: _VertexGroups, group: int, face_n: np.ndarray, cross: np.ndarray, cos_crease: float, sums: np.ndarray
) -> None:
    """Fill the rows of ``sums`` of one vertex with many corners: (rows x corners) blocks of matrix products."""
    start, size = int(g.starts[group]), int(g.sizes[group])
    faces = g.corner_face[g.order[start : start + size]]
    normals, weights = face_n[faces], cross[faces]
    step = max(1, _PAIR_BLOCK // size)
    for first in range(0, size, step):
        last = min(size, first + step)
        near = (normals[first:last] @ normals.T) >= cos_crease
        sums[start + first : start + last] = near.astype(np.float64) @ weights

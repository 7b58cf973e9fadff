"""Mesh checks, normalisation, watertightness and smooth-shading normals."""

from __future__ import annotations

import numpy as np
import pytest

from sie.render.mesh import (
    Mesh,
    MeshProblem,
    corner_normals,
    is_watertight,
    mesh_problem,
    normalize_mesh,
    weld,
)
from sie.render.procedural.parts import box, ellipsoid, lathe


def test_normalize_centres_the_bounding_box_and_scales_its_diagonal_to_one() -> None:
    part = box(2.0, 4.0, 6.0)
    mesh = normalize_mesh(part.vertices + np.array([10.0, -3.0, 1.0]), part.faces)
    lo, hi = mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(
        (hi - lo) / np.linalg.norm(hi - lo), np.array([2, 4, 6]) / np.sqrt(56), atol=1e-6
    )
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    np.testing.assert_allclose(mesh.face_albedo, 0.8)


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3), int), "empty mesh"),
        (np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]]), "NaN"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 5]]), "out of range"),
        (np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]]), np.array([[0, 1, 2]]), "zero area"),
        (np.zeros((3, 2)), np.array([[0, 1, 2]]), "expected \\(V, 3\\)"),
    ],
)
def test_mesh_problems_are_named(vertices: np.ndarray, faces: np.ndarray, message: str) -> None:
    problem = mesh_problem(np.asarray(vertices, float), np.asarray(faces))
    assert problem is not None
    with pytest.raises(MeshProblem, match=message):
        normalize_mesh(vertices, faces)


def test_zero_area_faces_are_dropped() -> None:
    part = box(1, 1, 1)
    faces = np.vstack([part.faces, [[0, 0, 1]]])
    assert normalize_mesh(part.vertices, faces).num_faces == 12


def test_watertight() -> None:
    part = box(1, 2, 3)
    assert is_watertight(part.vertices, part.faces)
    assert not is_watertight(part.vertices, part.faces[:-1])  # a missing triangle opens a hole
    assert normalize_mesh(part.vertices, part.faces, check_watertight=True).watertight is True


def test_corner_normals_smooth_a_sphere_and_keep_box_edges_flat() -> None:
    sphere = ellipsoid(1, 1, 1, rings=16, segments=32)
    mesh = Mesh(
        sphere.vertices.astype(np.float32),
        sphere.faces.astype(np.int32),
        np.ones((len(sphere.faces), 3), np.float32),
    )
    normals = corner_normals(mesh, 30.0)
    radial = sphere.vertices[sphere.faces] / np.linalg.norm(
        sphere.vertices[sphere.faces], axis=-1, keepdims=True
    )
    inner = np.abs(sphere.vertices[sphere.faces][..., 2]) < 0.95  # away from the poles
    cos = np.abs(np.einsum("fck,fck->fc", normals, radial))[inner]
    assert cos.min() > 0.995
    cube = box(1, 1, 1)
    mesh = Mesh(cube.vertices.astype(np.float32), cube.faces.astype(np.int32), np.ones((12, 3), np.float32))
    smooth = corner_normals(mesh, 30.0)
    flat = corner_normals(mesh, 0.0)
    np.testing.assert_allclose(smooth, flat, atol=1e-6)  # 90 degree edges are creases


def test_lathe_closes_poles() -> None:
    part = lathe([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)], 12)
    mesh = normalize_mesh(part.vertices, part.faces, check_watertight=True)
    assert mesh.watertight is True


def test_corner_normals_equal_a_plain_loop_over_faces_sharing_each_vertex() -> None:
    from sie.render.procedural.parts import cylinder

    part = cylinder(0.5, 1.0, segments=10)
    mesh = Mesh(
        part.vertices.astype(np.float32),
        part.faces.astype(np.int32),
        np.ones((len(part.faces), 3), np.float32),
    )
    got = corner_normals(mesh, 30.0)
    v = part.vertices
    cross = np.cross(v[part.faces[:, 1]] - v[part.faces[:, 0]], v[part.faces[:, 2]] - v[part.faces[:, 0]])
    unit = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-30)
    for f, face in enumerate(part.faces):
        if np.linalg.norm(cross[f]) == 0:
            continue
        for c, vertex in enumerate(face):
            total = np.zeros(3)
            for g, other in enumerate(part.faces):
                shares = any(np.allclose(v[o], v[vertex], atol=1e-9) for o in other)
                if shares and np.dot(unit[f], unit[g]) >= np.cos(np.radians(30.0)):
                    total += cross[g]
            np.testing.assert_allclose(got[f, c], total / np.linalg.norm(total), atol=1e-5)


def _closed_by_counting(faces: np.ndarray) -> bool:
    """Independent formula: count every undirected edge with a dictionary."""
    counts: dict[tuple[int, int], int] = {}
    for a, b, c in faces.tolist():
        for u, v in ((a, b), (b, c), (c, a)):
            if u != v:
                key = (min(u, v), max(u, v))
                counts[key] = counts.get(key, 0) + 1
    return bool(counts) and all(n == 2 for n in counts.values())


def test_watertight_check_matches_edge_counting() -> None:
    from sie.render.mesh import _closed

    rng = np.random.default_rng(0)
    tetra = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    cases = [
        tetra,  # closed
        tetra[:-1],  # a hole
        np.concatenate([tetra, tetra]),  # every edge four times
        np.concatenate([tetra, [[0, 1, 4]]]),  # one edge shared by three faces
        np.array([[0, 0, 1]]),  # collapsed face only
    ]
    for _ in range(40):  # random small soups: mostly open, some closed by chance
        cases.append(rng.integers(0, 5, size=(int(rng.integers(1, 9)), 3)))
    for faces in cases:
        assert _closed(faces) == _closed_by_counting(faces), faces


def test_normalize_mesh_reuses_one_weld_for_watertightness_and_normals() -> None:
    cube = box(1.0, 2.0, 3.0)
    part = normalize_mesh(cube.vertices, cube.faces, check_watertight=True)
    assert part.watertight is True
    assert "vertex_groups" in part.__dict__  # cached by the watertightness check
    np.testing.assert_array_equal(part.vertex_groups, weld(part.vertices))

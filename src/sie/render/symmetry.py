"""Rotational-symmetry score of a mesh: is rotation prediction well-posed for it?

Two independent area-weighted samples X and Y of the surface (positions, optionally with colour)
are compared: the score is the smallest, over candidate rotations R, of the mean nearest-neighbour
distance from R X to Y divided by that from X to Y. A shape that some rotation maps onto itself
scores about 1 (the rotated sample is as close as a fresh sample); an asymmetric one scores higher.
Candidates are rotations by 2 pi / k (k = 2..8) about the three principal axes of the surface and
the three coordinate axes, through the surface's centroid, (docs/render.md). Mirror symmetry is no problem (a reflection is
not a rotation) and is not tested.
"""

from __future__ import annotations

import math

import numpy as np

from sie.render.mesh import Mesh

__all__ = ["candidate_rotations", "sample_surface", "surface_moments", "symmetry_score"]


def sample_surface(mesh: Mesh, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniformly on the surface (by area): (count, 3) positions and (count, 3) colours."""
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    face = rng.choice(len(area), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
    points = w0[:, None] * a[face] + w1[:, None] * b[face] + w2[:, None] * c[face]
    return points, mesh.face_albedo[face].astype(np.float64)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    result: np.ndarray = np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)
    return result


def surface_moments(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Exact centroid (3,) and principal axes (3, 3 rows) of the surface, each triangle weighted by its area.

    Exact moments (not a sample's) matter: a centre off by the sampling noise would already make a
    perfectly symmetric shape look asymmetric under rotation.
    """
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2
    total = area.sum()
    centre = (area[:, None] * (a + b + c) / 3).sum(axis=0) / total
    s = a + b + c
    # Second moment of a uniform triangle: (S S^T + a a^T + b b^T + c c^T) / 12, S = a + b + c.
    outer = np.einsum("fi,fj->fij", s, s) + sum(np.einsum("fi,fj->fij", p, p) for p in (a, b, c))
    second = (area[:, None, None] * outer / 12).sum(axis=0) / total - np.outer(centre, centre)
    _, vectors = np.linalg.eigh(second)
    return centre, vectors.T


def candidate_rotations(axes: np.ndarray) -> list[np.ndarray]:
    """Rotations by 2 pi / k, k = 2..8, about the given axes (rows) and the x, y, z axes."""
    return [_rotation(axis, 2 * math.pi / k) for axis in [*axes, *np.eye(3)] for k in range(2, 9)]


def _mean_nn(query: np.ndarray, reference: np.ndarray) -> float:
    """Mean Euclidean distance from each query row to its nearest reference row (brute force)."""
    q, r = query.astype(np.float32), reference.astype(np.float32)
    d2 = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2.0 * (q @ r.T)
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean())


def symmetry_score(mesh: Mesh, samples: int = 1000, seed: int = 0, colour_weight: float = 0.0) -> float:
    """About 1.0 for a rotationally symmetric mesh, larger for an asymmetric one.

    Args:
        mesh: the object.
        samples: surface points per sample (cost grows with samples^2).
        seed: sampling seed (the score is deterministic given it).
        colour_weight: weight of the face colour, in units of the bounding-box diagonal
            (0 = geometry only; 0.3 gives a colour-aware score).
    """
    rng = np.random.default_rng(seed)
    x, cx = sample_surface(mesh, samples, rng)
    y, cy = sample_surface(mesh, samples, rng)
    centre, axes = surface_moments(mesh)
    x, y = x - centre, y - centre
    diag = float(np.linalg.norm(mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)))
    w = colour_weight * diag
    reference = np.hstack([y, w * cy])
    base = _mean_nn(np.hstack([x, w * cx]), reference)
    best = math.inf
    for rotation in candidate_rotations(axes):
        best = min(best, _mean_nn(np.hstack([x @ rotation.T, w * cx]), reference) / base)
    return best

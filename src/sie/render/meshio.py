"""Read a mesh file (.obj, .off, .ply, .stl, .glb, .gltf) into a normalised :class:`~sie.render.mesh.Mesh`.

trimesh does the parsing (ModelNet's fused ``OFF490 518 0`` headers included); scenes are merged
into one mesh. Colours come from the file when it has them (face or vertex colours, a textured
material sampled at the vertices, a material's main colour) and are taken as sRGB and linearised;
faces without colour get Blender's default grey. The up axis is converted to the scene's +Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from sie.render.mesh import Mesh, MeshProblem, normalize_mesh

__all__ = ["MESH_SUFFIXES", "UpAxis", "default_up_axis", "load_mesh_file", "srgb_to_linear"]

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")
"""File types the folder and ModelNet sources pick up."""

UpAxis = Literal["y", "z"]

# (x, y, z) with +Y up and front -Z (ShapeNet, glTF, most OBJ) -> the scene's (x, -z, y): +Z up and
# front +Y, what Blender's OBJ importer (forward -Z, up Y) does for 3DIEBench.
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def default_up_axis(path: Path) -> UpAxis:
    """+Y up for OBJ and glTF (their conventions, ShapeNet's too); +Z up for OFF, PLY and STL (ModelNet, CAD)."""
    return "y" if path.suffix.lower() in (".obj", ".glb", ".gltf") else "z"


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """Linear reflectance of 8-bit sRGB codes (any shape), float64 in [0, 1]."""
    c = np.asarray(values, dtype=np.float64) / 255.0
    linear: np.ndarray = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear


def _face_colours(mesh: Any) -> np.ndarray | None:
    """(F, 3) sRGB codes of a trimesh mesh's faces, or None when the file carries no colour."""
    visual = getattr(mesh, "visual", None)
    if visual is None:
        return None
    kind = getattr(visual, "kind", None)
    try:
        if kind == "texture":
            material = getattr(visual, "material", None)
            try:
                visual = visual.to_color()
                kind = visual.kind
            except Exception:  # a missing or unreadable texture image: fall back to the material colour
                main = getattr(material, "main_color", None)
                if main is None:
                    return None
                return np.tile(np.asarray(main, dtype=np.float64)[:3], (len(mesh.faces), 1))
        if kind == "face":
            colours: np.ndarray = np.asarray(visual.face_colors, dtype=np.float64)[:, :3]
            return colours
        if kind == "vertex":
            vc = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3]
            averaged: np.ndarray = vc[np.asarray(mesh.faces)].mean(axis=1)
            return averaged
    except (ValueError, IndexError, AttributeError):
        return None
    return None


def load_mesh_file(path: str | Path, up_axis: UpAxis | None = None, *, check_watertight: bool = True) -> Mesh:
    """Read, convert to +Z up, recentre and scale one mesh file.

    Args:
        path: the file.
        up_axis: the file's up axis; None picks :func:`default_up_axis` from the suffix.
        check_watertight: fill :attr:`Mesh.watertight`.

    Raises:
        MeshProblem: with a message naming the file, when it cannot be read or holds no usable
            triangles (empty, non-finite, degenerate).
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise MeshProblem(f"{path}: no such file")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        raise MeshProblem(f"{path}: cannot read it as a mesh ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    if faces.ndim != 2 or faces.size == 0:
        raise MeshProblem(f"{path}: empty mesh (no triangles)")
    colours = _face_colours(loaded)
    albedo = srgb_to_linear(colours) if colours is not None and len(colours) == len(faces) else None
    axis = up_axis or default_up_axis(path)
    if axis == "y":
        vertices = vertices @ _Y_UP_TO_Z_UP.T
    try:
        return normalize_mesh(vertices, faces, albedo, check_watertight=check_watertight)
    except MeshProblem as exc:
        raise MeshProblem(f"{path}: {exc}") from None

"""Read a mesh file (.obj, .off, .ply, .stl, .glb, .gltf) into a normalised :class:`~sie.render.mesh.Mesh`.

trimesh does the parsing (ModelNet's fused ``OFF490 518 0`` headers included); scenes are merged
into one mesh. Colours come from the file when it has them (face or vertex colours, a textured
material sampled at the vertices, a material's main colour, also when it is the only material of an
OBJ) and are taken as sRGB and linearised; faces without colour get Blender's default grey. The up
axis is converted to the scene's +Z.

Text files that are not UTF-8 (an OBJ or MTL with a Latin-1 comment) are read as Latin-1, which
decodes any byte, instead of trimesh's guess with ``charset_normalizer`` (an optional package). An
OFF file that trimesh cannot read (faces of mixed sizes: quads beside pentagons) is read by
:func:`read_off`, which fans every polygon into triangles.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sie.render.mesh import Mesh, MeshProblem, normalize_mesh

__all__ = ["MESH_SUFFIXES", "UpAxis", "default_up_axis", "load_mesh_file", "read_off", "srgb_to_linear"]

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
                sampled = visual.to_color()
            except Exception:  # a missing or unreadable texture image: fall back to the material colour
                sampled = None
            if sampled is not None and sampled.kind in ("face", "vertex"):
                visual, kind = sampled, sampled.kind
            else:  # no texture to sample (an OBJ whose faces all use one plain material): its colour
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


def as_utf8(data: bytes) -> bytes:
    """``data`` unchanged when it is UTF-8, else read as Latin-1 (which decodes any byte) and re-encoded."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1").encode("utf-8")
    return data


def _utf8_resolver(path: Path) -> Any:
    """A trimesh resolver for the files next to ``path`` that hands MTL files over as UTF-8."""
    import trimesh

    class Utf8Resolver(trimesh.resolvers.FilePathResolver):  # type: ignore[misc]
        def get(self, name: str) -> bytes:
            data: bytes = super().get(name)
            return as_utf8(data) if name.lower().endswith(".mtl") else data

    return Utf8Resolver(str(path))


_OFF_HEADER = re.compile(r"^(?:ST)?C?N?OFF")
"""OFF and its variants with texture coordinates, colours or normals after each vertex (ignored here)."""


def read_off(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vertices, triangles and face colours of an OFF file's text; polygons are fanned into triangles.

    Accepts ``#`` comments, blank lines, the counts on the header line or on the next one (ModelNet's
    fused ``OFF490 518 0`` too), and faces of any size >= 3 mixed in one file. A face line may end
    with a colour (3 or 4 numbers, 0-255 integers or 0-1 floats).

    Returns:
        (V, 3) float64 vertices, (T, 3) int64 triangles, (T, 3) float64 sRGB codes (0-255) of the
        triangles or None when no face has a colour.

    Raises:
        ValueError: a missing header, counts that do not match the lines, or an unreadable number,
            naming the line.
    """
    lines = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, tokens) for n, tokens in lines if tokens]
    if not lines or not _OFF_HEADER.match(lines[0][1][0]):
        raise ValueError("no OFF header on the first line")
    header_no, header = lines[0]
    counts = header[1:] if len(header) > 1 else []
    fused = _OFF_HEADER.sub("", header[0])
    if fused:
        counts = [fused, *counts]
    body = lines[1:]
    if not counts:
        if not body:
            raise ValueError("no vertex and face counts after the header")
        header_no, counts = body[0]
        body = body[1:]
    try:
        n_vertices, n_faces = int(counts[0]), int(counts[1])
    except (ValueError, IndexError):
        raise ValueError(
            f"line {header_no}: expected the vertex and face counts, got {' '.join(counts)}"
        ) from None
    if len(body) < n_vertices + n_faces:
        raise ValueError(
            f"{n_vertices} vertices and {n_faces} faces announced, but only {len(body)} lines follow"
        )
    try:
        vertices = np.array([[float(t) for t in tokens[:3]] for _, tokens in body[:n_vertices]])
    except ValueError as exc:
        raise ValueError(f"a vertex line holds something other than numbers ({exc})") from None
    if vertices.shape != (n_vertices, 3):
        raise ValueError("a vertex line has fewer than 3 coordinates")
    triangles: list[tuple[int, int, int]] = []
    colours: list[list[float] | None] = []
    for n, tokens in body[n_vertices : n_vertices + n_faces]:
        try:
            size = int(tokens[0])
            corners = [int(t) for t in tokens[1 : 1 + size]]
            extra = [float(t) for t in tokens[1 + size :]]
        except ValueError:
            raise ValueError(f"line {n}: expected a face (count, then vertex indices)") from None
        if size < 3 or len(corners) != size:
            raise ValueError(f"line {n}: a face of {size} corners with {len(corners)} indices; expected >= 3")
        colour = None
        if len(extra) in (3, 4):
            rgb = extra[:3]
            colour = rgb if any(c > 1.0 for c in rgb) else [c * 255.0 for c in rgb]
        for k in range(1, size - 1):  # a fan around the first corner (ModelNet's polygons are convex)
            triangles.append((corners[0], corners[k], corners[k + 1]))
            colours.append(colour)
    faces = np.array(triangles, dtype=np.int64).reshape(-1, 3)
    if any(c is None for c in colours) or not colours:
        return vertices, faces, None
    return vertices, faces, np.array(colours, dtype=np.float64)


def _load_with_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vertices, faces and face sRGB codes (or None) of a mesh file, through trimesh."""
    import trimesh

    suffix = path.suffix.lower()
    if suffix in (".obj", ".off"):  # text formats: hand trimesh UTF-8 so that it never guesses
        loaded = trimesh.load(
            io.BytesIO(as_utf8(path.read_bytes())),
            file_type=suffix[1:],
            resolver=_utf8_resolver(path),
            force="mesh",
            process=False,
        )
    else:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    return vertices, faces, _face_colours(loaded)


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
    path = Path(path)
    if not path.is_file():
        raise MeshProblem(f"{path}: no such file")
    try:
        vertices, faces, colours = _load_with_trimesh(path)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        failure = f"{type(exc).__name__}: {exc}"
        if path.suffix.lower() != ".off":
            raise MeshProblem(f"{path}: cannot read it as a mesh ({failure})") from None
        try:  # trimesh fails on OFF faces of mixed sizes: read it here
            vertices, faces, colours = read_off(as_utf8(path.read_bytes()).decode("utf-8"))
        except (OSError, ValueError) as own:
            raise MeshProblem(f"{path}: cannot read it as an OFF mesh ({own})") from None
    if faces.ndim != 2 or faces.size == 0:
        raise MeshProblem(f"{path}: empty mesh (no triangles)")
    albedo = srgb_to_linear(colours) if colours is not None and len(colours) == len(faces) else None
    axis = up_axis or default_up_axis(path)
    if axis == "y":
        vertices = vertices @ _Y_UP_TO_Z_UP.T
    try:
        return normalize_mesh(vertices, faces, albedo, check_watertight=check_watertight)
    except MeshProblem as exc:
        raise MeshProblem(f"{path}: {exc}") from None

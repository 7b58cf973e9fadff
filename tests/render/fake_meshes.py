"""Tiny fake mesh trees for the render tests (ShapeNetCore v2, ModelNet), written with trimesh."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trimesh

__all__ = ["box", "crash_on_bad_in_key", "write_off_fused_header", "write_shapenet"]


def box(extents: tuple[float, float, float] = (1.0, 3.0, 1.0)) -> Any:
    """A trimesh box (12 triangles, watertight)."""
    return trimesh.creation.box(extents=extents)


def write_shapenet(root: Path, synsets: dict[str, int], taxonomy: bool = True) -> Path:
    """``root/SYNSET/MODEL/models/model_normalized.obj`` boxes, longest along the file's Y (ShapeNet's up)."""
    for synset, count in synsets.items():
        for k in range(count):
            models = root / synset / f"{k:032x}" / "models"
            models.mkdir(parents=True)
            box((1.0, 3.0 + k, 1.0)).export(models / "model_normalized.obj")
    if taxonomy:
        entries = [
            {"synsetId": s, "name": f"thing{i},other name", "children": []} for i, s in enumerate(synsets)
        ]
        (root / "taxonomy.json").write_text(json.dumps(entries))
    return root


def write_off_fused_header(path: Path, size: float = 1.0, tall: float = 3.0) -> None:
    """A box in OFF with ModelNet's broken first line (``OFF8 12 0``), longest along Z."""
    mesh = box((size, size, tall))
    lines = [f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(f"{x:.6f}" for x in v) for v in mesh.vertices]
    lines += ["3 " + " ".join(str(i) for i in f) for f in mesh.faces]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def crash_on_bad_in_key(obj: Any) -> Any:
    """A render-pool task for the tests: the process exits abruptly (as if killed) for an object of
    class ``bad``; every other object comes back rendered without rendering anything."""
    import os

    from sie.render.generator import ObjectResult

    if obj.key.startswith("bad/"):
        os._exit(3)
    return ObjectResult(obj.key, "rendered", 1, obj.ref.locator)

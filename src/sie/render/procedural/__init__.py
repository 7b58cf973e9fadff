"""Procedural objects: 55 parametric class templates named after the ShapeNetCore classes.

An object is regenerated on demand from ``(class, instance, seed)``: nothing is stored or downloaded.
"""

from __future__ import annotations

import numpy as np

from sie.render.mesh import Mesh, normalize_mesh
from sie.render.procedural.catalog import CLASSES, ProceduralClass, class_by_synset
from sie.seeding import derive_seed

__all__ = ["CLASSES", "ProceduralClass", "class_by_synset", "procedural_mesh", "procedural_object_id"]


def procedural_mesh(synset: str, instance: int, seed: int = 0) -> Mesh:
    """The mesh of instance ``instance`` of class ``synset`` for generator seed ``seed`` (normalised)."""
    cls = class_by_synset(synset)
    rng = np.random.default_rng(derive_seed("procedural", synset, instance, seed))
    vertices, faces, colours = cls.template(rng).arrays()
    return normalize_mesh(vertices, faces, colours)


def procedural_object_id(synset: str, instance: int, seed: int = 0) -> str:
    """A 32-hex object id (like ShapeNet's model ids) that names ``(synset, instance, seed)``."""
    return f"{derive_seed('procedural-id', synset, instance, seed):016x}{instance:016x}"

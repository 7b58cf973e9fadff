"""The 55 procedural classes: ShapeNet ids and counts, regeneration from seeds, rotational asymmetry."""

from __future__ import annotations

import numpy as np
import pytest

from sie.render.mesh import normalize_mesh
from sie.render.procedural import CLASSES, procedural_mesh, procedural_object_id
from sie.render.procedural.parts import Builder, box, cylinder, ellipsoid
from sie.render.symmetry import symmetry_score

# The fast version of the symmetry check: instance 0 of every class, 500 surface samples. Symmetric
# shapes score 1.00-1.08 here (see the controls below); these thresholds leave a margin above that.
# Geometry alone must show the asymmetry, and colour (labels, parts) must make it clear.
GEOMETRY_MIN = 1.12
COLOUR_MIN = 1.25
SAMPLES = 500


def test_catalog_is_shapenetcore_v2_with_3diebench_counts() -> None:
    synsets = [c.synset for c in CLASSES]
    assert len(synsets) == 55 == len(set(synsets))
    assert synsets == sorted(synsets)
    assert all(len(s) == 8 and s.isdigit() for s in synsets)
    names = {c.synset: c.name for c in CLASSES}
    assert names["02691156"] == "airplane" and names["03001627"] == "chair" and names["04379243"] == "table"
    assert sum(c.train for c in CLASSES) == 41_920
    assert sum(c.val for c in CLASSES) == 10_552
    assert sum(c.count for c in CLASSES) == 52_472


def test_objects_are_regenerated_identically_from_class_instance_and_seed() -> None:
    a = procedural_mesh("02958343", 3, seed=5)
    b = procedural_mesh("02958343", 3, seed=5)
    for field in ("vertices", "faces", "face_albedo"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    other_instance = procedural_mesh("02958343", 4, seed=5)
    other_seed = procedural_mesh("02958343", 3, seed=6)
    assert not np.array_equal(a.vertices[:50], other_instance.vertices[:50])
    assert not np.array_equal(a.vertices[:50], other_seed.vertices[:50])
    oid = procedural_object_id("02958343", 3, 5)
    assert len(oid) == 32 and int(oid, 16) >= 0 and oid == procedural_object_id("02958343", 3, 5)
    assert oid != procedural_object_id("02958343", 3, 6)


def test_every_template_builds_a_normalised_renderable_mesh() -> None:
    for cls in CLASSES:
        mesh = procedural_mesh(cls.synset, 1, 0)
        lo, hi = mesh.bounds
        assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-5), cls.name
        assert 8 <= mesh.num_faces <= 20_000, cls.name
        assert (mesh.face_albedo >= 0).all() and (mesh.face_albedo <= 1).all()


def _score(builder: Builder, colour: float = 0.0) -> float:
    v, f, c = builder.arrays()
    return symmetry_score(normalize_mesh(v, f, c), samples=SAMPLES, seed=0, colour_weight=colour)


def test_symmetry_score_flags_symmetric_controls() -> None:
    grey = (0.5, 0.5, 0.5)
    assert _score(Builder().add(cylinder(0.4, 1.0), grey)) < 1.08
    assert _score(Builder().add(box(1.0, 0.6, 0.3), grey)) < 1.08
    assert _score(Builder().add(ellipsoid(0.5, 0.3, 0.2), grey)) < 1.08
    lopsided = Builder().add(box(1.0, 0.2, 0.2), grey).add(box(0.2, 0.6, 0.2), grey, at=(0.4, 0.3, 0.0))
    assert _score(lopsided) > 1.3


@pytest.mark.parametrize("cls", CLASSES, ids=[c.name.replace(" ", "_") for c in CLASSES])
def test_template_is_not_rotationally_symmetric(cls) -> None:  # type: ignore[no-untyped-def]
    mesh = procedural_mesh(cls.synset, 0, 0)
    geometry = symmetry_score(mesh, samples=SAMPLES, seed=0)
    coloured = symmetry_score(mesh, samples=SAMPLES, seed=0, colour_weight=0.3)
    assert geometry >= GEOMETRY_MIN, f"{cls.name}: geometry-only symmetry score {geometry:.3f}"
    assert coloured >= COLOUR_MIN, f"{cls.name}: colour-aware symmetry score {coloured:.3f}"

"""Object sources on tiny fake trees written here: ShapeNetCore v2, ModelNet, mesh folders; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from tests.render.fake_meshes import box as _box  # noqa: E402
from tests.render.fake_meshes import write_off_fused_header, write_shapenet  # noqa: E402

from sie.errors import UsageError  # noqa: E402
from sie.render.mesh import MeshProblem  # noqa: E402
from sie.render.meshio import load_mesh_file, srgb_to_linear  # noqa: E402
from sie.render.sources import FolderSource, ModelNetSource, ProceduralSource, ShapeNetSource, open_source  # noqa: E402


def test_shapenet_layout_names_and_up_axis(tmp_path: Path) -> None:
    root = write_shapenet(tmp_path / "ShapeNetCore.v2", {"02691156": 2, "03001627": 3})
    source = open_source(f"shapenet:{root}")
    assert isinstance(source, ShapeNetSource)
    assert source.class_ids() == ["02691156", "03001627"]
    assert source.class_name("02691156") == "thing0"
    assert source.available("03001627") == 3
    refs = source.objects("03001627", None, seed=0)
    assert [r.object_id for r in refs] == [f"{k:032x}" for k in range(3)]
    mesh = source.load(refs[0])
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert np.argmax(extent) == 2  # the file's +Y (up) became the scene's +Z
    assert mesh.watertight is True
    subset = source.objects("03001627", 2, seed=0)
    assert len(subset) == 2 and subset == source.objects("03001627", 2, seed=0)


def test_shapenet_without_taxonomy_falls_back_to_known_names(tmp_path: Path) -> None:
    root = write_shapenet(tmp_path / "sn", {"03001627": 2}, taxonomy=False)
    assert open_source(f"shapenet:{root}").class_name("03001627") == "chair"


def test_modelnet_reads_train_and_test_off_files_with_fused_headers(tmp_path: Path) -> None:
    root = tmp_path / "ModelNet10"
    write_off_fused_header(root / "chair" / "train" / "chair_0001.off")
    write_off_fused_header(root / "chair" / "test" / "chair_0890.off", tall=2.0)
    write_off_fused_header(root / "desk" / "train" / "desk_0001.off")
    source = open_source(f"modelnet:{root}")
    assert isinstance(source, ModelNetSource)
    assert source.class_ids() == ["chair", "desk"]
    refs = source.objects("chair", None, 0)
    assert [r.object_id for r in refs] == ["chair_0001", "chair_0890"]
    mesh = source.load(refs[0])
    assert np.argmax(mesh.bounds[1] - mesh.bounds[0]) == 2  # ModelNet is +Z up: unchanged


def test_folder_source_reads_every_format_and_keeps_duplicate_stems_apart(tmp_path: Path) -> None:
    root = tmp_path / "meshes"
    (root / "widgets").mkdir(parents=True)
    for suffix in ("obj", "off", "ply", "stl", "glb"):
        _box().export(root / "widgets" / f"w_{suffix}.{suffix}")
    _box().export(root / "widgets" / "same.obj")
    _box().export(root / "widgets" / "same.ply")
    (root / "widgets" / "notes.txt").write_text("not a mesh")
    source = open_source(f"folder:{root}")
    assert isinstance(source, FolderSource)
    ids = [r.object_id for r in source.objects("widgets", None, 0)]
    assert ids == ["same_obj", "same_ply", "w_glb", "w_obj", "w_off", "w_ply", "w_stl"]
    for ref in source.objects("widgets", None, 0):
        mesh = source.load(ref)
        assert mesh.num_faces == 12
        axis = 2 if ref.object_id.endswith(("obj", "glb")) else 1  # obj/glb are +Y up; off/ply/stl +Z up
        assert np.argmax(mesh.bounds[1] - mesh.bounds[0]) == axis, ref.object_id
    forced = open_source(f"folder:{root}", up_axis="z")
    ref = next(r for r in forced.objects("widgets", None, 0) if r.object_id == "w_obj")
    assert np.argmax(forced.load(ref).bounds[1] - forced.load(ref).bounds[0]) == 1


def test_file_colours_become_linear_albedo(tmp_path: Path) -> None:
    box = _box()
    box.visual.face_colors = np.tile([255, 0, 0, 255], (len(box.faces), 1))
    box.export(tmp_path / "red.ply")
    mesh = load_mesh_file(tmp_path / "red.ply")
    np.testing.assert_allclose(mesh.face_albedo, np.tile([1.0, 0.0, 0.0], (12, 1)), atol=1e-6)
    np.testing.assert_allclose(srgb_to_linear(np.array([0, 128, 255])), [0.0, 0.2158605, 1.0], atol=1e-6)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02garbage\xff" * 20, "empty mesh|cannot read"),
        (b"OFF\n0 0 0\n", "empty mesh|cannot read"),
        (b"OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", "degenerate"),
    ],
    ids=["unreadable", "empty", "degenerate"],
)
def test_bad_mesh_files_raise_a_message_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.off"
    path.write_bytes(content)
    with pytest.raises(MeshProblem, match=message) as info:
        load_mesh_file(path)
    assert str(path) in str(info.value)


def test_missing_model_file_is_reported_with_its_path(tmp_path: Path) -> None:
    root = write_shapenet(tmp_path / "sn", {"03001627": 2})
    (root / "03001627" / f"{1:032x}" / "models" / "model_normalized.obj").unlink()
    source = open_source(f"shapenet:{root}")
    ref = source.objects("03001627", None, 0)[1]
    with pytest.raises(MeshProblem, match=r"model_normalized.obj: no such file"):
        source.load(ref)


def test_empty_class_folder_and_bad_specs(tmp_path: Path) -> None:
    root = tmp_path / "meshes"
    (root / "empty").mkdir(parents=True)
    (root / "full").mkdir()
    _box().export(root / "full" / "a.obj")
    source = open_source(f"folder:{root}")
    assert source.class_ids() == ["full"]
    assert source.problems[0].class_id == "empty" and "no mesh files" in source.problems[0].reason
    with pytest.raises(UsageError, match="not a directory"):
        open_source(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(UsageError, match="expected procedural"):
        open_source("objaverse:/x")
    (tmp_path / "void").mkdir()
    with pytest.raises(UsageError, match="no usable class folder"):
        open_source(f"shapenet:{tmp_path / 'void'}")


def test_procedural_source() -> None:
    source = open_source("procedural", seed=2)
    assert isinstance(source, ProceduralSource)
    assert len(source.class_ids()) == 55 and source.available("02691156") is None
    refs = source.objects("02691156", 3, seed=2)
    assert len(refs) == 3 and sorted(r.locator for r in refs) == ["0", "1", "2"]
    assert source.load(refs[0]).num_faces > 0

"""Bad input end to end: a clear message naming the file or folder; ``skip_bad`` skips and counts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("warp")
pytest.importorskip("trimesh")

from tests.render.fake_meshes import box, write_off_fused_header, write_shapenet

from sie.config import RenderConfig
from sie.errors import UsageError
from sie.render.generator import render_dataset
from sie.render.plan import build_plan
from sie.render.sources import open_source

CFG = RenderConfig(classes=2, objects_per_class=3, views=2, size=16, samples_per_pixel=1)


def _shapenet(tmp_path: Path) -> Path:
    return write_shapenet(tmp_path / "sn", {"02691156": 3, "03001627": 3})


def test_mesh_source_renders_and_unreadable_object_stops_with_its_path(tmp_path: Path) -> None:
    root = _shapenet(tmp_path)
    cfg = replace(CFG, source=f"shapenet:{root}")
    plan = build_plan(open_source(cfg.source), cfg)
    victim = next(o for o in plan.objects if o.split == "train" and o.ref.class_id == "03001627")
    bad = Path(victim.ref.locator)
    bad.write_bytes(b"\x00garbage\xff" * 30)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"model_normalized.obj") as info:
        render_dataset(cfg, out, workers=1, progress=False)
    assert str(bad) in str(info.value) and "--skip-bad" in str(info.value)
    assert not (out / victim.key).exists()
    summary = render_dataset(replace(cfg, skip_bad=True), out, workers=1, progress=False)
    assert summary.complete and summary.skipped == 1
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["counts"]["objects"] == 5
    (skipped,) = manifest["skipped_objects"]
    assert skipped["object"] == victim.key and skipped["file"] == str(bad)
    entries = set(np.load(out / "train_images.npy")) | set(np.load(out / "val_images.npy"))
    assert f"/{victim.key}/" not in entries and len(entries) == 5


def test_a_class_left_with_one_usable_object_is_dropped(tmp_path: Path) -> None:
    root = _shapenet(tmp_path)
    cfg = replace(CFG, source=f"shapenet:{root}", skip_bad=True)
    plan = build_plan(open_source(cfg.source), cfg)
    victims = [o for o in plan.objects if o.ref.class_id == "03001627"][:2]
    for victim in victims:
        Path(victim.ref.locator).unlink()
    summary = render_dataset(cfg, tmp_path / "out", workers=1, progress=False)
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert summary.complete and manifest["counts"]["classes"] == 1
    assert manifest["skipped_classes"][0]["class"] == "03001627"
    assert "1 of its 3 objects left after skipping 2" in manifest["skipped_classes"][0]["reason"]
    assert set(np.load(tmp_path / "out" / "train_labels.npy")) == {0}


def test_missing_model_file(tmp_path: Path) -> None:
    root = _shapenet(tmp_path)
    (root / "02691156" / f"{2:032x}" / "models" / "model_normalized.obj").unlink()
    with pytest.raises(UsageError, match="no such file"):
        render_dataset(replace(CFG, source=f"shapenet:{root}"), tmp_path / "out", workers=1, progress=False)


def test_missing_classes_and_too_few_objects(tmp_path: Path) -> None:
    root = _shapenet(tmp_path)
    with pytest.raises(UsageError, match="has only 2 usable classes"):
        render_dataset(replace(CFG, source=f"shapenet:{root}", classes=3), tmp_path / "a", progress=False)
    lonely = tmp_path / "lonely"
    write_off_fused_header(lonely / "chair" / "train" / "chair_0001.off")
    write_off_fused_header(lonely / "chair" / "train" / "chair_0002.off")
    write_off_fused_header(lonely / "desk" / "train" / "desk_0001.off")
    cfg = replace(CFG, source=f"modelnet:{lonely}", classes=1)
    summary = render_dataset(cfg, tmp_path / "b", workers=1, progress=False)  # the larger class is chosen
    assert summary.complete and (tmp_path / "b" / "chair").is_dir()
    with pytest.raises(UsageError, match="class desk has 1 object"):
        render_dataset(replace(cfg, classes=2), tmp_path / "c", workers=1, progress=False)
    with pytest.raises(UsageError, match="only 1 classes"):
        render_dataset(replace(cfg, classes=2, skip_bad=True), tmp_path / "d", workers=1, progress=False)


def test_empty_class_folder(tmp_path: Path) -> None:
    root = tmp_path / "meshes"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            box().export(root / name / f"{name}{k}.ply")
    (root / "empty").mkdir()
    cfg = replace(CFG, source=f"folder:{root}")
    with pytest.raises(UsageError, match=r"no mesh files in .*empty"):
        render_dataset(cfg, tmp_path / "out", workers=1, progress=False)
    summary = render_dataset(replace(cfg, skip_bad=True), tmp_path / "out", workers=1, progress=False)
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert summary.complete and manifest["skipped_classes"][0]["class"] == "empty"


def test_non_watertight_meshes_are_counted_or_refused(tmp_path: Path) -> None:
    root = tmp_path / "meshes"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            mesh = box()
            if name == "b" and k == 0:
                mesh.faces = mesh.faces[:-1]  # a hole
            mesh.export(root / name / f"{name}{k}.ply")
    cfg = replace(CFG, source=f"folder:{root}")
    render_dataset(cfg, tmp_path / "count", workers=1, progress=False)
    assert json.loads((tmp_path / "count" / "dataset.json").read_text())["non_watertight_objects"] == 1
    with pytest.raises(UsageError, match=r"b0.ply: mesh is not watertight"):
        render_dataset(replace(cfg, require_watertight=True), tmp_path / "strict", workers=1, progress=False)

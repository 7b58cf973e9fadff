"""``render_dataset``: layout, split files, manifest, determinism across workers and shards, resume,
atomic objects, variants, orbit sweeps and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("warp")

from sie.config import RenderConfig
from sie.errors import UsageError, WorkFailed
from sie.render.generator import object_latents, render_dataset
from sie.render.plan import build_plan
from sie.render.sources import ProceduralSource

TINY = RenderConfig(classes=3, objects_per_class=3, views=3, size=32, samples_per_pixel=2)


def _files(root: Path) -> dict[str, bytes]:
    """Every dataset file (views, latents, split files) by relative path -> bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix in (".jpg", ".npy")):
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def tiny_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render") / "tiny"
    summary = render_dataset(TINY, root, workers=1, progress=False)
    assert summary.complete and summary.rendered == 9 and summary.images == 27
    return root


def test_layout_split_files_and_latents(tiny_render: Path) -> None:
    root = tiny_render
    train = np.load(root / "train_images.npy")
    val = np.load(root / "val_images.npy")
    train_labels, val_labels = np.load(root / "train_labels.npy"), np.load(root / "val_labels.npy")
    assert train.dtype.kind == "U" and train_labels.dtype == np.int64 and val_labels.dtype == np.int64
    assert len(train) == 6 and len(val) == 3 and not set(train) & set(val)
    synsets = sorted({e.strip("/").split("/")[0] for e in [*train, *val]})
    for entries, labels in ((train, train_labels), (val, val_labels)):
        for entry, label in zip(entries, labels, strict=True):
            assert entry.startswith("/") and entry.endswith("/") and entry.count("/") == 3
            synset, obj = entry.strip("/").split("/")
            assert label == synsets.index(synset)
            for v in range(3):
                with Image.open(root / synset / obj / f"image_{v}.jpg") as img:
                    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (32, 32)
                latent = np.load(root / synset / obj / f"latent_{v}.npy")
                assert latent.dtype == np.float64 and latent.shape == (7,)
            saved = np.stack([np.load(root / synset / obj / f"latent_{v}.npy") for v in range(3)])
            np.testing.assert_array_equal(saved, object_latents(TINY, synset, obj))
    assert {int(label) for label in val_labels} == {0, 1, 2}  # stratified: every class in val
    assert not (root / ".partial").exists()


def test_manifest_and_preview(tiny_render: Path) -> None:
    manifest = json.loads((tiny_render / "dataset.json").read_text())
    assert manifest["status"] == "complete" and manifest["generator"] == "sie.render"
    assert manifest["counts"] == {
        "classes": 3,
        "objects": 9,
        "train_objects": 6,
        "val_objects": 3,
        "images": 27,
    }
    assert [c["label"] for c in manifest["classes"]] == [0, 1, 2]
    assert manifest["config"]["seed"] == 0 and manifest["seeds"]["seed"] == 0
    assert manifest["backend"]["name"] == "warp" and manifest["skipped_objects"] == []
    assert manifest["latent_names"][:3] == ["rot_x", "rot_y", "rot_z"]
    with Image.open(tiny_render / "preview.png") as img:
        assert img.size[0] >= 3 * 64


def test_data_layer_reads_the_dataset(tiny_render: Path) -> None:
    data = pytest.importorskip("sie.data")
    if not hasattr(data, "open_split"):
        pytest.skip("sie.data.open_split is not available")
    source = data.open_split(tiny_render, "train")
    assert source.num_objects == 6 and source.views_per_object == 3 and source.latent_size == 7
    assert source.read_views(0, [0, 2]).shape == (2, 3, 32, 32)


def test_same_seed_same_bytes_across_workers_and_shards(tiny_render: Path, tmp_path: Path) -> None:
    reference = _files(tiny_render)
    two = render_dataset(TINY, tmp_path / "two_workers", workers=2, progress=False)
    assert two.workers == 2
    assert _files(tmp_path / "two_workers") == reference
    first = render_dataset(TINY, tmp_path / "sharded", shard=(1, 2), workers=1, progress=False)
    assert not first.complete and first.rendered == 4
    assert not (tmp_path / "sharded" / "train_images.npy").exists()
    second = render_dataset(TINY, tmp_path / "sharded", shard=(0, 2), workers=1, progress=False)
    assert second.complete and second.rendered == 5
    assert _files(tmp_path / "sharded") == reference
    other = render_dataset(replace(TINY, seed=1), tmp_path / "seed1", workers=1, progress=False)
    assert other.complete and _files(tmp_path / "seed1") != reference


def test_resume_renders_only_missing_objects(tiny_render: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_render, root)
    victim = np.load(root / "val_images.npy")[0].strip("/")
    shutil.rmtree(root / victim)
    (root / ".partial" / (victim.replace("/", "__") + ".999")).mkdir(
        parents=True
    )  # a crashed run's leftovers
    summary = render_dataset(TINY, root, workers=1, progress=False)
    assert summary.rendered == 1 and summary.already_done == 8 and summary.complete
    assert _files(root) == _files(tiny_render)
    assert not (root / ".partial").exists()
    again = render_dataset(TINY, root, workers=1, progress=False)
    assert again.rendered == 0 and again.complete


def test_a_crash_mid_object_leaves_no_half_written_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sie.render.writer as writer

    calls = {"n": 0}
    real_save = np.save

    def failing_save(file: object, arr: object, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # the second view of the second object
            raise OSError("disk full (simulated)")
        real_save(file, arr, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer.np, "save", failing_save)
    cfg = replace(TINY, classes=1)
    root = tmp_path / "crash"
    with pytest.raises(WorkFailed, match=r"writing the dataset failed \(disk full \(simulated\)\)"):
        render_dataset(cfg, root, workers=1, progress=False)
    objects = [p for p in (root).glob("*/*") if p.is_dir()]
    assert len(objects) == 1  # the first object is complete, the second does not exist at all
    assert sorted(f.name for f in objects[0].iterdir()) == sorted(
        [f"image_{v}.jpg" for v in range(3)] + [f"latent_{v}.npy" for v in range(3)]
    )
    assert not list((root / ".partial").iterdir())
    monkeypatch.setattr(writer.np, "save", real_save)
    summary = render_dataset(cfg, root, workers=1, progress=False)
    assert summary.complete and summary.rendered == 2


def test_variants_write_their_latents(tmp_path: Path) -> None:
    t = render_dataset(
        replace(TINY, classes=2, objects_per_class=2, variant="T"), tmp_path / "t", workers=1, progress=False
    )
    latents = np.stack([np.load(p) for p in sorted(t.root.glob("*/*/latent_*.npy"))])
    assert latents.shape[1] == 10 and np.abs(latents[:, 7:]).max() <= 0.5
    ood = render_dataset(
        replace(TINY, classes=2, objects_per_class=2, variant="OOD"),
        tmp_path / "o",
        workers=1,
        progress=False,
    )
    latents = np.stack([np.load(p) for p in sorted(ood.root.glob("*/*/latent_*.npy"))])
    assert latents.shape[1] == 7 and (np.abs(latents[:, :3]) >= np.pi / 2).all()


def test_orbit_sweep_varies_one_factor(tmp_path: Path) -> None:
    cfg = replace(TINY, classes=1, objects_per_class=1, views=5, orbit_factor="rot_z")
    summary = render_dataset(cfg, tmp_path / "orbit", workers=1, progress=False)
    root = summary.root
    assert (
        summary.complete and (root / "orbit_images.npy").exists() and not (root / "train_images.npy").exists()
    )
    (entry,) = np.load(root / "orbit_images.npy")
    latents = np.stack([np.load(root / entry.strip("/") / f"latent_{v}.npy") for v in range(5)])
    np.testing.assert_allclose(latents[:, 2], np.linspace(-np.pi / 2, np.pi / 2, 5))
    np.testing.assert_array_equal(
        np.delete(latents, 2, axis=1), np.repeat(np.delete(latents, 2, axis=1)[:1], 5, axis=0)
    )
    assert json.loads((root / "dataset.json").read_text())["orbit"]["factor"] == "rot_z"


def test_3diebench_class_sizes_reproduce_the_split_counts() -> None:
    plan = build_plan(ProceduralSource(0), RenderConfig(class_sizes="3diebench"))
    assert len(plan.objects) == 52_472
    assert sum(o.split == "train" for o in plan.objects) == 41_920
    assert sum(o.split == "val" for o in plan.objects) == 10_552
    chairs = [o for o in plan.objects if o.ref.class_id == "03001627"]
    assert (sum(o.split == "train" for o in chairs), sum(o.split == "val" for o in chairs)) == (5398, 1380)


def test_an_output_directory_holding_something_else_is_refused(tiny_render: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"different dataset \(render.views: 3 there, 4 here"):
        render_dataset(replace(TINY, views=4), tiny_render, workers=1, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"no dataset.json from sie render"):
        render_dataset(TINY, foreign, workers=1, progress=False)
    with pytest.raises(UsageError, match="--shard"):
        render_dataset(TINY, tmp_path / "x", shard=(2, 2))


def test_field_of_view_reaches_the_images_and_the_manifest(tmp_path: Path) -> None:
    one = replace(TINY, classes=1, objects_per_class=2, views=2)
    wide = render_dataset(one, tmp_path / "wide", workers=1, progress=False).root
    narrow_cfg = replace(one, field_of_view=0.42)
    narrow = render_dataset(narrow_cfg, tmp_path / "narrow", workers=1, progress=False).root
    entry = str(np.load(wide / "train_images.npy")[0])
    wide_image = np.asarray(Image.open(wide / entry.strip("/") / "image_0.jpg"), dtype=np.float64)
    narrow_image = np.asarray(Image.open(narrow / entry.strip("/") / "image_0.jpg"), dtype=np.float64)
    assert np.abs(wide_image - narrow_image).mean() > 5.0  # same latents, different framing
    for v in range(2):  # the latents do not depend on the camera
        np.testing.assert_array_equal(
            np.load(wide / entry.strip("/") / f"latent_{v}.npy"),
            np.load(narrow / entry.strip("/") / f"latent_{v}.npy"),
        )
    assert json.loads((narrow / "dataset.json").read_text())["config"]["field_of_view"] == 0.42


def test_an_impossible_field_of_view_is_refused_naming_the_key(tmp_path: Path) -> None:
    from sie.errors import ConfigError

    with pytest.raises(ConfigError, match=r"render.field_of_view=3.0"):
        render_dataset(replace(TINY, field_of_view=3.0), tmp_path / "bad", workers=1, progress=False)

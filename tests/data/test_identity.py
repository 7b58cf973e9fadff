"""A split's identity (``manifest_hash``) covers what decides its pixels and targets.

Before, it covered the split files only: a store packed at another resolution, or a dataset rendered
again with other settings under the same object ids, had the identity of the old one, so evaluation
reused the old features and a resumed run accepted the new data as unchanged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers.tiny_dataset import write_tiny_dataset

from sie.data import open_split
from sie.data.pack import pack_dataset
from sie.data.packed import MANIFEST, manifest_checksum
from sie.errors import UsageError


def _pack(src: Path, out: Path, resolution: int) -> Path:
    return pack_dataset(src, out, resolution, workers=0, progress=False)


def _hashes(root: Path) -> dict[str, str]:
    return {s: open_split(root, s).manifest_hash for s in ("train", "val")}


def test_same_ids_other_pixels_are_another_dataset(tiny_dataset: Path, tmp_path: Path) -> None:
    # The 3DIEBench layout without dataset.json: the same objects and latents drawn at 48 px.
    bigger = write_tiny_dataset(tmp_path / "bigger", size=48)
    for split in ("train", "val"):
        name = f"{split}_images.npy"
        assert (bigger / name).read_bytes() == (tiny_dataset / name).read_bytes()  # same split files
    assert _hashes(bigger)["val"] != _hashes(tiny_dataset)["val"]
    # Same size, other JPEG bytes (as a render with another camera gives): the first views' sizes differ.
    edited = tmp_path / "edited"
    shutil.copytree(tiny_dataset, edited)
    for entry in np.load(edited / "val_images.npy"):
        path = edited / str(entry).strip("/") / "image_0.jpg"
        with Image.open(path) as img:
            img.convert("RGB").save(path, quality=40)
    assert _hashes(edited)["val"] != _hashes(tiny_dataset)["val"]
    assert _hashes(edited)["train"] == _hashes(tiny_dataset)["train"]  # untouched split: same identity
    # A copy elsewhere is the same dataset.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    assert _hashes(copy) == _hashes(tiny_dataset)


def test_render_settings_in_dataset_json_count(tiny_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    before = _hashes(copy)
    (copy / "dataset.json").write_text(json.dumps({"identity": "aaaa", "created": "monday"}))
    with_json = _hashes(copy)
    assert with_json != before
    (copy / "dataset.json").write_text(json.dumps({"identity": "aaaa", "created": "tuesday"}))
    assert _hashes(copy) == with_json  # only the settings' identity counts, not the file's other fields
    (copy / "dataset.json").write_text(json.dumps({"identity": "bbbb", "created": "tuesday"}))
    assert _hashes(copy) != with_json
    (copy / "dataset.json").write_text("{not json")  # readers do not need it: still opens, its bytes count
    assert _hashes(copy) not in (before, with_json)


def test_rendered_with_another_field_of_view(tmp_path: Path) -> None:
    pytest.importorskip("warp")
    from sie.config import RenderConfig
    from sie.render.generator import render_dataset

    cfg = RenderConfig(classes=2, objects_per_class=2, views=3, size=32, samples_per_pixel=1)
    wide = render_dataset(cfg, tmp_path / "wide", workers=1, progress=False).root
    narrow_cfg = replace(cfg, field_of_view=0.42)
    narrow = render_dataset(narrow_cfg, tmp_path / "narrow", workers=1, progress=False).root
    assert (wide / "val_images.npy").read_bytes() == (narrow / "val_images.npy").read_bytes()
    assert _hashes(wide)["val"] != _hashes(narrow)["val"]
    for d in (wide, narrow):  # without dataset.json the first views' sizes still tell them apart
        (d / "dataset.json").unlink()
    assert _hashes(wide)["val"] != _hashes(narrow)["val"]


def test_store_identity_covers_resolution_and_pixels(tiny_dataset: Path, tmp_path: Path) -> None:
    a16 = _pack(tiny_dataset, tmp_path / "a16", 16)
    b16 = _pack(tiny_dataset, tmp_path / "b16", 16)
    a24 = _pack(tiny_dataset, tmp_path / "a24", 24)
    raw = open_split(tiny_dataset, "val")
    s16, t16, s24 = (open_split(p, "val") for p in (a16, b16, a24))
    assert s16.manifest_hash == t16.manifest_hash  # the same store, packed twice
    assert s16.manifest_hash != s24.manifest_hash  # another resolution
    assert raw.manifest_hash not in (s16.manifest_hash, s24.manifest_hash)
    assert s16.source_hash == s24.source_hash == raw.manifest_hash  # from the same source split


def test_pack_refuses_a_store_of_an_earlier_render(tiny_dataset: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(tiny_dataset, src)
    (src / "dataset.json").write_text(json.dumps({"identity": "first-render"}))
    out = _pack(src, tmp_path / "store", 16)
    assert _pack(src, out, 16) == out  # unchanged: nothing to do
    # Rendered again with other settings under the same object ids (same split files).
    (src / "dataset.json").write_text(json.dumps({"identity": "second-render"}))
    with pytest.raises(UsageError, match=r"dataset\.json: .*changed since the store was packed"):
        open_split(out, "val")  # the source is still there: the store is stale
    with pytest.raises(UsageError, match=r"was packed from an earlier state of .*render settings or images"):
        _pack(src, out, 16)
    # Where the source is gone, the store stands alone and opens.
    shutil.rmtree(src)
    assert open_split(out, "val").num_objects == 3


def test_a_store_packed_before_the_identity_change_still_opens(tiny_dataset: Path, tmp_path: Path) -> None:
    out = _pack(tiny_dataset, tmp_path / "old", 16)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.pop("identity_version")
    for info in manifest["splits"].values():
        info.pop("source_render")
        info.pop("decode_excluded_ids")
        info["source_hash"] = "0123456789abcdef0123456789abcdef"  # a version-1 hash
    manifest["checksum"] = manifest_checksum(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest))
    old = open_split(out, "val")
    assert old.source_hash == "0123456789abcdef0123456789abcdef" and len(old.manifest_hash) == 32
    assert _pack(tiny_dataset, out, 16) == out  # the same pack command: still nothing to do

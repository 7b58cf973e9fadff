"""The packed store: round trip equal to raw decoding + resize, resume, refusal of damaged/stale stores."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sie.cli import main
from sie.data import make_train_loader, open_split
from sie.data import pack as pack_module
from sie.data.pack import pack_dataset
from sie.data.packed import PackedSource
from sie.data.transforms import resize_uint8
from sie.errors import UsageError

# 16 px x 5 views x 3 channels = 3840 bytes per object: 2 objects per shard -> several shards per split.
SMALL_SHARDS = 2 * 5 * 3 * 16 * 16


def _pack(src: Path, out: Path, **kwargs: object) -> Path:
    return pack_dataset(src, out, 16, workers=0, shard_bytes=SMALL_SHARDS, progress=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def packed(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tiny_dataset, tmp_path_factory.mktemp("packed") / "store")


def test_round_trip_equals_raw_decode_and_resize(tiny_dataset: Path, packed: Path) -> None:
    for split in ("train", "val"):
        raw = open_split(tiny_dataset, split)
        store = open_split(packed, split)
        assert isinstance(store, PackedSource)
        assert store.object_ids == raw.object_ids and store.class_names == raw.class_names
        np.testing.assert_array_equal(store.labels, raw.labels)
        np.testing.assert_array_equal(store.latents, raw.latents)
        assert store.views_per_object == 5 and store.latent_size == 7 and store.image_size == (16, 16)
        # Packed from this split, but other pixels (16 px): another identity, which records the source's.
        assert store.source_hash == raw.manifest_hash and store.manifest_hash != raw.manifest_hash
        for obj in range(raw.num_objects):
            views = [4, 0, 2]
            assert torch.equal(store.read_views(obj, views), resize_uint8(raw.read_views(obj, views), 16))
    raw_loader = make_train_loader(
        open_split(tiny_dataset, "train"), batch_size_per_rank=3, resolution=16, seed=9
    )
    store = open_split(packed, "train")
    threads = make_train_loader(store, batch_size_per_rank=3, seed=9, num_workers=2)  # auto: threads
    processes = make_train_loader(store, batch_size_per_rank=3, seed=9, num_workers=2, workers="processes")
    assert threads.workers == "threads" and raw_loader.workers == "processes"
    for a, b, c in zip(raw_loader, threads, processes, strict=True):
        assert torch.equal(a.views, b.views) and torch.equal(a.transforms, b.transforms)
        assert torch.equal(a.views, c.views) and torch.equal(a.object_index, c.object_index)


def test_store_reads_without_pil_or_file_opens(packed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_split(packed, "train")
    store.read_views(0, [0])  # maps the shards
    import PIL.Image

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file was opened while reading from the packed store")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(PIL.Image, "open", refuse)
    batch = next(iter(make_train_loader(store, batch_size_per_rank=4, seed=0)))
    assert batch.views.shape == (4, 2, 3, 16, 16)


def test_layout_and_manifest(packed: Path) -> None:
    manifest = json.loads((packed / "manifest.json").read_text())
    info = manifest["splits"]["train"]
    assert manifest["resolution"] == 16 and info["shard_size"] == 2 and len(info["shards"]) == 5
    shard = np.load(packed / "train" / info["shards"][0], mmap_mode="r")
    assert shard.dtype == np.uint8 and shard.shape == (2, 5, 3, 16, 16)
    assert info["files"][info["shards"][0]]["bytes"] == (packed / "train" / info["shards"][0]).stat().st_size


def test_resume_after_interruption(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "store"
    real = pack_module._pack_shard
    calls: list[int] = []

    def interrupted(task: pack_module._ShardTask) -> int:
        calls.append(task.shard)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third shard
        return real(task)

    monkeypatch.setattr(pack_module, "_pack_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _pack(tiny_dataset, out)
    with pytest.raises(UsageError, match=r"unfinished packed store.*resume"):
        open_split(out, "train")
    assert not list(out.rglob("*.json.tmp"))
    finished = {p: p.stat().st_mtime_ns for p in out.glob("train/images-*.npy")}
    assert len(finished) == 2

    def counted(task: pack_module._ShardTask) -> int:
        calls.append(task.shard)
        return real(task)

    calls.clear()
    monkeypatch.setattr(pack_module, "_pack_shard", counted)
    _pack(tiny_dataset, out)
    assert len(calls) == 5 - 2 + 2  # train: 5 shards, 2 done; val: 2 shards
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert open_split(out, "train").num_objects == 9
    calls.clear()
    _pack(tiny_dataset, out)  # complete: nothing to do
    assert calls == []


def test_truncated_store_refused_and_repaired(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _pack(tiny_dataset, tmp_path / "store")
    shard = out / "train" / "images-00003.npy"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    with pytest.raises(UsageError, match=f"{shard}: packed store file: .*truncated or stale"):
        open_split(out, "train")
    assert open_split(out, "val").num_objects == 3  # the other split is intact
    assert main(["data", "check", str(out), "--quiet"]) == 1
    assert f"{shard}: packed store file" in capsys.readouterr().out
    untouched = out / "train" / "images-00000.npy"
    before = untouched.stat().st_mtime_ns
    _pack(tiny_dataset, out)  # the same command repairs just the damaged shard
    assert untouched.stat().st_mtime_ns == before
    assert open_split(out, "train").num_objects == 9


def test_stale_or_edited_store_refused(tiny_dataset: Path, dataset_copy: Path, tmp_path: Path) -> None:
    out = _pack(dataset_copy, tmp_path / "store")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["resolution"] = 32
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match=r"manifest\.json: checksum mismatch"):
        open_split(out, "val")
    out = _pack(dataset_copy, tmp_path / "store2")
    labels = dataset_copy / "train_labels.npy"
    np.save(labels, np.load(labels)[::-1].copy())  # the source's split changed since packing
    with pytest.raises(UsageError, match=f"{labels}: packed store file: changed since the store was packed"):
        open_split(out, "train")
    latents = out / "val" / "latents.npy"
    data = bytearray(latents.read_bytes())
    data[-1] ^= 0xFF
    latents.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=f"{latents}: .*sha256"):
        open_split(out, "val")


def test_out_must_not_hold_something_else(tiny_dataset: Path, packed: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="other data, splits, resolution"):
        pack_dataset(tiny_dataset, packed, 24, workers=0, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty directory"):
        _pack(tiny_dataset, tmp_path / "busy")
    with pytest.raises(UsageError, match="already a packed store"):
        _pack(packed, tmp_path / "again")
    with pytest.raises(UsageError, match="--resolution 4"):
        pack_dataset(tiny_dataset, tmp_path / "x", 4)


def test_pack_stops_on_corrupt_jpeg_or_skips_it(dataset_copy: Path, tmp_path: Path) -> None:
    obj = dataset_copy / str(np.load(dataset_copy / "train_images.npy")[5]).strip("/")
    path = obj / "image_3.jpg"
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\x00" * (len(data) - 4) + data[-2:])  # markers intact: found by decoding
    with pytest.raises(UsageError, match=f"{path}: corrupt image"):
        _pack(dataset_copy, tmp_path / "a")
    out = _pack(dataset_copy, tmp_path / "a", skip_bad=True)  # resumes the failed pack
    with pytest.raises(UsageError, match="pass --skip-bad to accept it"):
        _pack(dataset_copy, out)
    store = open_split(out, "train")
    assert store.num_objects == 8 and obj.name not in "".join(store.object_ids)
    assert [p.path for p in store.excluded] == [path]
    raw = open_split(dataset_copy, "train")
    kept = [i for i in range(9) if i != 5]
    np.testing.assert_array_equal(store.latents, raw.latents[kept])
    assert torch.equal(store.read_views(5, [1]), resize_uint8(raw.read_views(6, [1]), 16))


def test_pack_cli_with_workers(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "store"
    code = main(["pack", str(tiny_dataset), str(out), "--resolution", "16", "--workers", "2", "--quiet"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    assert open_split(out, "val").num_objects == 3
    assert main(["data", "check", str(out), "--quiet"]) == 0
